/* apps/upstream: a demo upstream for the aggregator and the proxy benchmark,
 * answering JSON after a delay chosen per request and failing on request, so
 * that every way a backend misbehaves can be tried on one machine:
 *   GET  /data?delay_ms=N   JSON after N ms; also name=S (the "source", default
 *                           --name), items=N (default 3), and one of
 *                           fail=STATUS (400..599: that status, JSON error),
 *                           hang=1 (never answers: waits until the client
 *                           leaves), trickle=1 (the body one byte per 100 ms)
 *   GET  /big?bytes=N       N bytes with their Content-Length (streamed above
 *                           1 MiB), or chunked with chunked=1
 *   POST /echo              the request body, echoed
 *   GET  /stats             requests answered and in progress (but /stats)
 * Resetting the connection and answering garbage need the socket, which a
 * handler never sees: a second, raw port reads a request head and then
 * misbehaves: ?reset=1 resets the connection (RST), ?malformed=1 answers a
 * garbage status line. Run with --help for the flags. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <spindle/spindle.h>

static const char *g_name = "upstream";
static int g_raw_port;
static atomic_long g_answered, g_in_flight;

/* The body of /big: 64-byte lines "aaa...\n" to "ppp...\n", over and over
 * (1 MiB is a whole number of rounds), so a cut or a misplaced piece shows. */
#define BIG_STATIC (1 << 20)
static char g_big[BIG_STATIC];

/* ---- Query parameters ---------------------------------------------------- */

/* The integer parameter `name` in [min, max] into *out (def when absent).
 * Returns 0, -EINVAL for a bad value, -ENOMEM; callers answer 400 to both. */
static int query_long(sp_http_req *req, const char *name, long def, long min, long max, long *out) {
    sp_str v;
    int rc = sp_http_req_query(req, name, &v);
    if (rc == -ENOENT) {
        *out = def;
        return 0;
    }
    if (rc != 0)
        return rc;
    char buf[24], *end;
    if (v.len == 0 || v.len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, v.ptr, v.len);
    buf[v.len] = '\0';
    errno = 0;
    *out = strtol(buf, &end, 10);
    return *end || errno || *out < min || *out > max ? -EINVAL : 0;
}

/* Names go into JSON unescaped: letters, digits, '.', '_', '-' only. */
static bool valid_name(sp_str s) {
    if (s.len == 0 || s.len > 64)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
            c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

static int bad_request(sp_http_resp *resp, const char *why) {
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", why);
    return sp_http_resp_send(resp, 400, "application/json", body, (size_t)n);
}

/* ---- Routes -------------------------------------------------------------- */

/* Writes the body one byte per 100 ms. */
static int trickle(sp_http_resp *resp, const char *body, size_t len) {
    int rc = sp_http_resp_start(resp, 200, "application/json");
    for (size_t i = 0; rc == 0 && i < len; i++) {
        rc = sp_http_resp_write(resp, body + i, 1);
        if (rc == 0 && i + 1 < len)
            rc = sp_sleep(0.1);
    }
    return rc ? rc : sp_http_resp_end(resp);
}

static int data(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    long delay, items, fail, hang, slow;
    if (query_long(req, "delay_ms", 0, 0, 600000, &delay) != 0)
        return bad_request(resp, "delay_ms must be 0..600000");
    if (query_long(req, "items", 3, 0, 1000, &items) != 0)
        return bad_request(resp, "items must be 0..1000");
    if (query_long(req, "fail", 0, 400, 599, &fail) != 0)
        return bad_request(resp, "fail must be a status in 400..599");
    if (query_long(req, "hang", 0, 0, 1, &hang) != 0 ||
        query_long(req, "trickle", 0, 0, 1, &slow) != 0)
        return bad_request(resp, "hang and trickle take 0 or 1");
    sp_str v;
    if (sp_http_req_query(req, "reset", &v) == 0 || sp_http_req_query(req, "malformed", &v) == 0) {
        char body[160];
        int n = snprintf(body, sizeof(body),
                         "{\"error\":\"reset and malformed are served on the raw port\","
                         "\"raw_port\":%d}\n",
                         g_raw_port);
        return sp_http_resp_send(resp, 400, "application/json", body, (size_t)n);
    }
    sp_str source = sp_str_c(g_name);
    if (sp_http_req_query(req, "name", &source) == 0 && !valid_name(source))
        return bad_request(resp, "name: 1..64 of [A-Za-z0-9._-]");

    /* The client leaving cancels the sleep: that is how a hang ends. */
    int rc = hang ? sp_sleep(1e9) : sp_sleep((double)delay / 1000.0);
    if (rc != 0)
        return rc;
    char head[256];
    int n = snprintf(head, sizeof(head), "{\"source\":\"%.*s\",\"delay_ms\":%ld,\"pid\":%ld,",
                     (int)source.len, source.ptr, delay, (long)getpid());
    if (fail) {
        char body[384];
        int m = snprintf(body, sizeof(body), "%s\"error\":\"requested failure\",\"status\":%ld}\n",
                         head, fail);
        return sp_http_resp_send(resp, (int)fail, "application/json", body, (size_t)m);
    }
    size_t cap = (size_t)n + 16 + (size_t)items * (96 + source.len);
    char *body = malloc(cap);
    if (!body)
        return -ENOMEM;
    size_t len = (size_t)snprintf(body, cap, "%s\"items\":[", head);
    for (long i = 1; i <= items; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"id\":%ld,\"name\":\"%.*s %ld\"}",
                                i > 1 ? "," : "", i, (int)source.len, source.ptr, i);
    len += (size_t)snprintf(body + len, cap - len, "]}\n");
    rc = slow ? trickle(resp, body, len)
              : sp_http_resp_send(resp, 200, "application/json", body, len);
    free(body);
    return rc;
}

static int big(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    long bytes, chunked;
    if (query_long(req, "bytes", 1024, 0, 1L << 30, &bytes) != 0)
        return bad_request(resp, "bytes must be 0..1073741824");
    if (query_long(req, "chunked", 0, 0, 1, &chunked) != 0)
        return bad_request(resp, "chunked takes 0 or 1");
    if (!chunked && bytes <= BIG_STATIC)
        return sp_http_resp_send(resp, 200, "text/plain", g_big, (size_t)bytes);
    int rc = chunked ? sp_http_resp_start(resp, 200, "text/plain")
                     : sp_http_resp_start_length(resp, 200, "text/plain", (uint64_t)bytes);
    for (size_t left = (size_t)bytes; rc == 0 && left > 0;) {
        size_t n = left < 65536 ? left : 65536;
        /* Pieces follow on in the pattern: 65536 is a whole number of lines. */
        rc = sp_http_resp_write(resp, g_big + ((size_t)bytes - left) % BIG_STATIC, n);
        left -= n;
    }
    return rc ? rc : sp_http_resp_end(resp);
}

static int echo(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str body;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc; /* -EMSGSIZE becomes 413 */
    sp_str ctype;
    char type[128] = "application/octet-stream";
    if (sp_http_req_header(req, "Content-Type", &ctype) == 0 && ctype.len < sizeof(type))
        snprintf(type, sizeof(type), "%.*s", (int)ctype.len, ctype.ptr);
    return sp_http_resp_send(resp, 200, type, body.ptr, body.len);
}

static int stats(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"name\":\"%s\",\"pid\":%ld,\"answered\":%ld,\"in_flight\":%ld}\n", g_name,
                     (long)getpid(), atomic_load(&g_answered), atomic_load(&g_in_flight));
    return sp_http_resp_send(resp, 200, "application/json", body, (size_t)n);
}

/* Counts requests for /stats (which it does not wrap), whichever way they
 * end: a cancelled one returns here too. A client has its answer just before
 * the count moves. */
static int count(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg) {
    (void)arg;
    atomic_fetch_add(&g_in_flight, 1);
    int rc = sp_http_next_call(next, req, resp);
    atomic_fetch_sub(&g_in_flight, 1);
    if (sp_http_resp_started(resp))
        atomic_fetch_add(&g_answered, 1);
    return rc;
}

/* ---- The raw port ---------------------------------------------------------- */

/* One thread runs its own loop for the raw port: an accept task and a task
 * per connection, all cancelled when sp_run ends. */
typedef struct raw_port {
    int listen_fd;
    int stop_fd; /* eventfd: main asks the thread to finish */
    pthread_t thread;
} raw_port;

static int send_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            int rc = sp_io_wait(fd, SP_IO_WRITE, 5.0);
            if (rc != 0)
                return rc;
            continue;
        }
        if (n < 0)
            return errno == EINTR ? 0 : -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* True if the request line's query holds key=1. */
static bool asks(const char *line, const char *key) {
    const char *q = strchr(line, '?');
    size_t klen = strlen(key);
    while (q) {
        q++;
        if (strncmp(q, key, klen) == 0 && q[klen] == '=' && q[klen + 1] == '1' &&
            (q[klen + 2] == '&' || q[klen + 2] == ' '))
            return true;
        q = strpbrk(q, "& ");
        if (q && *q == ' ')
            return false;
    }
    return false;
}

static int raw_conn(void *arg, void **result) {
    (void)result;
    int fd = (int)(intptr_t)arg;
    char head[8192];
    size_t len = 0;
    int rc = 0;
    while (!memmem(head, len, "\r\n\r\n", 4)) {
        ssize_t n = len < sizeof(head) - 1 ? recv(fd, head + len, sizeof(head) - 1 - len, 0) : 0;
        if (n > 0)
            len += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && errno == EAGAIN && (rc = sp_io_wait(fd, SP_IO_READ, 5.0)) == 0)
            continue;
        else {
            close(fd); /* closed, head too big, timed out, or cancelled */
            return rc;
        }
    }
    head[len] = '\0';
    *strchr(head, '\r') = '\0'; /* the request line */
    if (asks(head, "reset")) {
        /* Closing with a zero linger time sends RST instead of FIN. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else if (asks(head, "malformed")) {
        static const char garbage[] = "HTTP/1.1 2x0 Not\tA Status\r\nno colon here\r\n\r\n";
        rc = send_all(fd, garbage, sizeof(garbage) - 1);
    } else {
        static const char body[] = "{\"error\":\"ask for ?reset=1 or ?malformed=1\"}\n";
        char resp[256];
        int n = snprintf(resp, sizeof(resp),
                         "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                         sizeof(body) - 1, body);
        rc = send_all(fd, resp, (size_t)n);
    }
    close(fd);
    return rc;
}

static int raw_accept(void *arg, void **result) {
    (void)result;
    raw_port *rp = arg;
    for (;;) {
        int fd = accept4(rp->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (sp_spawn(NULL, "raw-conn", raw_conn, (void *)(intptr_t)fd) != 0)
                close(fd);
            continue;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
            /* Out of descriptors or memory: let the load pass rather than spin. */
            int rc = sp_sleep(0.1);
            if (rc != 0)
                return rc;
            continue;
        }
        int rc = sp_io_wait(rp->listen_fd, SP_IO_READ, -1);
        if (rc != 0)
            return rc;
    }
}

static int raw_main(void *arg, void **result) {
    (void)result;
    raw_port *rp = arg;
    int rc = sp_spawn(NULL, "raw-accept", raw_accept, rp);
    if (rc == 0)
        rc = sp_io_wait(rp->stop_fd, SP_IO_READ, -1);
    return rc; /* sp_run then cancels the accept and connection tasks */
}

static void *raw_thread(void *arg) {
    sp_run(raw_main, arg, NULL);
    return NULL;
}

/* Binds the raw port's listener to host:port; returns the fd or -errno. */
static int raw_listen(const char *host, int port) {
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    if (getaddrinfo(host, service, &hints, &ai) != 0)
        return -EADDRNOTAVAIL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, rc = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0)
        rc = -errno;
    freeaddrinfo(ai);
    if (rc != 0 && fd >= 0)
        close(fd);
    return rc != 0 ? rc : fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f, "usage: upstream [--host ADDR] [--port N] [--raw-port N] [--workers N] [--name S]\n"
               "  --host ADDR     address to listen on (default 127.0.0.1)\n"
               "  --port N        HTTP port (default 8081; 0 picks a free one)\n"
               "  --raw-port N    port for ?reset=1 and ?malformed=1 (default 0: a free one)\n"
               "  --workers N     worker threads (default: the number of cores)\n"
               "  --name S        the \"source\" in /data answers (default upstream)\n"
               "routes: GET /data?delay_ms=N[&name=S][&items=N][&fail=STATUS|&hang=1|&trickle=1]\n"
               "        GET /big?bytes=N[&chunked=1], POST /echo, GET /stats\n");
}

int main(int argc, char **argv) {
    sp_http_config cfg;
    sp_http_config_init(&cfg);
    cfg.port = 8081;
    int raw_port_arg = 0;
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"raw-port", required_argument, NULL, 'r'},
                                         {"workers", required_argument, NULL, 'w'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "H:p:r:w:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            cfg.host = optarg;
            break;
        case 'p':
            cfg.port = atoi(optarg);
            break;
        case 'r':
            raw_port_arg = atoi(optarg);
            break;
        case 'w':
            cfg.workers = atoi(optarg);
            break;
        case 'n':
            g_name = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!valid_name(sp_str_c(g_name))) {
        fprintf(stderr, "upstream: --name takes 1 to 64 of [A-Za-z0-9._-]\n");
        return 2;
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < BIG_STATIC; i++)
        g_big[i] = i % 64 == 63 ? '\n' : (char)('a' + (i / 64) % 16);

    /* Every route but /stats is counted: a group without a prefix. */
    sp_router *r, *counted;
    if (sp_router_create(&r) != 0 || sp_router_group(r, "/", &counted) != 0 ||
        sp_router_use(counted, count, NULL) != 0)
        return 1;
    sp_router_add(counted, "GET", "/data", data, NULL, 0);
    sp_router_add(counted, "GET", "/big", big, NULL, 0);
    sp_router_add(counted, "POST", "/echo", echo, NULL, 0);
    sp_router_add(r, "GET", "/stats", stats, NULL, 0);

    sp_http_server *srv;
    int rc = sp_http_server_create(&srv, &cfg, r);
    if (rc != 0) {
        fprintf(stderr, "upstream: cannot listen on %s:%d: %s\n", cfg.host, cfg.port,
                strerror(-rc));
        sp_router_destroy(r);
        return 1;
    }
    raw_port rp = {.listen_fd = raw_listen(cfg.host, raw_port_arg), .stop_fd = -1};
    if (rp.listen_fd < 0) {
        fprintf(stderr, "upstream: cannot listen on %s:%d: %s\n", cfg.host, raw_port_arg,
                strerror(-rp.listen_fd));
        sp_http_server_destroy(srv);
        sp_router_destroy(r);
        return 1;
    }
    g_raw_port = bound_port(rp.listen_fd);
    rp.stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (rp.stop_fd < 0 || pthread_create(&rp.thread, NULL, raw_thread, &rp) != 0) {
        fprintf(stderr, "upstream: cannot start the raw port's thread\n");
        return 1;
    }
    bool v6 = strchr(cfg.host, ':') != NULL;
    const char *lb = v6 ? "[" : "", *rb = v6 ? "]" : "";
    printf("upstream: listening on http://%s%s%s:%d/ with %d workers, name %s\n", lb, cfg.host, rb,
           sp_http_server_port(srv), cfg.workers, g_name);
    printf("upstream: raw port on http://%s%s%s:%d/ (?reset=1, ?malformed=1)\n", lb, cfg.host, rb,
           g_raw_port);
    fflush(stdout);
    rc = sp_http_server_run(srv);

    uint64_t one = 1;
    ssize_t n = write(rp.stop_fd, &one, sizeof(one));
    (void)n; /* cannot fail: the counter is far from full */
    pthread_join(rp.thread, NULL);
    close(rp.stop_fd);
    close(rp.listen_fd);
    sp_http_server_destroy(srv);
    sp_router_destroy(r);
    return rc == 0 ? 0 : 1;
}
