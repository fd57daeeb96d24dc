/* Shared helpers for the HTTP server's integration tests: a server run in
 * this process on an ephemeral loopback port (on its own thread), raw-socket
 * clients whose every wait has a timeout, a small HTTP/1.1 response parser,
 * and child processes (curl, apps/hello) with their output captured. */
#ifndef SP_HTTP_HARNESS_H
#define SP_HTTP_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sp_test.h"

/* How long a client waits for anything the server should do promptly. */
#define CLIENT_TIMEOUT 5.0

/* ---- Time ---------------------------------------------------------------- */

__attribute__((unused)) static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((unused)) static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Polls until *v == want or timeout seconds pass; returns whether it did. */
__attribute__((unused)) static bool wait_for_int(atomic_int *v, int want, double timeout) {
    double end = now_s() + timeout;
    while (atomic_load(v) != want) {
        if (now_s() > end)
            return false;
        sleep_s(0.002);
    }
    return true;
}

/* ---- Checks inside handlers ------------------------------------------------ */

/* Handlers run on the server's threads, where a cmocka assertion cannot
 * unwind: they count failed checks here, and the tests assert none. */
static atomic_int handler_check_failures;

#define HANDLER_CHECK(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: handler check failed: %s\n", __FILE__, __LINE__, #cond);       \
            atomic_fetch_add(&handler_check_failures, 1);                                          \
        }                                                                                          \
    } while (0)

__attribute__((unused)) static void expect_no_handler_failures(void) {
    assert_int_equal(atomic_load(&handler_check_failures), 0);
}

/* ---- Server -------------------------------------------------------------- */

typedef struct test_server {
    sp_http_server *srv;
    sp_router *router; /* owned: destroyed by server_stop */
    pthread_t thread;
    int port;
    int run_rc;
} test_server;

/* The tests' defaults: loopback, an ephemeral port, one worker, no signal
 * handling (the test process keeps its signals). */
__attribute__((unused)) static void test_config(sp_http_config *cfg) {
    sp_http_config_init(cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 0;
    cfg->workers = 1;
    cfg->handle_signals = false;
}

__attribute__((unused)) static sp_router *new_router(void) {
    sp_router *r = NULL;
    assert_int_equal(sp_router_create(&r), 0);
    return r;
}

static void *server_thread_main(void *arg) {
    test_server *ts = arg;
    ts->run_rc = sp_http_server_run(ts->srv);
    return NULL;
}

/* Creates the server (router becomes ts's) and runs it on a new thread. */
__attribute__((unused)) static void server_start(test_server *ts, sp_router *router,
                                                 const sp_http_config *cfg) {
    memset(ts, 0, sizeof(*ts));
    ts->router = router;
    assert_int_equal(sp_http_server_create(&ts->srv, cfg, router), 0);
    ts->port = sp_http_server_port(ts->srv);
    assert_true(ts->port > 0);
    assert_int_equal(pthread_create(&ts->thread, NULL, server_thread_main, ts), 0);
}

/* Stops the server (gracefully or not), waits for sp_http_server_run to
 * return, frees the server and the router. Returns how long the run took to
 * return after the stop, in seconds. */
__attribute__((unused)) static double server_stop(test_server *ts, bool force) {
    double t0 = now_s();
    sp_http_server_stop(ts->srv, force);
    assert_int_equal(pthread_join(ts->thread, NULL), 0);
    double took = now_s() - t0;
    assert_int_equal(ts->run_rc, 0);
    sp_http_server_destroy(ts->srv);
    sp_router_destroy(ts->router);
    ts->srv = NULL;
    ts->router = NULL;
    return took;
}

/* A server with the test defaults, cfg_fn (may be NULL) adjusting them. */
__attribute__((unused)) static void server_start_with(test_server *ts, sp_router *router,
                                                      void (*cfg_fn)(sp_http_config *)) {
    sp_http_config cfg;
    test_config(&cfg);
    if (cfg_fn)
        cfg_fn(&cfg);
    server_start(ts, router, &cfg);
}

/* ---- Raw-socket client --------------------------------------------------- */

typedef struct client {
    int fd;
    char *buf; /* bytes received and not yet parsed: buf[pos..len) */
    size_t pos, len, cap;
    bool eof; /* the server closed (FIN or RST) */
    int err;  /* the errno of a failed read (ECONNRESET), 0 on FIN */
} client;

/* Connects to 127.0.0.1:port; returns 0 or -errno. */
__attribute__((unused)) static int client_try_connect(client *c, int port) {
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = -errno;
        close(c->fd);
        c->fd = -1;
        return err;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

__attribute__((unused)) static void client_connect(client *c, int port) {
    int rc = client_try_connect(c, port);
    if (rc != 0)
        fail_msg("connect to port %d: %s", port, strerror(-rc));
}

__attribute__((unused)) static void client_close(client *c) {
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->pos = c->len = c->cap = 0;
}

/* Sends len bytes; returns 0 or -errno (the server may have closed). */
__attribute__((unused)) static int client_send(client *c, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        if (poll(&pfd, 1, (int)(CLIENT_TIMEOUT * 1000)) != 1)
            return -ETIMEDOUT;
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

__attribute__((unused)) static void client_sends(client *c, const char *s) {
    int rc = client_send(c, s, strlen(s));
    if (rc != 0)
        fail_msg("send: %s", strerror(-rc));
}

/* Receives what is there (waiting up to timeout s). Returns the byte count,
 * 0 once the server closed, -ETIMEDOUT. */
__attribute__((unused)) static ssize_t client_fill(client *c, double timeout) {
    if (c->eof)
        return 0;
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, cap);
        assert_non_null(c->buf);
        c->cap = cap;
    }
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(timeout * 1000));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return -ETIMEDOUT;
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            c->eof = true;
            c->err = n < 0 ? errno : 0;
            return 0;
        }
        c->len += (size_t)n;
        return n;
    }
}

/* Reads until the server closes. Returns 0 once it did, -ETIMEDOUT. */
__attribute__((unused)) static int client_read_to_eof(client *c, double timeout) {
    double end = now_s() + timeout;
    while (!c->eof) {
        double left = end - now_s();
        if (left <= 0 || client_fill(c, left) == -ETIMEDOUT)
            return -ETIMEDOUT;
    }
    return 0;
}

/* True if nothing arrives and the connection stays open for `secs`. */
__attribute__((unused)) static bool client_silent_for(client *c, double secs) {
    return client_fill(c, secs) == -ETIMEDOUT;
}

/* ---- Responses ----------------------------------------------------------- */

typedef struct response {
    int status;
    char *head; /* status line and header lines, NUL-terminated */
    char *body; /* decoded body, NUL-terminated (body_len excludes the NUL) */
    size_t body_len;
    bool chunked;
    size_t nchunks; /* chunks of a chunked body, the last (empty) one excluded */
    bool until_eof; /* neither length nor chunked: the body ran to the close */
} response;

__attribute__((unused)) static void response_free(response *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* The first header `name` of r (case-insensitive), copied into out; false if
 * absent. */
__attribute__((unused)) static bool response_header(const response *r, const char *name, char *out,
                                                    size_t cap) {
    size_t nlen = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line && line[2]) {
        line += 2;
        const char *end = strstr(line, "\r\n");
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = (size_t)(end - v);
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
        line = end;
    }
    return false;
}

/* Waits until buf[from..] holds `needle`; returns its offset from buf or -1
 * on a close/timeout. */
static ssize_t client_wait_for(client *c, size_t from, const char *needle, double end) {
    size_t nlen = strlen(needle);
    for (;;) {
        if (c->len >= from + nlen) {
            char *hit = memmem(c->buf + from, c->len - from, needle, nlen);
            if (hit)
                return hit - c->buf;
        }
        double left = end - now_s();
        if (left <= 0 || client_fill(c, left) <= 0)
            return -1;
    }
}

/* Waits until buf[pos..] holds at least n bytes; false on a close/timeout. */
static bool client_wait_bytes(client *c, size_t n, double end) {
    while (c->len - c->pos < n) {
        double left = end - now_s();
        if (left <= 0 || client_fill(c, left) <= 0)
            return false;
    }
    return true;
}

static void body_append(response *r, const char *p, size_t n) {
    r->body = realloc(r->body, r->body_len + n + 1);
    assert_non_null(r->body);
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

/* Reads the next response (a 1xx one too). head_request: the request was
 * HEAD, so there is no body whatever the headers say. Returns 0; -EPIPE if
 * the server closed before sending a byte of it; -EPROTO if it is malformed
 * or cut off; -ETIMEDOUT. */
__attribute__((unused)) static int client_response(client *c, response *r, bool head_request,
                                                   double timeout) {
    memset(r, 0, sizeof(*r));
    double end = now_s() + timeout;
    /* Drop what earlier responses consumed; offsets below are from here. */
    if (c->pos > 0) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    if (c->len == 0) {
        ssize_t n = client_fill(c, timeout);
        if (n == 0)
            return -EPIPE;
        if (n < 0)
            return (int)n;
    }
    ssize_t he = client_wait_for(c, c->pos, "\r\n\r\n", end);
    if (he < 0)
        return c->eof ? -EPROTO : -ETIMEDOUT;
    size_t hlen = (size_t)he - c->pos + 2;
    r->head = malloc(hlen + 1);
    assert_non_null(r->head);
    memcpy(r->head, c->buf + c->pos, hlen);
    r->head[hlen] = '\0';
    c->pos = (size_t)he + 4;
    r->body = calloc(1, 1);
    assert_non_null(r->body);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return -EPROTO;
    if (head_request || r->status < 200 || r->status == 204 || r->status == 304)
        return 0;
    char v[64];
    if (response_header(r, "Transfer-Encoding", v, sizeof(v))) {
        if (strcasecmp(v, "chunked") != 0)
            return -EPROTO;
        r->chunked = true;
        for (;;) {
            ssize_t le = client_wait_for(c, c->pos, "\r\n", end);
            if (le < 0)
                return c->eof ? -EPROTO : -ETIMEDOUT;
            char *after;
            unsigned long size = strtoul(c->buf + c->pos, &after, 16);
            if (after == c->buf + c->pos)
                return -EPROTO;
            c->pos = (size_t)le + 2;
            if (size == 0)
                break;
            if (!client_wait_bytes(c, size + 2, end))
                return c->eof ? -EPROTO : -ETIMEDOUT;
            if (memcmp(c->buf + c->pos + size, "\r\n", 2) != 0)
                return -EPROTO;
            body_append(r, c->buf + c->pos, size);
            r->nchunks++;
            c->pos += size + 2;
        }
        /* Trailers, then the empty line. */
        for (;;) {
            ssize_t le = client_wait_for(c, c->pos, "\r\n", end);
            if (le < 0)
                return c->eof ? -EPROTO : -ETIMEDOUT;
            bool empty = (size_t)le == c->pos;
            c->pos = (size_t)le + 2;
            if (empty)
                return 0;
        }
    }
    if (response_header(r, "Content-Length", v, sizeof(v))) {
        size_t n = strtoul(v, NULL, 10);
        if (!client_wait_bytes(c, n, end))
            return c->eof ? -EPROTO : -ETIMEDOUT;
        body_append(r, c->buf + c->pos, n);
        c->pos += n;
        return 0;
    }
    r->until_eof = true;
    if (client_read_to_eof(c, end - now_s()) != 0)
        return -ETIMEDOUT;
    body_append(r, c->buf + c->pos, c->len - c->pos);
    c->pos = c->len;
    return 0;
}

/* Reads one response that must arrive; fails the test otherwise. */
__attribute__((unused)) static void expect_response(client *c, response *r, bool head_request) {
    int rc = client_response(c, r, head_request, CLIENT_TIMEOUT);
    if (rc != 0)
        fail_msg("reading a response: %s (received %zu bytes: '%.*s')", strerror(-rc), c->len,
                 (int)(c->len > 300 ? 300 : c->len), c->buf ? c->buf : "");
}

/* Reads one response that must arrive, with `status` and body `want`. */
__attribute__((unused)) static void expect_status_body(client *c, int status, const char *want) {
    response r;
    expect_response(c, &r, false);
    assert_int_equal(r.status, status);
    assert_string_equal(r.body, want);
    response_free(&r);
}

/* Sends one request on a new connection, reads the response (which must
 * arrive), closes. Returns the status; the body goes to body_out if given
 * (owned by the caller). */
__attribute__((unused)) static int request_once(int port, const char *raw, char **body_out) {
    client c;
    client_connect(&c, port);
    client_sends(&c, raw);
    response r;
    expect_response(&c, &r, strncmp(raw, "HEAD ", 5) == 0);
    int status = r.status;
    if (body_out) {
        *body_out = r.body;
        r.body = NULL;
    }
    response_free(&r);
    client_close(&c);
    return status;
}

/* Asserts that a GET / on a fresh connection is answered 200: the server is
 * still healthy. */
__attribute__((unused)) static void expect_server_healthy(int port) {
    assert_int_equal(request_once(port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", NULL), 200);
}

/* The request that must never be answered when it follows a refused one: a
 * server that answered it would have taken part of the refused bytes as a
 * message boundary (request smuggling). Servers using expect_refused_at
 * route it. */
#define SMUGGLED "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

/* Sends raw (len bytes, may hold NULs) then SMUGGLED to port; expects exactly
 * one response, with `status` and "Connection: close", then the close, and
 * the server still healthy. */
__attribute__((unused)) static void expect_refused_at(int port, const char *raw, size_t len,
                                                      int status) {
    client c;
    client_connect(&c, port);
    char *all = malloc(len + sizeof(SMUGGLED));
    assert_non_null(all);
    memcpy(all, raw, len);
    memcpy(all + len, SMUGGLED, sizeof(SMUGGLED));
    client_send(&c, all, len + sizeof(SMUGGLED) - 1); /* the server may close early */
    free(all);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    response r;
    int rc = client_response(&c, &r, false, CLIENT_TIMEOUT);
    if (rc != 0 || r.status != status)
        fail_msg("%.40s: want one %d response, got rc %d status %d; received '%.*s'", raw, status,
                 rc, r.status, (int)(c.len > 400 ? 400 : c.len), c.buf ? c.buf : "");
    char v[64];
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    response_free(&r);
    rc = client_response(&c, &r, false, CLIENT_TIMEOUT);
    if (rc != -EPIPE)
        fail_msg("a second response came back (rc %d, status %d): '%.*s'", rc, r.status,
                 (int)(c.len > 400 ? 400 : c.len), c.buf);
    response_free(&r);
    client_close(&c);
    expect_server_healthy(port);
}

/* ---- Child processes ------------------------------------------------------ */

/* Starts argv[0] (a path) with stdout on a pipe (returned in *out_fd, the
 * read end) and stderr kept; returns the pid. */
__attribute__((unused)) static pid_t spawn_child(char *const argv[], int *out_fd) {
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

/* Reads a child's stdout until EOF (at most cap - 1 bytes kept) and waits
 * for it. Returns its exit status, or 128 + signal. */
__attribute__((unused)) static int finish_child(pid_t pid, int fd, char *out, size_t cap) {
    size_t len = 0;
    for (;;) {
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t keep = (size_t)n;
        if (out && len + keep >= cap)
            keep = cap - 1 - len;
        if (out)
            memcpy(out + len, tmp, keep);
        len += keep;
    }
    if (out)
        out[len] = '\0';
    close(fd);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs argv to completion and captures its stdout; returns the exit status. */
__attribute__((unused)) static int run_capture(char *const argv[], char *out, size_t cap) {
    int fd;
    pid_t pid = spawn_child(argv, &fd);
    return finish_child(pid, fd, out, cap);
}

#endif
