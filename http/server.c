/* The server: SO_REUSEPORT listeners bound at creation, one worker thread per
 * listener each running its own loop (sp_run), accepting and handing
 * connections to conn.c; graceful and forced stops through an eventfd per
 * worker; SIGTERM/SIGINT handled by the thread that runs the server. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <event2/event.h>

#include <spindle/log.h>

#include "internal.h"

void sp_http_config_init(sp_http_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n > 0 ? (int)n : 1;
    cfg->backlog = 1024;
    cfg->header_timeout = 10;
    cfg->body_timeout = 30;
    cfg->idle_timeout = 60;
    cfg->write_timeout = 30;
    cfg->drain_timeout = 10;
    cfg->max_header_bytes = 16 * 1024;
    cfg->max_headers = 100;
    cfg->max_uri = 8 * 1024;
    cfg->max_body = 1024 * 1024;
    cfg->max_connections = 10000;
    cfg->access_log = SP_ACCESS_LOG_OFF;
    cfg->handle_signals = true;
}

static int validate_config(const sp_http_config *c) {
    if (!c->host || strlen(c->host) >= 64 || c->port < 0 || c->port > 65535 || c->workers < 1 ||
        c->workers > 1024 || c->backlog < 1)
        return -EINVAL;
    if (!(c->header_timeout > 0) || !(c->body_timeout > 0) || !(c->idle_timeout > 0) ||
        !(c->write_timeout > 0) || c->drain_timeout < 0)
        return -EINVAL;
    if (c->access_log < SP_ACCESS_LOG_OFF || c->access_log > SP_ACCESS_LOG_JSON)
        return -EINVAL;
    if (c->max_header_bytes < 256 || c->max_headers < 1 || c->max_headers > SP_HTTP_MAX_HEADERS ||
        c->max_uri < 16 || c->max_connections < 1)
        return -EINVAL;
    return 0;
}

/* Binds one SO_REUSEPORT listener to host:port. */
static int bind_listener(const char *host, int port, int backlog, int *out_fd, int *out_port) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        len = sizeof(*v6);
    } else if (strcmp(host, "localhost") == 0) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*v4);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, backlog) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        *out_port = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    *out_fd = fd;
    return 0;
}

int sp_http_server_create(sp_http_server **out, const sp_http_config *cfg,
                          struct sp_router *router) {
    int rc = validate_config(cfg);
    if (rc != 0 || !router)
        return -EINVAL;
    if (cfg->access_log != SP_ACCESS_LOG_OFF) {
        sp_log_set_access_format(cfg->access_log == SP_ACCESS_LOG_JSON ? SP_ACCESS_JSON
                                                                       : SP_ACCESS_COMMON);
        rc = sp_log_open_access(cfg->access_log_path ? cfg->access_log_path : "-");
        if (rc != 0)
            return rc;
    }
    sp_http_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->cfg = *cfg;
    snprintf(srv->host, sizeof(srv->host), "%s", cfg->host);
    srv->cfg.host = srv->host;
    srv->router = router;
    srv->nworkers = cfg->workers;
    srv->workers = calloc((size_t)srv->nworkers, sizeof(*srv->workers));
    if (!srv->workers) {
        free(srv);
        return -ENOMEM;
    }
    int port = cfg->port;
    srv->exit_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->exit_fd < 0)
        rc = -errno;
    for (int i = 0; i < srv->nworkers; i++) {
        sp_http_worker *w = &srv->workers[i];
        w->srv = srv;
        w->index = i;
        w->listen_fd = w->stop_fd = -1;
    }
    for (int i = 0; i < srv->nworkers && rc == 0; i++) {
        sp_http_worker *w = &srv->workers[i];
        rc = bind_listener(srv->host, port, cfg->backlog, &w->listen_fd, &port);
        if (rc == 0 && (w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
            rc = -errno;
    }
    srv->port = port;
    if (rc != 0) {
        sp_http_server_destroy(srv);
        return rc;
    }
    if (cfg->handle_signals) {
        /* A signal arriving before sp_http_server_run (while the program
         * prints where it listens, or starts threads of its own, which
         * inherit this mask) then waits for the run instead of killing the
         * process. */
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    }
    *out = srv;
    return 0;
}

int sp_http_server_port(const sp_http_server *srv) {
    return srv->port;
}

void sp_http_server_destroy(sp_http_server *srv) {
    if (!srv)
        return;
    if (srv->exit_fd >= 0)
        close(srv->exit_fd);
    for (int i = 0; i < srv->nworkers; i++) {
        if (srv->workers[i].listen_fd >= 0)
            close(srv->workers[i].listen_fd);
        if (srv->workers[i].stop_fd >= 0)
            close(srv->workers[i].stop_fd);
    }
    free(srv->workers);
    free(srv);
}

void sp_http_server_stop(sp_http_server *srv, bool force) {
    int mode = force ? 2 : 1;
    if (srv->stop_requested < mode)
        srv->stop_requested = mode;
    for (int i = 0; i < srv->nworkers; i++) {
        uint64_t one = 1;
        ssize_t n = write(srv->workers[i].stop_fd, &one, sizeof(one));
        (void)n; /* a full eventfd already holds a wake-up */
    }
}

/* ---- Workers ------------------------------------------------------------- */

static void worker_check_done(sp_http_worker *w) {
    if (w->stop_mode && w->nconns == 0 && w->stopped && w->stopped->state == SP_FUT_PENDING)
        sp_future_set_result(w->stopped, NULL);
}

static void set_accepting(sp_http_worker *w, bool on) {
    if (on == w->accepting || w->listen_fd < 0)
        return;
    if (on)
        event_add(&w->listen_ev, NULL);
    else
        event_del(&w->listen_ev);
    w->accepting = on;
}

void sp_http_worker_conn_closed(sp_http_worker *w) {
    if (!w->stop_mode && w->nconns < w->srv->cfg.max_connections)
        set_accepting(w, true);
    worker_check_done(w);
}

static void on_accept(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    sp_http_worker *w = arg;
    for (int i = 0; i < 64; i++) {
        if (w->nconns >= w->srv->cfg.max_connections) {
            /* Full: stop accepting; the kernel's backlog holds the rest. */
            set_accepting(w, false);
            return;
        }
        struct sockaddr_in6 peer;
        socklen_t len = sizeof(peer);
        int cfd = accept4(fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                sp_log_warn("worker %d: accept: %s; pausing", w->index, strerror(errno));
                set_accepting(w, false);
            }
            return;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!sp_http_conn_new(w, cfd, (struct sockaddr *)&peer, len))
            close(cfd);
    }
}

static void drain_expired(sp_cb *cb) {
    sp_http_worker *w = sp_container_of(cb, sp_http_worker, drain_timer.cb);
    w->stop_mode = 2;
    for (sp_list *l = w->conns.next, *next; l != &w->conns; l = next) {
        next = l->next;
        sp_http_conn_close(sp_container_of(l, sp_http_conn, link));
    }
    worker_check_done(w);
}

static void on_stop(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    sp_http_worker *w = arg;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
    int mode = w->srv->stop_requested;
    if (mode <= w->stop_mode)
        return;
    bool first = w->stop_mode == 0;
    w->stop_mode = mode;
    if (first) {
        set_accepting(w, false);
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    if (mode == 2) {
        drain_expired(&w->drain_timer.cb);
        return;
    }
    for (sp_list *l = w->conns.next, *next; l != &w->conns; l = next) {
        next = l->next;
        sp_http_conn_drain(sp_container_of(l, sp_http_conn, link));
    }
    sp_timer_arm(sp_loop_get(), &w->drain_timer, sp_deadline_after(w->srv->cfg.drain_timeout));
    worker_check_done(w);
}

static int worker_main(void *arg, void **result) {
    (void)result;
    sp_http_worker *w = arg;
    sp_http_server *srv = w->srv;
    w->data = NULL;
    if (srv->cfg.worker_start) {
        int rc = srv->cfg.worker_start(w->index, srv->cfg.worker_arg, &w->data);
        if (rc != 0) {
            sp_log(SP_LOG_ERROR, "worker %d: worker_start failed: %s", w->index, strerror(-rc));
            int none = 0;
            atomic_compare_exchange_strong(&srv->start_error, &none, rc);
            sp_http_server_stop(srv, true);
            return 0;
        }
    }
    sp_loop *loop = sp_loop_get();
    sp_list_init(&w->conns);
    sp_timer_init(&w->drain_timer, drain_expired);
    sp_future stopped;
    sp_future_init(&stopped);
    w->stopped = &stopped;
    event_assign(&w->listen_ev, loop->base, w->listen_fd, EV_READ | EV_PERSIST, on_accept, w);
    event_assign(&w->stop_ev, loop->base, w->stop_fd, EV_READ | EV_PERSIST, on_stop, w);
    event_add(&w->stop_ev, NULL);
    loop->internal_events++;
    set_accepting(w, true);
    if (w->srv->stop_requested)
        on_stop(w->stop_fd, EV_READ, w);
    int rc = sp_future_await(&stopped, NULL);
    (void)rc; /* cancelled only when the loop is torn down */
    set_accepting(w, false);
    event_del(&w->stop_ev);
    loop->internal_events--;
    sp_timer_disarm(loop, &w->drain_timer);
    w->stopped = NULL;
    sp_future_fini(&stopped);
    if (srv->cfg.worker_stop)
        srv->cfg.worker_stop(w->index, srv->cfg.worker_arg, w->data);
    return 0;
}

static void *worker_thread(void *arg) {
    sp_http_worker *w = arg;
    int rc = sp_run(worker_main, w, NULL);
    sp_http_worker_free_bufs(w);
    if (rc != 0)
        sp_log_warn("worker %d: %s", w->index, strerror(-rc));
    uint64_t one = 1;
    ssize_t n = write(w->srv->exit_fd, &one, sizeof(one));
    (void)n; /* cannot fail: the counter is far from full */
    return NULL;
}

int sp_http_server_run(sp_http_server *srv) {
    if (srv->running)
        return -EBUSY;
    srv->running = true;
    atomic_store(&srv->start_error, 0);
    /* Workers must not take the signals: the thread running the server reads
     * them from a signalfd. SIGPIPE is answered by MSG_NOSIGNAL anyway. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    if (srv->cfg.handle_signals) {
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
    }
    pthread_sigmask(SIG_BLOCK, &set, &old);
    pthread_t *threads = calloc((size_t)srv->nworkers, sizeof(*threads));
    if (!threads) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        srv->running = false;
        return -ENOMEM;
    }
    int started = 0, rc = 0;
    for (; started < srv->nworkers; started++) {
        rc = -pthread_create(&threads[started], NULL, worker_thread, &srv->workers[started]);
        if (rc != 0)
            break;
    }
    if (rc != 0)
        sp_http_server_stop(srv, true);
    if (srv->cfg.handle_signals && rc == 0) {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
        /* Read signals until every worker has exited, so that a second one
         * still forces a stop that is draining. */
        for (int exited = 0; exited < started;) {
            struct pollfd p[2] = {{.fd = srv->exit_fd, .events = POLLIN},
                                  {.fd = sfd, .events = POLLIN}};
            if (poll(p, sfd >= 0 ? 2 : 1, -1) <= 0)
                continue;
            struct signalfd_siginfo si;
            if ((p[1].revents & POLLIN) && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                sp_http_server_stop(srv, srv->stop_requested > 0);
            uint64_t n;
            if ((p[0].revents & POLLIN) && read(srv->exit_fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
                exited += (int)n;
        }
        if (sfd >= 0)
            close(sfd);
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    srv->running = false;
    return rc ? rc : atomic_load(&srv->start_error);
}
