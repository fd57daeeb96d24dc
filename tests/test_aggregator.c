/* apps/aggregator end to end: started as a child process (SP_APPS_DIR) in
 * front of apps/upstream (another child) and of an in-process server, and
 * driven over raw sockets: /dashboard complete, cut by its deadline, and
 * abandoned by its client; /proxy/ streaming, forwarding and mapping upstream
 * failures to 502 and 504; the rate-limited route; and /fast staying fast
 * while /cpu and /blocking work. */
#include "http_harness.h"

typedef struct child {
    pid_t pid;
    int out_fd;
    int port, raw_port;
} child;

static child g_up;        /* apps/upstream */
static test_server g_srv; /* in-process upstream for what apps/upstream lacks */
static atomic_int g_release;

static const char *app_path(const char *name) {
    static char path[2][512];
    static int i;
    const char *dir = getenv("SP_APPS_DIR");
    i ^= 1;
    snprintf(path[i], sizeof(path[i]), "%s/%s", dir ? dir : ".", name);
    return path[i];
}

/* Reads the child's stdout until it has printed n lines. */
static void read_lines(int fd, char *out, size_t cap, int n) {
    size_t len = 0;
    int lines = 0;
    double end = now_s() + CLIENT_TIMEOUT;
    while (lines < n && len < cap - 1 && now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t got = read(fd, out + len, 1);
        if (got <= 0)
            break;
        if (out[len++] == '\n')
            lines++;
    }
    out[len] = '\0';
}

/* Starts apps/aggregator on an ephemeral port with one worker and the given
 * flags (NULL-terminated). */
static child start_aggregator(const char *const *flags) {
    char *argv[32] = {(char *)app_path("aggregator"), "--port", "0", "--workers", "1"};
    int argc = 5;
    for (; *flags; flags++)
        argv[argc++] = (char *)*flags;
    argv[argc] = NULL;
    child a = {0};
    a.pid = spawn_child(argv, &a.out_fd);
    char out[256];
    read_lines(a.out_fd, out, sizeof(out), 1);
    const char *url = strstr(out, "listening on http://");
    if (!url || sscanf(url, "listening on http://%*[^:]:%d/", &a.port) != 1)
        fail_msg("aggregator printed '%s'", out);
    return a;
}

/* Stops a child with SIGTERM; it must exit with status 0 (a sanitizer's
 * leak report would change that). */
static void stop_child(child *c) {
    kill(c->pid, SIGTERM);
    assert_int_equal(finish_child(c->pid, c->out_fd, NULL, 0), 0);
}

/* ---- Requests ------------------------------------------------------------------ */

/* GET path on a new connection; returns the status, *r holds the response. */
static int fetch(int port, const char *path, response *r) {
    client c;
    client_connect(&c, port);
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    client_sends(&c, req);
    expect_response(&c, r, false);
    client_close(&c);
    return r->status;
}

static void expect_has(const char *hay, const char *needle) {
    if (!strstr(hay, needle))
        fail_msg("'%s' lacks '%s'", hay, needle);
}

static void expect_lacks(const char *hay, const char *needle) {
    if (strstr(hay, needle))
        fail_msg("'%s' holds '%s'", hay, needle);
}

/* A count from apps/upstream's /stats. */
static long upstream_stat(const char *name) {
    response r;
    assert_int_equal(fetch(g_up.port, "/stats", &r), 200);
    char key[32];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *p = strstr(r.body, key);
    assert_non_null(p);
    long n = atol(p + strlen(key));
    response_free(&r);
    return n;
}

/* Polls /stats until the count is want. */
static void expect_upstream_stat(const char *name, long want) {
    double end = now_s() + CLIENT_TIMEOUT;
    long n;
    while ((n = upstream_stat(name)) != want && now_s() < end)
        sleep_s(0.01);
    if (n != want)
        fail_msg("upstream %s is %ld, want %ld", name, n, want);
}

static char *url_of(char *buf, size_t cap, const char *name, int port, const char *path) {
    snprintf(buf, cap, "%s%shttp://127.0.0.1:%d%s", name ? name : "", name ? "=" : "", port, path);
    return buf;
}

/* ---- /dashboard ---------------------------------------------------------------- */

static void test_dashboard_answers_every_backend_under_its_name(void **state) {
    (void)state;
    char u[3][128];
    child a = start_aggregator((const char *[]){
        "--upstream", url_of(u[0], 128, NULL, g_up.port, "/data?name=users&delay_ms=100&items=1"),
        "--upstream", url_of(u[1], 128, NULL, g_up.port, "/data?name=orders&delay_ms=200&items=1"),
        "--upstream", url_of(u[2], 128, "stock", g_up.port, "/data?delay_ms=200&items=1"), NULL});
    response r;
    double t0 = now_s();
    assert_int_equal(fetch(a.port, "/dashboard", &r), 200);
    double took = now_s() - t0;
    assert_true(took >= 0.2 && took < 0.45); /* the three at once: the slowest, not the sum */
    char ct[64];
    assert_true(response_header(&r, "Content-Type", ct, sizeof(ct)));
    assert_string_equal(ct, "application/json");
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"users\":{\"source\":\"users\",\"delay_ms\":100,\"pid\":%d,\"items\":[{\"id\":1,"
             "\"name\":\"users 1\"}]},"
             "\"orders\":{\"source\":\"orders\",\"delay_ms\":200,\"pid\":%d,\"items\":[{\"id\":1,"
             "\"name\":\"orders 1\"}]},"
             "\"stock\":{\"source\":\"upstream\",\"delay_ms\":200,\"pid\":%d,\"items\":[{\"id\":1,"
             "\"name\":\"upstream 1\"}]},"
             "\"errors\":{},\"missing\":[],\"complete\":true}\n",
             (int)g_up.pid, (int)g_up.pid, (int)g_up.pid);
    assert_string_equal(r.body, want);
    response_free(&r);
    stop_child(&a);
}

static void test_hanging_backend_is_missing_when_the_deadline_answers(void **state) {
    (void)state;
    char u[5][128];
    child a = start_aggregator((const char *[]){
        "--deadline", "0.3", "--upstream", url_of(u[0], 128, "users", g_up.port, "/data?items=0"),
        "--upstream", url_of(u[1], 128, "orders", g_up.port, "/data?delay_ms=30&items=0"),
        "--upstream", url_of(u[2], 128, "stock", g_up.port, "/data?hang=1"), "--upstream",
        url_of(u[3], 128, "broken", g_up.port, "/data?fail=503"), "--upstream",
        url_of(u[4], 128, "text", g_up.port, "/big?bytes=100"), NULL});
    response r;
    double t0 = now_s();
    assert_int_equal(fetch(a.port, "/dashboard", &r), 200);
    double took = now_s() - t0;
    assert_true(took >= 0.3 && took < 0.7);
    expect_has(r.body, "{\"users\":{\"source\":\"upstream\",\"delay_ms\":0,");
    expect_has(r.body, ",\"orders\":{\"source\":\"upstream\",\"delay_ms\":30,");
    expect_has(r.body, "\"errors\":{\"stock\":\"no response within the 0.3 s deadline\","
                       "\"broken\":\"upstream answered 503\","
                       "\"text\":\"upstream answered something that is not JSON\"},"
                       "\"missing\":[\"stock\",\"broken\",\"text\"],\"complete\":false}\n");
    response_free(&r);
    /* The hanging fetch's connection was closed at the deadline. */
    expect_upstream_stat("in_flight", 0);
    stop_child(&a);
}

static void test_dashboard_with_every_backend_down_is_502(void **state) {
    (void)state;
    child a = start_aggregator((const char *[]){"--upstream", "a=http://127.0.0.1:1/", "--upstream",
                                                "b=http://127.0.0.1:1/x", NULL});
    response r;
    assert_int_equal(fetch(a.port, "/dashboard", &r), 502);
    expect_has(r.body, "\"errors\":{\"a\":\"connection refused by 127.0.0.1:1\",\"b\":");
    expect_has(r.body, "\"missing\":[\"a\",\"b\"],\"complete\":false}");
    response_free(&r);
    stop_child(&a);
}

static void test_client_disconnect_closes_the_upstream_connections(void **state) {
    (void)state;
    char u[3][128];
    child a = start_aggregator((const char *[]){
        "--deadline", "20", "--upstream", url_of(u[0], 128, "a", g_up.port, "/data?hang=1"),
        "--upstream", url_of(u[1], 128, "b", g_up.port, "/data?hang=1"), "--upstream",
        url_of(u[2], 128, "c", g_up.port, "/data?hang=1"), NULL});
    client c;
    client_connect(&c, a.port);
    client_sends(&c, "GET /dashboard HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_upstream_stat("in_flight", 3);
    client_close(&c);
    /* Cancelled with its handler, every fetch closed its connection. */
    expect_upstream_stat("in_flight", 0);
    stop_child(&a);
}

/* ---- /proxy/ ------------------------------------------------------------------- */

/* The byte at offset i of apps/upstream's /big body. */
static char big_byte(size_t i) {
    return i % 64 == 63 ? '\n' : (char)('a' + (i / 64) % 16);
}

static void expect_big_body(const response *r, size_t len) {
    assert_int_equal(r->body_len, len);
    for (size_t i = 0; i < r->body_len; i++)
        if (r->body[i] != big_byte(i))
            fail_msg("byte %zu is '%c', want '%c'", i, r->body[i], big_byte(i));
}

static void test_proxy_streams_large_bodies_through_with_their_framing(void **state) {
    (void)state;
    char u[64];
    child a =
        start_aggregator((const char *[]){"--proxy", url_of(u, 64, NULL, g_up.port, ""), NULL});
    response r;
    char v[32];
    /* A large body with a length streams through with it, as from nginx. */
    assert_int_equal(fetch(a.port, "/proxy/big?bytes=5000000", &r), 200);
    assert_false(r.chunked);
    assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
    assert_string_equal(v, "5000000");
    expect_big_body(&r, 5000000);
    response_free(&r);

    /* One without a length goes chunked. */
    assert_int_equal(fetch(a.port, "/proxy/big?bytes=3000000&chunked=1", &r), 200);
    assert_true(r.chunked);
    assert_true(r.nchunks > 1);
    expect_big_body(&r, 3000000);
    response_free(&r);

    /* A small one goes whole, with its length. */
    assert_int_equal(fetch(a.port, "/proxy/big?bytes=1000", &r), 200);
    assert_false(r.chunked);
    assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
    assert_string_equal(v, "1000");
    expect_big_body(&r, 1000);
    response_free(&r);
    stop_child(&a);
}

/* HEAD passes the upstream's framing on: the length a GET would have, or
 * chunked, and no body; the connection then serves the next request. */
static void test_proxied_head_keeps_the_upstreams_length(void **state) {
    (void)state;
    char u[64];
    child a =
        start_aggregator((const char *[]){"--proxy", url_of(u, 64, NULL, g_up.port, ""), NULL});
    client c;
    client_connect(&c, a.port);
    const char *paths[] = {"/proxy/big?bytes=1000", "/proxy/big?bytes=5000000",
                           "/proxy/big?bytes=10&chunked=1"};
    const char *lengths[] = {"1000", "5000000", NULL};
    for (int i = 0; i < 3; i++) {
        char req[128];
        snprintf(req, sizeof(req), "HEAD %s HTTP/1.1\r\nHost: t\r\n\r\n", paths[i]);
        client_sends(&c, req);
        response r;
        expect_response(&c, &r, true);
        assert_int_equal(r.status, 200);
        char v[32];
        if (lengths[i]) {
            assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
            assert_string_equal(v, lengths[i]);
        } else {
            assert_false(response_header(&r, "Content-Length", v, sizeof(v)));
            assert_true(response_header(&r, "Transfer-Encoding", v, sizeof(v)));
        }
        response_free(&r);
    }
    client_sends(&c, "GET /proxy/big?bytes=5 HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_string_equal(r.body, "aaaaa");
    response_free(&r);
    client_close(&c);
    stop_child(&a);
}

static void test_proxy_sends_pieces_on_as_they_arrive(void **state) {
    (void)state;
    char u[64];
    child a =
        start_aggregator((const char *[]){"--proxy", url_of(u, 64, NULL, g_srv.port, ""), NULL});
    atomic_store(&g_release, 0);
    client c;
    client_connect(&c, a.port);
    client_sends(&c, "GET /proxy/pieces HTTP/1.1\r\nHost: t\r\n\r\n");
    /* The first piece comes through while the upstream holds the second. */
    assert_true(client_wait_for(&c, 0, "first\n", now_s() + CLIENT_TIMEOUT) > 0);
    atomic_store(&g_release, 1);
    expect_status_body(&c, 200, "first\nsecond\n");
    client_close(&c);
    stop_child(&a);
}

static void test_proxy_forwards_method_headers_and_body_minus_hop_by_hop_fields(void **state) {
    (void)state;
    char u[64];
    child a =
        start_aggregator((const char *[]){"--proxy", url_of(u, 64, NULL, g_srv.port, "/up"), NULL});
    client c;
    client_connect(&c, a.port);
    client_sends(&c, "POST /proxy/headers/a%20b?x=1&y=%2F HTTP/1.1\r\n"
                     "Host: front.example\r\n"
                     "Connection: keep-alive, X-Drop\r\n"
                     "X-Drop: 1\r\n"
                     "Keep-Alive: timeout=5\r\n"
                     "TE: trailers\r\n"
                     "Proxy-Authorization: Basic eDp5\r\n"
                     "X-Forwarded-For: 10.1.2.3\r\n"
                     "X-Keep: yes\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: 5\r\n"
                     "\r\n"
                     "hello");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    char host[64];
    snprintf(host, sizeof(host), "Host: 127.0.0.1:%d\n", g_srv.port);
    expect_has(r.body, "POST /up/headers/a%20b?x=1&y=%2F\n");
    expect_has(r.body, host);
    expect_has(r.body, "X-Keep: yes\n");
    expect_has(r.body, "Content-Type: text/plain\n");
    expect_has(r.body, "Content-Length: 5\n");
    expect_has(r.body, "X-Forwarded-For: 10.1.2.3, 127.0.0.1\n");
    expect_has(r.body, "\n\nhello");
    const char *dropped[] = {
        "front.example", "Connection:", "X-Drop:", "Keep-Alive:", "TE:", "Proxy-Authorization:"};
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        expect_lacks(r.body, dropped[i]);
    /* The answer's end-to-end fields pass, its hop-by-hop ones do not. */
    char v[64];
    assert_true(response_header(&r, "X-Up", v, sizeof(v)));
    assert_string_equal(v, "1");
    assert_false(response_header(&r, "X-Hop", v, sizeof(v)));
    assert_true(response_header(&r, "Server", v, sizeof(v)));
    assert_string_equal(v, "spindle");
    response_free(&r);
    client_close(&c);
    stop_child(&a);
}

static void test_proxy_maps_upstream_failures_to_502_and_504(void **state) {
    (void)state;
    char u[64];
    /* Reset and garbage from apps/upstream's raw port. */
    child a =
        start_aggregator((const char *[]){"--proxy", url_of(u, 64, NULL, g_up.raw_port, ""), NULL});
    response r;
    assert_int_equal(fetch(a.port, "/proxy/x?reset=1", &r), 502);
    assert_string_equal(r.body, "502 Bad Gateway\n");
    response_free(&r);
    assert_int_equal(fetch(a.port, "/proxy/x?malformed=1", &r), 502);
    response_free(&r);
    stop_child(&a);

    /* Nobody listening. */
    a = start_aggregator((const char *[]){"--proxy", "http://127.0.0.1:1", NULL});
    assert_int_equal(fetch(a.port, "/proxy/x", &r), 502);
    response_free(&r);
    stop_child(&a);

    /* No answer within the proxy timeout. */
    a = start_aggregator((const char *[]){"--proxy", url_of(u, 64, NULL, g_up.port, ""),
                                          "--proxy-timeout", "0.3", NULL});
    double t0 = now_s();
    assert_int_equal(fetch(a.port, "/proxy/data?hang=1", &r), 504);
    double took = now_s() - t0;
    assert_true(took >= 0.3 && took < 1.0);
    assert_string_equal(r.body, "504 Gateway Timeout\n");
    response_free(&r);
    /* Its upstream answering status codes is no failure. */
    assert_int_equal(fetch(a.port, "/proxy/data?fail=503", &r), 503);
    expect_has(r.body, "\"error\":\"requested failure\"");
    response_free(&r);
    expect_upstream_stat("in_flight", 0);
    stop_child(&a);
}

/* ---- The other routes ---------------------------------------------------------- */

static void test_limited_route_answers_429_over_the_rate(void **state) {
    (void)state;
    child a = start_aggregator((const char *[]){"--rate", "2", NULL});
    response r;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fetch(a.port, "/limited", &r), 200);
        response_free(&r);
    }
    assert_int_equal(fetch(a.port, "/limited", &r), 429);
    char v[16];
    assert_true(response_header(&r, "Retry-After", v, sizeof(v)));
    assert_string_equal(v, "1");
    response_free(&r);
    /* Other routes are not limited. */
    assert_int_equal(fetch(a.port, "/fast", &r), 200);
    response_free(&r);
    stop_child(&a);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_fast_route_keeps_its_latency_while_blocking_and_cpu_handlers_run(void **state) {
    (void)state;
    child a = start_aggregator((const char *[]){"--procs", "2", NULL});
    enum { SLOW = 8, FAST = 50 };
    client slow[SLOW];
    for (int i = 0; i < SLOW; i++) {
        client_connect(&slow[i], a.port);
        client_sends(&slow[i], i % 2 ? "GET /blocking?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n"
                                     : "GET /cpu?n=1000000 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    sleep_s(0.05); /* they are under way */
    client c;
    client_connect(&c, a.port);
    double lat[FAST];
    for (int i = 0; i < FAST; i++) {
        double t0 = now_s();
        client_sends(&c, "GET /fast HTTP/1.1\r\nHost: t\r\n\r\n");
        response r;
        expect_response(&c, &r, false);
        lat[i] = now_s() - t0;
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "fast\n");
        response_free(&r);
    }
    double fast_done = now_s();
    client_close(&c);
    double last_slow = 0;
    for (int i = 0; i < SLOW; i++) {
        response r;
        expect_response(&slow[i], &r, false);
        last_slow = now_s();
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, i % 2 ? "{\"blocked_ms\":400}\n"
                                          : "{\"n\":1000000,\"primes\":78498}\n");
        response_free(&r);
        client_close(&slow[i]);
    }
    qsort(lat, FAST, sizeof(lat[0]), cmp_double);
    double p99 = lat[FAST * 99 / 100];
    print_message("/fast: median %.2f ms, p99 %.2f ms; the last slow answer came %.0f ms after "
                  "the last fast one\n",
                  lat[FAST / 2] * 1e3, p99 * 1e3, (last_slow - fast_done) * 1e3);
    /* Run on the loop, each /cpu would hold /fast for its whole computation
     * and each /blocking for 400 ms. */
    assert_true(p99 < 0.1);
    assert_true(last_slow > fast_done);
    stop_child(&a);
}

/* ---- Setup --------------------------------------------------------------------- */

/* ANY /up/headers/...: the request line, headers and body as text. */
static int h_headers(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str body;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc;
    char out[8192];
    sp_str m = sp_http_req_method(req), t = sp_http_req_target(req);
    size_t n =
        (size_t)snprintf(out, sizeof(out), "%.*s %.*s\n", (int)m.len, m.ptr, (int)t.len, t.ptr);
    for (size_t i = 0; i < sp_http_req_header_count(req) && n < sizeof(out); i++) {
        sp_str k, v;
        sp_http_req_header_at(req, i, &k, &v);
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%.*s: %.*s\n", (int)k.len, k.ptr,
                              (int)v.len, v.ptr);
    }
    if (n < sizeof(out))
        n += (size_t)snprintf(out + n, sizeof(out) - n, "\n%.*s", (int)body.len, body.ptr);
    sp_http_resp_header(resp, "X-Up", "1");
    sp_http_resp_header(resp, "Connection", "X-Hop");
    sp_http_resp_header(resp, "X-Hop", "1");
    return sp_http_resp_send(resp, 200, "text/plain", out, n < sizeof(out) ? n : sizeof(out));
}

/* GET /pieces: "first\n", then "second\n" once the test says so. */
static int h_pieces(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int rc = sp_http_resp_start(resp, 200, "text/plain");
    if (rc == 0)
        rc = sp_http_resp_write(resp, "first\n", 6);
    for (double end = now_s() + CLIENT_TIMEOUT; rc == 0 && !atomic_load(&g_release);) {
        HANDLER_CHECK(now_s() < end);
        rc = now_s() < end ? sp_sleep(0.005) : -ETIMEDOUT;
    }
    if (rc == 0)
        rc = sp_http_resp_write(resp, "second\n", 7);
    return rc ? rc : sp_http_resp_end(resp);
}

static int setup(void **state) {
    (void)state;
    char *argv[] = {(char *)app_path("upstream"), "--port", "0", "--workers", "1", NULL};
    g_up.pid = spawn_child(argv, &g_up.out_fd);
    char out[512];
    read_lines(g_up.out_fd, out, sizeof(out), 2);
    const char *url = strstr(out, "listening on http://");
    const char *raw = strstr(out, "raw port on http://");
    if (!url || sscanf(url, "listening on http://%*[^:]:%d/", &g_up.port) != 1 || !raw ||
        sscanf(raw, "raw port on http://%*[^:]:%d/", &g_up.raw_port) != 1)
        fail_msg("upstream printed '%s'", out);

    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "*", "/up/headers/*", h_headers, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/pieces", h_pieces, NULL, 0), 0);
    server_start_with(&g_srv, r, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    server_stop(&g_srv, true);
    expect_no_handler_failures();
    stop_child(&g_up);
    return 0;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dashboard_answers_every_backend_under_its_name),
        cmocka_unit_test(test_hanging_backend_is_missing_when_the_deadline_answers),
        cmocka_unit_test(test_dashboard_with_every_backend_down_is_502),
        cmocka_unit_test(test_client_disconnect_closes_the_upstream_connections),
        cmocka_unit_test(test_proxy_streams_large_bodies_through_with_their_framing),
        cmocka_unit_test(test_proxied_head_keeps_the_upstreams_length),
        cmocka_unit_test(test_proxy_sends_pieces_on_as_they_arrive),
        cmocka_unit_test(test_proxy_forwards_method_headers_and_body_minus_hop_by_hop_fields),
        cmocka_unit_test(test_proxy_maps_upstream_failures_to_502_and_504),
        cmocka_unit_test(test_limited_route_answers_429_over_the_rate),
        cmocka_unit_test(test_fast_route_keeps_its_latency_while_blocking_and_cpu_handlers_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
