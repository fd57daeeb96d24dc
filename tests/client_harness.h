/* Shared helpers for the HTTP client's tests: a raw-socket upstream on its own
 * thread that answers (or misbehaves) according to the request path and
 * counts the connections it accepts and those it saw the client close; a
 * Spindle server upstream counting its connections by peer port; and waits
 * that suspend the calling task instead of blocking its loop. */
#ifndef SP_CLIENT_HARNESS_H
#define SP_CLIENT_HARNESS_H

#include "http_harness.h"

/* ---- Waiting inside a task --------------------------------------------------- */

/* Suspends until *v == want or timeout seconds pass; returns whether it did. */
__attribute__((unused)) static bool await_int(atomic_int *v, int want, double timeout) {
    double end = now_s() + timeout;
    while (atomic_load(v) != want) {
        if (now_s() > end)
            return false;
        sp_sleep(0.005);
    }
    return true;
}

/* ---- Raw upstream ------------------------------------------------------------------ */

#define RAW_MAX_CONNS 64

typedef struct raw_upstream {
    int fd, port;
    pthread_t thread;
    atomic_int stop;
    atomic_int accepted;    /* connections accepted */
    atomic_int closed_seen; /* connections the client closed (FIN or reset) */
    atomic_int requests;    /* request heads read */
    atomic_long bytes_sent; /* by /bigheaders */
    pthread_t conns[RAW_MAX_CONNS];
    atomic_int nconns;
} raw_upstream;

typedef struct raw_conn {
    raw_upstream *up;
    int fd;
} raw_conn;

static bool raw_stopping(raw_upstream *up) {
    return atomic_load(&up->stop) != 0;
}

/* Sends all of s (0), or -1 once the client is gone or the test stops. */
static int raw_send(raw_upstream *up, int fd, const void *s, size_t len) {
    const char *p = s;
    while (len > 0 && !raw_stopping(up)) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return len == 0 ? 0 : -1;
}

static int raw_sends(raw_upstream *up, int fd, const char *s) {
    return raw_send(up, fd, s, strlen(s));
}

/* Reads into buf (cap bytes) until it holds "\r\n\r\n" and, after it, the
 * body its Content-Length announces. Returns the head's length, 0 when the
 * client closed, -1 on a reset or a stop. */
static ssize_t raw_read_request(raw_upstream *up, int fd, char *buf, size_t cap, size_t *len) {
    for (;;) {
        char *end = *len ? memmem(buf, *len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t head = (size_t)(end - buf) + 4;
            size_t body = 0;
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            if (cl && cl < end)
                body = strtoul(cl + 17, NULL, 10);
            if (*len >= head + body || body > cap - head)
                return (ssize_t)head;
        }
        if (*len == cap || raw_stopping(up))
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, buf + *len, cap - *len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            return 0;
        if (n < 0)
            return -1;
        *len += (size_t)n;
    }
}

/* Reads and drops everything until the client closes; counts the close. */
static void raw_until_closed(raw_upstream *up, int fd) {
    char tmp[65536];
    while (!raw_stopping(up)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            atomic_fetch_add(&up->closed_seen, 1);
            return;
        }
    }
}

static void raw_pause(raw_upstream *up, double secs) {
    double end = now_s() + secs;
    while (now_s() < end && !raw_stopping(up))
        sleep_s(0.01);
}

static void raw_reset(int fd) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

#define RAW_OK "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

/* One connection: reads requests and answers each according to its path.
 * Returns whether the connection is still open (to close it). */
static bool raw_serve(raw_upstream *up, int fd) {
    char *buf = malloc(1 << 20);
    size_t len = 0;
    int nreq = 0;
    bool open = true;
    for (;;) {
        ssize_t head = raw_read_request(up, fd, buf, 1 << 20, &len);
        if (head <= 0) {
            if (!raw_stopping(up))
                atomic_fetch_add(&up->closed_seen, 1);
            break;
        }
        nreq++;
        atomic_fetch_add(&up->requests, 1);
        char path[64] = "";
        sscanf(buf, "%*s %63s", path);
        /* Drop this request (head and body) from buf. */
        size_t body = 0;
        char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (cl && cl < buf + head)
            body = strtoul(cl + 17, NULL, 10);
        size_t used = (size_t)head + body < len ? (size_t)head + body : len;
        memmove(buf, buf + used, len - used);
        len -= used;

        if (strcmp(path, "/ok") == 0) {
            if (raw_sends(up, fd, RAW_OK) != 0)
                break;
            continue;
        }
        if (strcmp(path, "/drip") == 0) {
            /* One byte every 100 ms, head included. */
            const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
            for (const char *p = r; *p; p++) {
                if (raw_send(up, fd, p, 1) != 0)
                    break;
                raw_pause(up, 0.1);
            }
            raw_until_closed(up, fd);
            break;
        }
        if (strcmp(path, "/hang") == 0 || strcmp(path, "/noread") == 0) {
            if (strcmp(path, "/noread") == 0)
                raw_pause(up, 0.3); /* let the client's send buffer fill first */
            raw_until_closed(up, fd);
            break;
        }
        if (strcmp(path, "/reset") == 0) {
            raw_sends(up, fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            char part[100];
            memset(part, 'x', sizeof(part));
            raw_send(up, fd, part, sizeof(part));
            raw_pause(up, 0.05);
            raw_reset(fd);
            open = false;
            break;
        }
        if (strcmp(path, "/short") == 0) {
            raw_sends(up, fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            break;
        }
        if (strcmp(path, "/halfbody") == 0) {
            raw_sends(up, fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            raw_until_closed(up, fd);
            break;
        }
        if (strcmp(path, "/bigheaders") == 0) {
            /* 1 MiB of headers, as fast as the client takes them. */
            char line[1024];
            memset(line, 'a', sizeof(line));
            memcpy(line, "X-Pad: ", 7);
            memcpy(line + sizeof(line) - 2, "\r\n", 2);
            if (raw_sends(up, fd, "HTTP/1.1 200 OK\r\n") == 0) {
                for (int i = 0; i < 1024; i++) {
                    if (raw_send(up, fd, line, sizeof(line)) != 0)
                        break;
                    atomic_fetch_add(&up->bytes_sent, (long)sizeof(line));
                }
            }
            raw_until_closed(up, fd);
            break;
        }
        if (strcmp(path, "/garbage") == 0) {
            raw_sends(up, fd, "hello there, this is no HTTP\r\n\r\n");
            raw_until_closed(up, fd);
            break;
        }
        if (strcmp(path, "/close-second") == 0) {
            /* The race a pooled connection can lose: the upstream closes it
             * just as the next request goes out. */
            if (nreq == 2)
                break;
            if (raw_sends(up, fd, RAW_OK) != 0)
                break;
            continue;
        }
        if (strcmp(path, "/close-idle") == 0) {
            raw_sends(up, fd, RAW_OK);
            raw_pause(up, 0.05);
            break;
        }
        if (strcmp(path, "/headers") == 0) {
            raw_sends(up, fd,
                      "HTTP/1.1 200 OK\r\nX-Empty:\r\nX-After: 1\r\nset-cookie: a=1\r\n"
                      "Set-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok");
            continue;
        }
        if (strcmp(path, "/interim") == 0) {
            raw_sends(up, fd,
                      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                      "HTTP/1.1 200 OK\r\nX-Final: 1\r\nContent-Length: 2\r\n\r\nok");
            continue;
        }
        if (strcmp(path, "/until-close") == 0) {
            raw_sends(up, fd, "HTTP/1.1 200 OK\r\n\r\nbody delimited by the close");
            break;
        }
        if (strcmp(path, "/304") == 0) {
            raw_sends(up, fd, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
            continue;
        }
        if (strcmp(path, "/no-name") == 0 || strcmp(path, "/no-name-first") == 0) {
            /* A field line with an empty name, after a header or first. */
            raw_sends(up, fd,
                      strcmp(path, "/no-name") == 0
                          ? "HTTP/1.1 200 OK\r\nX-A: a\r\n: b\r\nContent-Length: 2\r\n\r\nok"
                          : "HTTP/1.1 200 OK\r\n:\r\nContent-Length: 2\r\n\r\nok");
            raw_until_closed(up, fd);
            break;
        }
        if (strcmp(path, "/fold") == 0) {
            raw_sends(up, fd, "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok");
            raw_until_closed(up, fd);
            break;
        }
        if (strcmp(path, "/extra") == 0) {
            raw_sends(up, fd, RAW_OK "EXTRA");
            raw_until_closed(up, fd);
            break;
        }
        if (strcmp(path, "/http10") == 0) {
            raw_sends(up, fd, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
            raw_until_closed(up, fd);
            break;
        }
        raw_sends(up, fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
    free(buf);
    return open;
}

static void *raw_conn_main(void *arg) {
    raw_conn *rc = arg;
    if (raw_serve(rc->up, rc->fd))
        close(rc->fd);
    free(rc);
    return NULL;
}

static void *raw_accept_main(void *arg) {
    raw_upstream *up = arg;
    while (!raw_stopping(up)) {
        struct pollfd pfd = {.fd = up->fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int fd = accept4(up->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        atomic_fetch_add(&up->accepted, 1);
        int i = atomic_fetch_add(&up->nconns, 1);
        raw_conn *rc = malloc(sizeof(*rc));
        rc->up = up;
        rc->fd = fd;
        if (i >= RAW_MAX_CONNS || pthread_create(&up->conns[i], NULL, raw_conn_main, rc) != 0) {
            close(fd);
            free(rc);
            atomic_fetch_sub(&up->nconns, 1);
        }
    }
    return NULL;
}

/* Starts a raw upstream on 127.0.0.1 (an ephemeral port). */
__attribute__((unused)) static void raw_start(raw_upstream *up) {
    memset(up, 0, sizeof(*up));
    up->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(up->fd >= 0);
    int one = 1;
    setsockopt(up->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(up->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(up->fd, 128), 0);
    socklen_t len = sizeof(sa);
    getsockname(up->fd, (struct sockaddr *)&sa, &len);
    up->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&up->thread, NULL, raw_accept_main, up), 0);
}

__attribute__((unused)) static void raw_stop(raw_upstream *up) {
    atomic_store(&up->stop, 1);
    pthread_join(up->thread, NULL);
    int n = atomic_load(&up->nconns);
    for (int i = 0; i < n && i < RAW_MAX_CONNS; i++)
        pthread_join(up->conns[i], NULL);
    close(up->fd);
}

/* "http://127.0.0.1:<port><path>" in buf. */
__attribute__((unused)) static const char *url_of(char *buf, size_t cap, int port,
                                                  const char *path) {
    snprintf(buf, cap, "http://127.0.0.1:%d%s", port, path);
    return buf;
}

/* A port nobody listens on (bound, then closed). */
__attribute__((unused)) static int dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- Requests in a child task ------------------------------------------------------ */

/* A request run by its own task, so that the test can cancel it. */
typedef struct fetch {
    sp_http_client *cl;
    sp_http_request req;
    char url[128];
    const char *name;  /* logged when it gets its response */
    bool free_at_once; /* free the response before returning */
    int rc;
    int status;
    sp_http_client_resp *resp; /* kept unless free_at_once */
    sp_http_client_error err;
    double took;
} fetch;

__attribute__((unused)) static int fetch_task(void *arg, void **result) {
    (void)result;
    fetch *f = arg;
    double t0 = now_s();
    f->req.url = f->url;
    f->rc = sp_http_client_request(f->cl, &f->req, &f->resp, &f->err);
    f->took = now_s() - t0;
    if (f->rc == 0) {
        f->status = sp_http_client_resp_status(f->resp);
        if (f->name)
            logf_("%s got it", f->name);
        if (f->free_at_once) {
            sp_http_client_resp_free(f->resp);
            f->resp = NULL;
        }
    } else if (f->name) {
        logf_("%s %s", f->name, f->rc == -ECANCELED ? "cancelled" : strerror(-f->rc));
    }
    return 0;
}

/* GET url; returns the status (negative: the error), the body copied into
 * body (cap bytes, NUL-terminated) if given. */
__attribute__((unused)) static int get_text(sp_http_client *cl, const char *url, char *body,
                                            size_t cap) {
    sp_http_client_resp *resp;
    int rc = sp_http_client_get(cl, url, &resp, NULL);
    if (rc != 0)
        return rc;
    int status = sp_http_client_resp_status(resp);
    if (body) {
        sp_str b;
        assert_int_equal(sp_http_client_resp_body(resp, &b, NULL), 0);
        size_t n = b.len < cap - 1 ? b.len : cap - 1;
        memcpy(body, b.ptr, n);
        body[n] = '\0';
    }
    sp_http_client_resp_free(resp);
    return status;
}

/* A client with the defaults and short timeouts, adjusted by fn if given. */
__attribute__((unused)) static sp_http_client *new_client(void (*fn)(sp_http_client_config *cfg)) {
    sp_http_client_config cfg;
    sp_http_client_config_init(&cfg);
    cfg.connect_timeout = 2;
    cfg.first_byte_timeout = 2;
    cfg.total_timeout = 5;
    if (fn)
        fn(&cfg);
    sp_http_client *cl = NULL;
    assert_int_equal(sp_http_client_create(&cl, &cfg), 0);
    return cl;
}

#endif
