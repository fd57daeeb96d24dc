/* The HTTP server under many connections: 1,000 clients at once, each making
 * 20 keep-alive requests, every response checked. One non-blocking client
 * loop (poll) drives them all from the test thread. */
#include "http_harness.h"

enum { NCONN = 1000, NREQ = 20 };

static const char k_request[] = "GET /users/%d HTTP/1.1\r\nHost: t\r\n\r\n";

typedef struct load_conn {
    int fd;
    int id;
    int done; /* responses received */
    char buf[1024];
    size_t len;
    bool sending; /* a request is (partly) unsent */
    char out[64];
    size_t out_len, out_off;
} load_conn;

static int h_user(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str id;
    HANDLER_CHECK(sp_http_req_param(req, "id", &id) == 0);
    return sp_http_resp_send(resp, 200, "text/plain", id.ptr, id.len);
}

static void queue_request(load_conn *lc) {
    lc->out_len = (size_t)snprintf(lc->out, sizeof(lc->out), k_request, lc->id);
    lc->out_off = 0;
    lc->sending = true;
}

/* Sends what the socket takes; false on an error. */
static bool pump_out(load_conn *lc) {
    while (lc->out_off < lc->out_len) {
        ssize_t n = send(lc->fd, lc->out + lc->out_off, lc->out_len - lc->out_off, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN;
        lc->out_off += (size_t)n;
    }
    lc->sending = false;
    return true;
}

/* Consumes complete responses from buf, checking each; returns how many, or
 * -1 on a wrong one. */
static int take_responses(load_conn *lc) {
    int got = 0;
    for (;;) {
        char *end = memmem(lc->buf, lc->len, "\r\n\r\n", 4);
        if (!end)
            return got;
        size_t head = (size_t)(end - lc->buf) + 4;
        char *cl = memmem(lc->buf, head, "Content-Length: ", 16);
        if (strncmp(lc->buf, "HTTP/1.1 200 ", 13) != 0 || !cl)
            return -1;
        size_t blen = strtoul(cl + 16, NULL, 10);
        if (lc->len < head + blen)
            return got;
        char want[16];
        int wlen = snprintf(want, sizeof(want), "%d", lc->id);
        if (blen != (size_t)wlen || memcmp(lc->buf + head, want, blen) != 0)
            return -1;
        memmove(lc->buf, lc->buf + head + blen, lc->len - head - blen);
        lc->len -= head + blen;
        got++;
    }
}

static void cfg_load(sp_http_config *cfg) {
    cfg->workers = 2;
    cfg->backlog = 2048;
}

static void test_1000_connections_each_making_20_requests(void **state) {
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4 * NCONN) {
        rl.rlim_cur = rl.rlim_max < 4 * NCONN ? rl.rlim_max : 4 * NCONN;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "GET", "/users/:id", h_user, NULL, 0), 0);
    test_server srv;
    server_start_with(&srv, r, cfg_load);

    double t0 = now_s();
    load_conn *conns = calloc(NCONN, sizeof(*conns));
    struct pollfd *pfds = calloc(NCONN, sizeof(*pfds));
    int *which = calloc(NCONN, sizeof(*which)); /* pfds[k] is conns[which[k]] */
    for (int i = 0; i < NCONN; i++) {
        client c;
        client_connect(&c, srv.port);
        conns[i].fd = c.fd;
        conns[i].id = i;
        assert_int_equal(sp_fd_set_nonblocking(c.fd), 0);
        queue_request(&conns[i]);
    }
    int open = NCONN;
    long answered = 0;
    while (open > 0) {
        int n = 0;
        for (int i = 0; i < NCONN; i++) {
            if (conns[i].fd < 0)
                continue;
            pfds[n].fd = conns[i].fd;
            pfds[n].events = conns[i].sending ? POLLOUT | POLLIN : POLLIN;
            pfds[n].revents = 0;
            which[n++] = i;
        }
        int ready = poll(pfds, (nfds_t)n, 5000);
        if (ready <= 0)
            fail_msg("no progress for 5 s: %d connections open, %ld answered", open, answered);
        for (int k = 0; k < n; k++) {
            int i = which[k];
            load_conn *lc = &conns[i];
            if (pfds[k].revents & POLLOUT && !pump_out(lc))
                fail_msg("connection %d: send failed: %s", i, strerror(errno));
            if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = recv(lc->fd, lc->buf + lc->len, sizeof(lc->buf) - lc->len, 0);
            if (got < 0 && errno == EAGAIN)
                continue;
            if (got <= 0)
                fail_msg("connection %d closed after %d responses", i, lc->done);
            lc->len += (size_t)got;
            int taken = take_responses(lc);
            if (taken < 0)
                fail_msg("connection %d: bad response: '%.*s'", i, (int)lc->len, lc->buf);
            lc->done += taken;
            answered += taken;
            if (taken > 0 && lc->done < NREQ) {
                queue_request(lc);
                if (!pump_out(lc))
                    fail_msg("connection %d: send failed: %s", i, strerror(errno));
            } else if (lc->done == NREQ) {
                close(lc->fd);
                lc->fd = -1;
                open--;
            }
        }
    }
    double took = now_s() - t0;
    assert_int_equal(answered, (long)NCONN * NREQ);
    print_message("  %d connections x %d requests in %.2f s\n", NCONN, NREQ, took);
    free(conns);
    free(pfds);
    free(which);
    server_stop(&srv, false);
    expect_no_handler_failures();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_1000_connections_each_making_20_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
