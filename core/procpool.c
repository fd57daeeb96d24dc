/* Process pools (run_in_executor with a ProcessPoolExecutor), forkserver style:
 * a zygote forked at creation forks, reaps and replaces the workers; callers
 * await a future while libevent callbacks drive the parent's sockets. */
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <spindle/io.h>
#include <spindle/offload.h>
#include <spindle/task.h>

#include "offload_impl.h"

/* Every message on a worker socket starts with this header. A request carries
 * fn's address in `word`, a reply fn's return code. Both ends are the same
 * program on the same machine: native byte order. */
typedef struct pp_hdr {
    uint64_t word;
    uint64_t len;
} pp_hdr;

/* Control messages between parent and zygote, one per SEQPACKET datagram. */
enum { CTL_SPAWN = 1, CTL_WORKER = 2, CTL_EXITED = 3 };
typedef struct pp_ctl {
    int32_t kind;
    int32_t pid;    /* CTL_WORKER: the new worker (its socket rides along), or -1 */
    int32_t status; /* CTL_EXITED: wait status; failed CTL_WORKER: errno */
} pp_ctl;

enum { JOB_WAITING, JOB_SENT, JOB_DONE };

typedef struct pp_worker pp_worker;

/* A call to sp_procpool_run, on its caller's stack. */
typedef struct pp_job {
    sp_future fut;
    sp_list link; /* in pool->waiting while WAITING */
    sp_proc_fn *fn;
    const unsigned char *in;
    size_t in_len;
    pp_worker *worker; /* while SENT */
    void *out;
    size_t out_len;
    int state;
    int rc;
    char msg[64];
} pp_job;

struct pp_worker {
    sp_procpool *pool;
    pid_t pid;
    int fd; /* -1 once hung up */
    struct event rev, wev;
    bool rev_added, wev_added;
    bool busy;    /* a request is out and its reply is due */
    bool sending; /* part of the request is still to be written */
    bool eof;     /* the worker hung up */
    bool exited;  /* the zygote reported its wait status */
    int status;
    pp_job *job; /* the caller awaiting the request in flight; NULL if it left */
    sp_list idle_link;
    /* The request being sent: header, then body (the caller's buffer, or a
     * copy of its unsent tail in `wown` once the caller has left). */
    pp_hdr whdr;
    size_t wpos;
    const unsigned char *wbody;
    size_t wlen;
    unsigned char *wown;
    /* The reply being received. */
    pp_hdr rhdr;
    size_t rpos;
    unsigned char *rbody;
};

struct sp_procpool {
    int ctl; /* -1 once the zygote is gone */
    sp_loop *loop;
    struct event ctl_ev;
    bool ctl_added;
    pp_worker **workers; /* nworkers slots, NULL when empty */
    int nworkers;
    int spawning;    /* workers requested from the zygote, not yet reported */
    int spawn_err;   /* errno of the zygote's last failed spawn */
    int ncallers;    /* callers awaiting a job */
    sp_list idle;    /* pp_worker.idle_link */
    sp_list waiting; /* pp_job.link, FIFO */
    sp_list loop_link;
};

static const size_t HDR = sizeof(pp_hdr);

/* ---- The worker and zygote processes ----
 * A worker talks to the parent over its own socketpair, one request at a
 * time. The zygote is the workers' parent: it hands each new worker's socket
 * to the pool (SCM_RIGHTS) and reports their exit statuses, over a SEQPACKET
 * control socket. It is forked through a short-lived intermediate, so it is
 * reparented at once and is never the caller's zombie. */

static int read_full(int fd, void *buf, size_t len) {
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len) {
    for (size_t put = 0; put < len;) {
        ssize_t n = send(fd, (const char *)buf + put, len - put, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        put += (size_t)n;
    }
    return 0;
}

/* Serves requests until the parent hangs up. Blocking I/O: this process does
 * nothing else. */
__attribute__((noreturn)) static void worker_main(int fd) {
    for (;;) {
        pp_hdr h;
        if (read_full(fd, &h, HDR) != 0 || h.len > SP_PROCPOOL_MAX_MSG)
            _exit(0);
        unsigned char *in = malloc(h.len ? h.len : 1);
        if (!in || read_full(fd, in, h.len) != 0)
            _exit(0);
        sp_proc_fn *fn = (sp_proc_fn *)(uintptr_t)h.word;
        void *out = NULL;
        size_t out_len = 0;
        int rc = fn(in, h.len, &out, &out_len);
        free(in);
        if (rc > 0 || rc < -4095 || (rc == 0 && out_len > 0 && !out))
            rc = -EINVAL;
        else if (rc == 0 && out_len > SP_PROCPOOL_MAX_MSG)
            rc = -EMSGSIZE;
        pp_hdr r = {(uint64_t)(int64_t)rc, rc == 0 ? out_len : 0};
        if (write_full(fd, &r, HDR) != 0 || write_full(fd, out, r.len) != 0)
            _exit(0);
        free(out);
    }
}

typedef struct pidset {
    pid_t *pids;
    size_t n, cap;
} pidset;

static void zygote_send(int ctl, pp_ctl m, int fd) {
    struct iovec iov = {&m, sizeof(m)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } c;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&c, 0, sizeof(c));
        mh.msg_control = c.buf;
        mh.msg_controllen = sizeof(c.buf);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    while (sendmsg(ctl, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static void zygote_spawn(int ctl, int sfd, pidset *kids) {
    pp_ctl m = {CTL_WORKER, -1, 0};
    int sv[2];
    if (kids->n == kids->cap) {
        size_t cap = kids->cap ? kids->cap * 2 : 16;
        pid_t *p = realloc(kids->pids, cap * sizeof(*p));
        if (!p) {
            m.status = ENOMEM;
            zygote_send(ctl, m, -1);
            return;
        }
        kids->pids = p;
        kids->cap = cap;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        m.status = errno;
        zygote_send(ctl, m, -1);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(ctl);
        close(sfd);
        close(sv[0]);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        worker_main(sv[1]);
    }
    int err = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        m.status = err;
        zygote_send(ctl, m, -1);
        return;
    }
    kids->pids[kids->n++] = pid;
    m.pid = pid;
    zygote_send(ctl, m, sv[0]);
    close(sv[0]);
}

static void zygote_reap(int ctl, pidset *kids) {
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (size_t i = 0; i < kids->n; i++) {
            if (kids->pids[i] == pid) {
                kids->pids[i] = kids->pids[--kids->n];
                break;
            }
        }
        zygote_send(ctl, (pp_ctl){CTL_EXITED, pid, st}, -1);
    }
}

/* The zygote: forks workers on request and reports their deaths, until the
 * parent hangs up; then kills what is left, reaps it, and exits. */
__attribute__((noreturn)) static void zygote_main(int ctl, int nworkers) {
    /* Descriptors of the parent (listening sockets, other pools' sockets...)
     * must not be kept open by workers: keep stdio and the control socket. */
    if (ctl > 3)
        close_range(3, (unsigned)ctl - 1, 0);
    close_range((unsigned)ctl + 1, ~0U, 0);
    signal(SIGINT, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        _exit(1);
    pidset kids = {0};
    for (int i = 0; i < nworkers; i++)
        zygote_spawn(ctl, sfd, &kids);
    for (;;) {
        struct pollfd p[2] = {{.fd = ctl, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) > 0)
                ;
            zygote_reap(ctl, &kids);
        }
        if (p[0].revents) {
            pp_ctl m;
            ssize_t n = recv(ctl, &m, sizeof(m), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n != (ssize_t)sizeof(m))
                break;
            if (m.kind == CTL_SPAWN)
                zygote_spawn(ctl, sfd, &kids);
        }
    }
    for (size_t i = 0; i < kids.n; i++)
        kill(kids.pids[i], SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    _exit(0);
}

/* ---- The parent: events ---- */

/* Every event of a pool counts as internal: whether a task will be woken is
 * told by external_wakers, through caller_inc/caller_dec. */
static int ev_on(sp_procpool *pool, struct event *ev, bool *added) {
    if (*added)
        return 0;
    if (event_add(ev, NULL) != 0)
        return -ENOMEM;
    *added = true;
    pool->loop->internal_events++;
    return 0;
}

static void ev_off(sp_procpool *pool, struct event *ev, bool *added) {
    if (!*added)
        return;
    event_del(ev);
    *added = false;
    pool->loop->internal_events--;
}

static void caller_inc(sp_procpool *pool) {
    if (pool->ncallers++ == 0)
        pool->loop->external_wakers++;
}

static void caller_dec(sp_procpool *pool) {
    if (--pool->ncallers == 0)
        pool->loop->external_wakers--;
}

static void worker_readable(evutil_socket_t fd, short what, void *arg);
static void worker_writable(evutil_socket_t fd, short what, void *arg);
static void pool_pump(sp_procpool *pool);
static void pool_fill(sp_procpool *pool);

/* Ends a call with its outcome; out (owned by the caller from now on) only on
 * success. */
static void job_complete(sp_procpool *pool, pp_job *job, int rc, void *out, size_t out_len,
                         const char *msg) {
    if (job->state == JOB_WAITING)
        sp_list_remove(&job->link);
    if (job->worker)
        job->worker->job = NULL;
    job->state = JOB_DONE;
    job->worker = NULL;
    job->rc = rc;
    job->out = out;
    job->out_len = out_len;
    snprintf(job->msg, sizeof(job->msg), "%s", msg ? msg : "");
    caller_dec(pool);
    if (rc == 0)
        sp_future_set_result(&job->fut, NULL);
    else
        sp_future_set_error(&job->fut, rc, msg);
}

static int live_workers(const sp_procpool *pool) {
    int n = 0;
    for (int i = 0; i < pool->nworkers; i++)
        n += pool->workers[i] != NULL;
    return n;
}

static int worker_bind(pp_worker *w) {
    sp_procpool *pool = w->pool;
    event_assign(&w->rev, pool->loop->base, w->fd, EV_READ | EV_PERSIST, worker_readable, w);
    event_assign(&w->wev, pool->loop->base, w->fd, EV_WRITE | EV_PERSIST, worker_writable, w);
    int rc = ev_on(pool, &w->rev, &w->rev_added);
    if (rc == 0 && w->sending)
        rc = ev_on(pool, &w->wev, &w->wev_added);
    return rc;
}

static void worker_free(pp_worker *w) {
    sp_procpool *pool = w->pool;
    for (int i = 0; i < pool->nworkers; i++)
        if (pool->workers[i] == w)
            pool->workers[i] = NULL;
    if (sp_list_linked(&w->idle_link))
        sp_list_remove(&w->idle_link);
    if (pool->loop) {
        ev_off(pool, &w->rev, &w->rev_added);
        ev_off(pool, &w->wev, &w->wev_added);
    }
    if (w->fd >= 0)
        close(w->fd);
    free(w->wown);
    free(w->rbody);
    free(w);
}

/* A worker is gone for good once it has hung up and its exit was reported
 * (or can't be any more): fail its caller, free the slot, ask for another. */
static void worker_finalize(pp_worker *w) {
    sp_procpool *pool = w->pool;
    if (w->job) {
        char msg[64];
        if (!w->exited)
            snprintf(msg, sizeof(msg), "worker process died");
        else if (WIFSIGNALED(w->status))
            snprintf(msg, sizeof(msg), "worker process died (signal %d)", WTERMSIG(w->status));
        else
            snprintf(msg, sizeof(msg), "worker process exited (status %d)", WEXITSTATUS(w->status));
        job_complete(pool, w->job, -ECHILD, NULL, 0, msg);
    }
    worker_free(w);
    pool_fill(pool);
    pool_pump(pool);
}

static void worker_hangup(pp_worker *w) {
    sp_procpool *pool = w->pool;
    ev_off(pool, &w->rev, &w->rev_added);
    ev_off(pool, &w->wev, &w->wev_added);
    close(w->fd);
    w->fd = -1;
    w->eof = true;
    if (sp_list_linked(&w->idle_link))
        sp_list_remove(&w->idle_link); /* no new job for it while it is being reaped */
    /* The wait status says how it died; it follows on the control socket. */
    if (w->exited || pool->ctl < 0)
        worker_finalize(w);
}

/* The worker broke the protocol: fail its caller and replace it at once (it
 * exits by itself once it notices its socket is closed). */
static void worker_drop(pp_worker *w, int err, const char *msg) {
    sp_procpool *pool = w->pool;
    if (w->job)
        job_complete(pool, w->job, err, NULL, 0, msg);
    worker_free(w);
    pool_fill(pool);
    pool_pump(pool);
}

static void worker_send(pp_worker *w) {
    sp_procpool *pool = w->pool;
    while (w->wpos < HDR + w->wlen) {
        struct iovec iov[2];
        int cnt = 0;
        if (w->wpos < HDR) {
            iov[cnt++] = (struct iovec){(char *)&w->whdr + w->wpos, HDR - w->wpos};
            if (w->wlen)
                iov[cnt++] = (struct iovec){(void *)w->wbody, w->wlen};
        } else {
            iov[cnt++] =
                (struct iovec){(void *)(w->wbody + (w->wpos - HDR)), w->wlen - (w->wpos - HDR)};
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t n = sendmsg(w->fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (ev_on(pool, &w->wev, &w->wev_added) != 0)
                worker_hangup(w);
            return;
        }
        if (n < 0) {
            worker_hangup(w);
            return;
        }
        w->wpos += (size_t)n;
    }
    ev_off(pool, &w->wev, &w->wev_added);
    free(w->wown);
    w->wown = NULL;
    w->wbody = NULL;
    w->sending = false;
}

static void worker_writable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    worker_send(arg);
}

static void worker_dispatch(pp_worker *w, pp_job *job) {
    sp_list_remove(&w->idle_link);
    sp_list_remove(&job->link);
    job->state = JOB_SENT;
    job->worker = w;
    w->busy = true;
    w->sending = true;
    w->job = job;
    w->whdr = (pp_hdr){(uint64_t)(uintptr_t)job->fn, job->in_len};
    w->wpos = 0;
    w->wbody = job->in;
    w->wlen = job->in_len;
    worker_send(w);
}

/* A whole reply is in: hand it to its caller (or drop it), then take the next
 * waiting job. */
static void worker_replied(pp_worker *w) {
    sp_procpool *pool = w->pool;
    pp_job *job = w->job;
    unsigned char *body = w->rbody;
    int rc = (int)(int64_t)w->rhdr.word;
    w->rbody = NULL;
    w->rpos = 0;
    w->busy = false;
    if (job && rc == 0) {
        job_complete(pool, job, 0, body, w->rhdr.len, NULL);
    } else {
        free(body);
        if (job)
            job_complete(pool, job, rc, NULL, 0, NULL);
    }
    sp_list_push_back(&pool->idle, &w->idle_link);
    pool_pump(pool);
}

static void worker_readable(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    pp_worker *w = arg;
    for (;;) {
        char *dst;
        size_t want;
        if (w->rpos < HDR) {
            dst = (char *)&w->rhdr + w->rpos;
            want = HDR - w->rpos;
        } else {
            dst = (char *)w->rbody + (w->rpos - HDR);
            want = w->rhdr.len - (w->rpos - HDR);
        }
        ssize_t n = read(fd, dst, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            worker_hangup(w);
            return;
        }
        w->rpos += (size_t)n;
        if (w->rpos == HDR) {
            int64_t rc = (int64_t)w->rhdr.word;
            if (!w->busy || w->sending || rc > 0 || rc < -4095 ||
                w->rhdr.len > SP_PROCPOOL_MAX_MSG || (rc != 0 && w->rhdr.len != 0)) {
                worker_drop(w, -EPROTO, "garbled reply from worker process");
                return;
            }
            if (w->rhdr.len > 0 && !(w->rbody = malloc(w->rhdr.len))) {
                worker_drop(w, -ENOMEM, "no memory for the worker's reply");
                return;
            }
        }
        if (w->rpos >= HDR && w->rpos - HDR == w->rhdr.len) {
            /* Dispatching the next job may free w; nothing but a hang-up can
             * follow a reply, and the level-triggered event reports it again. */
            worker_replied(w);
            return;
        }
    }
}

static pp_worker *worker_by_pid(sp_procpool *pool, pid_t pid) {
    for (int i = 0; i < pool->nworkers; i++)
        if (pool->workers[i] && pool->workers[i]->pid == pid)
            return pool->workers[i];
    return NULL;
}

static void worker_add(sp_procpool *pool, pid_t pid, int fd) {
    int slot = 0;
    while (slot < pool->nworkers && pool->workers[slot])
        slot++;
    pp_worker *w = slot < pool->nworkers ? calloc(1, sizeof(*w)) : NULL;
    if (!w || sp_fd_set_nonblocking(fd) != 0) {
        /* Closing its socket makes it exit; the pool asks for another later. */
        free(w);
        close(fd);
        return;
    }
    w->pool = pool;
    w->pid = pid;
    w->fd = fd;
    pool->workers[slot] = w;
    sp_list_push_back(&pool->idle, &w->idle_link);
    if (worker_bind(w) != 0)
        worker_hangup(w);
}

/* ---- The parent: the pool ---- */

/* Fails every waiting job; used when no worker can ever come. */
static void pool_fail_waiting(sp_procpool *pool, int err, const char *msg) {
    while (!sp_list_empty(&pool->waiting))
        job_complete(pool, sp_container_of(pool->waiting.next, pp_job, link), err, NULL, 0, msg);
}

/* The zygote is gone: no more workers nor exit reports. Workers alive keep
 * serving; those that hung up are final now. */
static void pool_break(sp_procpool *pool) {
    if (pool->ctl < 0)
        return;
    ev_off(pool, &pool->ctl_ev, &pool->ctl_added);
    close(pool->ctl);
    pool->ctl = -1;
    pool->spawning = 0;
    for (int i = 0; i < pool->nworkers; i++)
        if (pool->workers[i] && pool->workers[i]->eof)
            worker_finalize(pool->workers[i]);
    pool_pump(pool);
}

/* Asks the zygote for workers up to the pool's size. */
static void pool_fill(sp_procpool *pool) {
    if (pool->ctl < 0)
        return;
    for (int have = live_workers(pool) + pool->spawning; have < pool->nworkers; have++) {
        pp_ctl m = {CTL_SPAWN, 0, 0};
        /* A few bytes on a socket the zygote drains: failure means it is gone. */
        if (send(pool->ctl, &m, sizeof(m), MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(m)) {
            pool_break(pool);
            return;
        }
        pool->spawning++;
    }
}

/* Sends waiting jobs to idle workers, oldest first. */
static void pool_pump(sp_procpool *pool) {
    while (!sp_list_empty(&pool->waiting) && !sp_list_empty(&pool->idle)) {
        pp_worker *w = sp_container_of(pool->idle.next, pp_worker, idle_link);
        worker_dispatch(w, sp_container_of(pool->waiting.next, pp_job, link));
    }
    if (sp_list_empty(&pool->waiting) || live_workers(pool) > 0 || pool->spawning > 0)
        return;
    if (pool->ctl < 0) {
        pool_fail_waiting(pool, -EPIPE, "process pool is broken: its zygote process is gone");
    } else {
        char msg[64];
        snprintf(msg, sizeof(msg), "cannot start a worker process: %s", strerror(pool->spawn_err));
        pool_fail_waiting(pool, -EPIPE, msg);
    }
}

static void ctl_message(sp_procpool *pool, const pp_ctl *m, int fd) {
    if (m->kind == CTL_WORKER) {
        if (pool->spawning > 0)
            pool->spawning--;
        if (m->pid > 0 && fd >= 0)
            worker_add(pool, m->pid, fd);
        else
            pool->spawn_err = m->status;
        pool_pump(pool);
        return;
    }
    if (fd >= 0)
        close(fd);
    pp_worker *w = m->kind == CTL_EXITED ? worker_by_pid(pool, m->pid) : NULL;
    if (!w)
        return; /* one dropped earlier, or that exited after we closed its socket */
    w->exited = true;
    w->status = m->status;
    /* Its socket may still hold a complete reply: read on until it hangs up. */
    if (w->eof)
        worker_finalize(w);
}

static void ctl_readable(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    sp_procpool *pool = arg;
    for (;;) {
        pp_ctl m;
        struct iovec iov = {&m, sizeof(m)};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } c;
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = c.buf,
                            .msg_controllen = sizeof(c.buf)};
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        int passed = -1;
        struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            memcpy(&passed, CMSG_DATA(cm), sizeof(int));
        if (n != (ssize_t)sizeof(m)) {
            if (passed >= 0)
                close(passed);
            pool_break(pool);
            return;
        }
        ctl_message(pool, &m, passed);
        if (pool->ctl < 0)
            return;
    }
}

static int pool_bind(sp_procpool *pool, sp_loop *loop) {
    if (pool->loop == loop)
        return 0;
    if (pool->loop)
        return -EXDEV;
    sp_offload *o = sp_offload_get(loop);
    if (!o)
        return -ENOMEM;
    pool->loop = loop;
    sp_list_push_back(&o->procpools, &pool->loop_link);
    if (pool->ctl >= 0) {
        event_assign(&pool->ctl_ev, loop->base, pool->ctl, EV_READ | EV_PERSIST, ctl_readable,
                     pool);
        if (ev_on(pool, &pool->ctl_ev, &pool->ctl_added) != 0)
            pool_break(pool);
    }
    for (int i = 0; i < pool->nworkers; i++) {
        pp_worker *w = pool->workers[i];
        if (w && w->fd >= 0 && worker_bind(w) != 0)
            worker_hangup(w);
    }
    return 0;
}

/* The caller left a job that was sent: the worker finishes it and its reply is
 * dropped. What is not sent yet must outlive the caller's buffer. */
static void job_leave_worker(pp_job *job) {
    pp_worker *w = job->worker;
    w->job = NULL;
    job->worker = NULL;
    if (!w->sending)
        return;
    size_t sent = w->wpos > HDR ? w->wpos - HDR : 0;
    size_t tail = w->wlen - sent;
    unsigned char *copy = malloc(tail ? tail : 1);
    if (!copy) {
        /* Can't finish the request: hang up; the worker exits and is replaced. */
        worker_hangup(w);
        return;
    }
    memcpy(copy, w->wbody + sent, tail);
    w->wown = copy;
    w->wbody = copy;
    w->wlen = tail;
    if (w->wpos > HDR)
        w->wpos = HDR;
}

/* Takes the pool off its loop, forgetting callers (the loop is going away
 * and their tasks with it); work under way resumes with the next loop. */
static void pool_unbind(sp_procpool *pool) {
    if (!pool->loop)
        return;
    while (!sp_list_empty(&pool->waiting))
        sp_list_remove(pool->waiting.next);
    for (int i = 0; i < pool->nworkers; i++) {
        pp_worker *w = pool->workers[i];
        if (!w)
            continue;
        if (w->job)
            job_leave_worker(w->job);
        /* job_leave_worker may have freed a worker that had not hung up yet. */
        if ((w = pool->workers[i]) != NULL) {
            ev_off(pool, &w->rev, &w->rev_added);
            ev_off(pool, &w->wev, &w->wev_added);
        }
    }
    ev_off(pool, &pool->ctl_ev, &pool->ctl_added);
    if (pool->ncallers > 0)
        pool->loop->external_wakers--;
    pool->ncallers = 0;
    sp_list_remove(&pool->loop_link);
    pool->loop = NULL;
}

void sp_procpool_unbind_all(sp_offload *o) {
    while (!sp_list_empty(&o->procpools))
        pool_unbind(sp_container_of(o->procpools.next, sp_procpool, loop_link));
}

int sp_procpool_create(sp_procpool **out, int nworkers) {
    if (!out || nworkers < 0)
        return -EINVAL;
    if (nworkers == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        nworkers = ncpu > 0 ? (int)ncpu : 1;
    }
    sp_procpool *pool = calloc(1, sizeof(*pool));
    if (!pool || !(pool->workers = calloc((size_t)nworkers, sizeof(*pool->workers)))) {
        free(pool);
        return -ENOMEM;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        int err = -errno;
        free(pool->workers);
        free(pool);
        return err;
    }
    /* Fork twice so the zygote is reparented at once: it is never the
     * caller's zombie, and the caller never has to wait for it. */
    pid_t mid = fork();
    if (mid == 0) {
        pid_t z = fork();
        if (z == 0)
            zygote_main(sv[1], nworkers);
        _exit(z < 0 ? 1 : 0);
    }
    int err = mid < 0 ? -errno : 0;
    close(sv[1]);
    if (mid > 0) {
        int st = 0;
        while (waitpid(mid, &st, 0) < 0 && errno == EINTR)
            ;
        /* ECHILD: someone else reaped it (SIGCHLD ignored); a failure then
         * shows up as the zygote's socket closing. */
        if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
            err = -EAGAIN;
    }
    if (err == 0)
        err = sp_fd_set_nonblocking(sv[0]);
    if (err != 0) {
        close(sv[0]);
        free(pool->workers);
        free(pool);
        return err;
    }
    pool->ctl = sv[0];
    pool->nworkers = nworkers;
    pool->spawning = nworkers;
    sp_list_init(&pool->idle);
    sp_list_init(&pool->waiting);
    *out = pool;
    return 0;
}

int sp_procpool_run(sp_procpool *pool, sp_proc_fn *fn, const void *in, size_t in_len, void **out,
                    size_t *out_len) {
    sp_loop *loop = sp_loop_get();
    if (!loop || !loop->current)
        return -EPERM;
    if (!pool || !fn || !out || !out_len || (!in && in_len))
        return -EINVAL;
    *out = NULL;
    *out_len = 0;
    if (in_len > SP_PROCPOOL_MAX_MSG)
        return -EMSGSIZE;
    int rc = pool_bind(pool, loop);
    if (rc != 0)
        return rc;
    pool_fill(pool);
    if (live_workers(pool) == 0 && pool->spawning == 0)
        return sp_fail(-EPIPE, "process pool is broken: its zygote process is gone");

    pp_job job = {.fn = fn, .in = in, .in_len = in_len, .state = JOB_WAITING};
    sp_future_init(&job.fut);
    caller_inc(pool);
    sp_list_push_back(&pool->waiting, &job.link);
    pool_pump(pool);
    rc = sp_future_await(&job.fut, NULL);
    if (job.state == JOB_WAITING) {
        sp_list_remove(&job.link);
        caller_dec(pool);
    } else if (job.state == JOB_SENT) {
        job_leave_worker(&job);
        caller_dec(pool);
    } else if (rc == 0) {
        *out = job.out;
        *out_len = job.out_len;
    } else {
        /* Done but cancelled before resuming: the result is dropped. */
        free(job.out);
        if (rc == job.rc && job.msg[0])
            sp_fail(rc, "%s", job.msg);
    }
    sp_future_fini(&job.fut);
    return rc;
}

void sp_procpool_destroy(sp_procpool *pool) {
    if (!pool)
        return;
    if (pool->loop && pool->loop == sp_loop_get()) {
        pool_fail_waiting(pool, -EPIPE, "process pool destroyed");
        for (int i = 0; i < pool->nworkers; i++)
            if (pool->workers[i] && pool->workers[i]->job)
                job_complete(pool, pool->workers[i]->job, -EPIPE, NULL, 0,
                             "process pool destroyed");
    }
    pool_unbind(pool);
    for (int i = 0; i < pool->nworkers; i++)
        if (pool->workers[i])
            worker_free(pool->workers[i]);
    /* The zygote sees its socket close: it kills the workers, reaps them and
     * exits; the workers also see theirs close. */
    if (pool->ctl >= 0)
        close(pool->ctl);
    free(pool->workers);
    free(pool);
}
