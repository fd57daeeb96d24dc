/* The rate limiting middleware over real sockets: the accepted count at a
 * steady overload, the 429 answer and its headers, per-route and per-client
 * buckets with bounded memory, and the queueing mode (order, latency, a
 * client leaving the queue, the maximum wait). Each test runs its own server. */
#include <math.h>

#include "http_harness.h"

static atomic_int g_handled; /* requests that reached a handler */
static atomic_int g_threads; /* worker threads that ran h_ok (they are new per server) */
static _Thread_local bool t_counted;

static int h_ok(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    atomic_fetch_add(&g_handled, 1);
    if (!t_counted) {
        t_counted = true;
        atomic_fetch_add(&g_threads, 1);
    }
    return sp_http_resp_text(resp, 200, "text/plain", "ok");
}

/* Answers "i=<query i> order=<arrival at the handler, from 1>". */
static int h_order(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    int order = atomic_fetch_add(&g_handled, 1) + 1;
    sp_str i = {"?", 1};
    sp_http_req_query(req, "i", &i);
    char body[64];
    int n = snprintf(body, sizeof(body), "i=%.*s order=%d", (int)i.len, i.ptr, order);
    return sp_http_resp_send(resp, 200, "text/plain", body, (size_t)n);
}

/* ---- A server with one limiter ------------------------------------------------- */

typedef struct rl_server {
    test_server ts;
    sp_ratelimit_mw *mw;
} rl_server;

static int g_workers;

static void set_workers(sp_http_config *cfg) {
    cfg->workers = g_workers;
}

/* Routes /a, /b, /users/:id and /order (none under a group) behind a limiter
 * made from cfg on the root router. */
static void rl_start(rl_server *s, const sp_ratelimit_mw_config *cfg, int workers) {
    atomic_store(&g_handled, 0);
    atomic_store(&g_threads, 0);
    assert_int_equal(sp_ratelimit_mw_create(&s->mw, cfg), 0);
    sp_router *r = new_router();
    assert_int_equal(sp_router_use(r, sp_ratelimit_mw_handle, s->mw), 0);
    assert_int_equal(sp_router_add(r, "GET", "/a", h_ok, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/b", h_ok, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "POST", "/b", h_ok, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/users/:id", h_ok, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/order", h_order, NULL, 0), 0);
    g_workers = workers;
    server_start_with(&s->ts, r, set_workers);
}

static void rl_stop(rl_server *s) {
    server_stop(&s->ts, false);
    sp_ratelimit_mw_destroy(s->mw);
    expect_no_handler_failures();
}

static sp_ratelimit_mw_config limits(double rate, double burst) {
    sp_ratelimit_mw_config cfg;
    sp_ratelimit_mw_config_init(&cfg);
    cfg.rate = rate;
    cfg.burst = burst;
    return cfg;
}

/* ---- Clients --------------------------------------------------------------------- */

/* Connects to 127.0.0.1:port from the loopback address src (any 127/8
 * address is on lo), so that the server sees distinct clients. */
static void client_connect_from(client *c, int port, const char *src) {
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &sa.sin_addr), 1);
    if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        fail_msg("bind %s: %s", src, strerror(errno));
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        fail_msg("connect from %s: %s", src, strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void send_get(client *c, const char *path) {
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    client_sends(c, req);
}

/* GET path on c; returns the status, the response in *r (freed by the caller)
 * or freed here if r is NULL. */
static int get(client *c, const char *path, response *r) {
    send_get(c, path);
    response tmp;
    response *out = r ? r : &tmp;
    expect_response(c, out, false);
    int status = out->status;
    if (!r)
        response_free(&tmp);
    return status;
}

static void expect_header(const response *r, const char *name, const char *want) {
    char v[128];
    if (!response_header(r, name, v, sizeof(v)))
        fail_msg("no %s header in '%s'", name, r->head);
    if (strcmp(v, want) != 0)
        fail_msg("%s: got '%s', want '%s'", name, v, want);
}

/* ---- Refusing ------------------------------------------------------------------- */

/* The scenario: 100/s with burst 10, driven at a steady 200/s for
 * 10 s through 16 connections spread over 2 workers sharing the limiter. */
static void test_steady_overload_for_10_s_accepts_burst_plus_rate_times_duration(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(100, 10);
    rl_server s;
    rl_start(&s, &cfg, 2);
    enum { CONNS = 16, N = 2000 };
    const double interval = 1.0 / 200;
    client c[CONNS];
    for (int i = 0; i < CONNS; i++)
        client_connect(&c[i], s.ts.port);
    int ok = 0, refused = 0;
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        double due = t0 + i * interval;
        double left = due - now_s();
        if (left > 0)
            sleep_s(left);
        int status = get(&c[i % CONNS], "/a", NULL);
        if (status == 200)
            ok++;
        else if (status == 429)
            refused++;
        else
            fail_msg("request %d: status %d", i, status);
    }
    double took = now_s() - t0;
    for (int i = 0; i < CONNS; i++)
        client_close(&c[i]);
    const double ideal = 10 + 100 * 10.0;
    print_message("accepted %d, refused %d in %.3f s (ideal %.0f)\n", ok, refused, took, ideal);
    assert_int_equal(ok + refused, N);
    assert_true(took < 10.5);
    assert_true(fabs(ok - ideal) <= 0.02 * ideal);
    assert_int_equal(atomic_load(&g_handled), ok);
    /* SO_REUSEPORT spread the connections: the limit held across workers. */
    assert_int_equal(atomic_load(&g_threads), 2);
    rl_stop(&s);
}

static void test_responses_carry_ratelimit_headers_and_429_has_retry_after(void **state) {
    (void)state;
    /* A token every 2 s: nothing comes back while the test runs. */
    sp_ratelimit_mw_config cfg = limits(0.5, 2);
    rl_server s;
    rl_start(&s, &cfg, 1);
    client c;
    client_connect(&c, s.ts.port);
    response r;
    assert_int_equal(get(&c, "/a", &r), 200);
    expect_header(&r, "RateLimit-Limit", "2");
    expect_header(&r, "RateLimit-Remaining", "1");
    expect_header(&r, "RateLimit-Reset", "2");
    char v[64];
    assert_false(response_header(&r, "Retry-After", v, sizeof(v)));
    response_free(&r);

    assert_int_equal(get(&c, "/a", &r), 200);
    expect_header(&r, "RateLimit-Remaining", "0");
    expect_header(&r, "RateLimit-Reset", "4");
    response_free(&r);

    /* Refused, twice, on the same connection, which stays open. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(get(&c, "/a", &r), 429);
        assert_string_equal(r.body, "Too Many Requests\n");
        expect_header(&r, "Retry-After", "2");
        expect_header(&r, "RateLimit-Limit", "2");
        expect_header(&r, "RateLimit-Remaining", "0");
        expect_header(&r, "RateLimit-Reset", "4");
        assert_false(response_header(&r, "Connection", v, sizeof(v)));
        response_free(&r);
    }
    assert_int_equal(atomic_load(&g_handled), 2);
    client_close(&c);
    rl_stop(&s);
}

static void test_retry_after_is_at_least_one_second(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(100, 1);
    rl_server s;
    rl_start(&s, &cfg, 1);
    client c;
    client_connect(&c, s.ts.port);
    assert_int_equal(get(&c, "/a", NULL), 200);
    response r;
    assert_int_equal(get(&c, "/a", &r), 429);
    /* 10 ms to wait, advertised as a whole second. */
    expect_header(&r, "Retry-After", "1");
    expect_header(&r, "RateLimit-Reset", "1");
    response_free(&r);
    sleep_s(0.03);
    assert_int_equal(get(&c, "/a", NULL), 200);
    client_close(&c);
    rl_stop(&s);
}

/* ---- What shares a bucket ------------------------------------------------------- */

static void test_per_ip_buckets_are_isolated(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(0.1, 2);
    cfg.by = SP_RATELIMIT_BY_IP;
    rl_server s;
    rl_start(&s, &cfg, 1);
    client a, b;
    client_connect_from(&a, s.ts.port, "127.0.0.2");
    client_connect_from(&b, s.ts.port, "127.0.0.3");
    assert_int_equal(get(&a, "/a", NULL), 200);
    assert_int_equal(get(&a, "/b", NULL), 200);
    response r;
    assert_int_equal(get(&a, "/a", &r), 429);
    expect_header(&r, "Retry-After", "10");
    expect_header(&r, "RateLimit-Remaining", "0");
    expect_header(&r, "RateLimit-Reset", "20");
    response_free(&r);
    /* The other client's bucket is untouched. */
    assert_int_equal(get(&b, "/a", &r), 200);
    expect_header(&r, "RateLimit-Remaining", "1");
    response_free(&r);
    assert_int_equal(get(&b, "/a", NULL), 200);
    assert_int_equal(get(&b, "/a", NULL), 429);
    /* A new connection from a known address finds its bucket. */
    client a2;
    client_connect_from(&a2, s.ts.port, "127.0.0.2");
    assert_int_equal(get(&a2, "/a", NULL), 429);
    assert_int_equal(sp_ratelimit_mw_keys(s.mw), 2);
    client_close(&a);
    client_close(&a2);
    client_close(&b);
    rl_stop(&s);
}

static void test_per_ip_memory_is_bounded_by_max_keys(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(0.01, 1);
    cfg.by = SP_RATELIMIT_BY_IP;
    cfg.max_keys = 50;
    rl_server s;
    rl_start(&s, &cfg, 1);
    enum { CLIENTS = 300 };
    for (int i = 0; i < CLIENTS; i++) {
        char src[32];
        snprintf(src, sizeof(src), "127.1.%d.%d", i / 200, 1 + i % 200);
        client c;
        client_connect_from(&c, s.ts.port, src);
        assert_int_equal(get(&c, "/a", NULL), 200);
        client_close(&c);
        assert_true(sp_ratelimit_mw_keys(s.mw) <= 50);
    }
    assert_int_equal(sp_ratelimit_mw_keys(s.mw), 50);
    /* The latest client is still held; the first was evicted and starts
     * again with a full bucket. */
    client c;
    client_connect_from(&c, s.ts.port, "127.1.1.100");
    assert_int_equal(get(&c, "/a", NULL), 429);
    client_close(&c);
    client_connect_from(&c, s.ts.port, "127.1.0.1");
    assert_int_equal(get(&c, "/a", NULL), 200);
    client_close(&c);
    rl_stop(&s);
}

static void test_per_route_buckets_are_separate_and_shared_by_a_pattern(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(0.01, 1);
    cfg.by = SP_RATELIMIT_BY_ROUTE;
    rl_server s;
    rl_start(&s, &cfg, 1);
    client c;
    client_connect(&c, s.ts.port);
    assert_int_equal(get(&c, "/a", NULL), 200);
    assert_int_equal(get(&c, "/a", NULL), 429);
    assert_int_equal(get(&c, "/b", NULL), 200);
    /* Every method of a pattern, every path it matches: one bucket. */
    client_sends(&c, "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 429);
    response_free(&r);
    assert_int_equal(get(&c, "/users/1", NULL), 200);
    assert_int_equal(get(&c, "/users/2", NULL), 429);
    /* Unrouted requests share one bucket: the 404, then a 429. */
    assert_int_equal(get(&c, "/nope", NULL), 404);
    assert_int_equal(get(&c, "/other", NULL), 429);
    assert_int_equal(sp_ratelimit_mw_keys(s.mw), 4);
    client_close(&c);
    rl_stop(&s);
}

static void test_limiter_on_a_group_leaves_other_routes_alone(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(0.01, 1);
    sp_ratelimit_mw *mw;
    assert_int_equal(sp_ratelimit_mw_create(&mw, &cfg), 0);
    sp_router *r = new_router(), *api;
    assert_int_equal(sp_router_add(r, "GET", "/", h_ok, NULL, 0), 0);
    assert_int_equal(sp_router_group(r, "/api", &api), 0);
    assert_int_equal(sp_router_use(api, sp_ratelimit_mw_handle, mw), 0);
    assert_int_equal(sp_router_add(api, "GET", "/x", h_ok, NULL, 0), 0);
    assert_int_equal(sp_router_add(api, "GET", "/y", h_ok, NULL, 0), 0);
    test_server ts;
    server_start_with(&ts, r, NULL);
    client c;
    client_connect(&c, ts.port);
    /* One bucket for the whole group. */
    assert_int_equal(get(&c, "/api/x", NULL), 200);
    assert_int_equal(get(&c, "/api/y", NULL), 429);
    assert_int_equal(get(&c, "/api/x", NULL), 429);
    response resp;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(get(&c, "/", &resp), 200);
        char v[64];
        assert_false(response_header(&resp, "RateLimit-Limit", v, sizeof(v)));
        response_free(&resp);
    }
    client_close(&c);
    server_stop(&ts, false);
    sp_ratelimit_mw_destroy(mw);
}

/* ---- Queueing ------------------------------------------------------------------- */

static void test_queued_requests_wait_for_their_tokens_in_arrival_order(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(20, 1); /* a token every 50 ms */
    cfg.max_wait = 1;
    rl_server s;
    rl_start(&s, &cfg, 1);
    enum { N = 6 };
    client c[N];
    for (int i = 0; i < N; i++)
        client_connect(&c[i], s.ts.port);
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/order?i=%d", i);
        send_get(&c[i], path);
        sleep_s(0.002);
    }
    for (int i = 0; i < N; i++) {
        response r;
        expect_response(&c[i], &r, false);
        double at = now_s() - t0;
        assert_int_equal(r.status, 200);
        char want[32];
        snprintf(want, sizeof(want), "i=%d order=%d", i, i + 1);
        assert_string_equal(r.body, want);
        /* The first passes at once, each next one 50 ms later. */
        if (at < 0.05 * i - 0.005 || at > 0.05 * i + 0.05)
            fail_msg("request %d answered after %.3f s", i, at);
        expect_header(&r, "RateLimit-Remaining", "0");
        response_free(&r);
        client_close(&c[i]);
    }
    rl_stop(&s);
}

static void test_client_leaving_the_queue_spends_no_token(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(5, 1); /* a token every 200 ms */
    cfg.max_wait = 2;
    rl_server s;
    rl_start(&s, &cfg, 1);
    client a, b, c;
    client_connect(&a, s.ts.port);
    client_connect(&b, s.ts.port);
    client_connect(&c, s.ts.port);
    double t0 = now_s();
    assert_int_equal(get(&a, "/a", NULL), 200);
    /* b queues for the token due at 200 ms, then leaves. */
    send_get(&b, "/a");
    sleep_s(0.05);
    client_close(&b);
    sleep_s(0.05);
    /* c takes the token b gave back, not the one after it (400 ms). */
    send_get(&c, "/a");
    response r;
    expect_response(&c, &r, false);
    double at = now_s() - t0;
    assert_int_equal(r.status, 200);
    response_free(&r);
    if (at < 0.18 || at > 0.3)
        fail_msg("answered after %.3f s, want about 0.2 s", at);
    assert_int_equal(atomic_load(&g_handled), 2);
    client_close(&a);
    client_close(&c);
    rl_stop(&s);
}

static void test_request_that_would_wait_past_max_wait_gets_429_at_once(void **state) {
    (void)state;
    sp_ratelimit_mw_config cfg = limits(10, 1); /* a token every 100 ms */
    cfg.max_wait = 0.25;
    rl_server s;
    rl_start(&s, &cfg, 1);
    enum { N = 4 };
    client c[N];
    for (int i = 0; i < N; i++)
        client_connect(&c[i], s.ts.port);
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        send_get(&c[i], "/a");
        sleep_s(0.002);
    }
    /* The fourth would wait 300 ms: refused before the queued ones pass. */
    response r;
    expect_response(&c[3], &r, false);
    double at = now_s() - t0;
    assert_int_equal(r.status, 429);
    assert_true(at < 0.08);
    expect_header(&r, "Retry-After", "1");
    expect_header(&r, "RateLimit-Remaining", "0");
    expect_header(&r, "RateLimit-Reset", "1");
    response_free(&r);
    for (int i = 0; i < 3; i++) {
        expect_response(&c[i], &r, false);
        at = now_s() - t0;
        assert_int_equal(r.status, 200);
        if (at < 0.1 * i - 0.005 || at > 0.1 * i + 0.05)
            fail_msg("request %d answered after %.3f s", i, at);
        response_free(&r);
    }
    for (int i = 0; i < N; i++)
        client_close(&c[i]);
    assert_int_equal(atomic_load(&g_handled), 3);
    rl_stop(&s);
}

/* ---- Settings ------------------------------------------------------------------- */

static void test_bad_settings_are_refused(void **state) {
    (void)state;
    sp_ratelimit_mw *mw = NULL;
    sp_ratelimit_mw_config cfg;
    sp_ratelimit_mw_config_init(&cfg);
    assert_int_equal(sp_ratelimit_mw_create(&mw, &cfg), -EINVAL); /* rate not set */
    const sp_ratelimit_mw_config bad[] = {
        {.rate = -1, .burst = 1},
        {.rate = NAN, .burst = 1},
        {.rate = INFINITY, .burst = 1},
        {.rate = 1, .burst = 0.5},
        {.rate = 1, .burst = NAN},
        {.rate = 1, .burst = 1, .by = 4, .max_keys = 10},
        {.rate = 1, .burst = 1, .by = SP_RATELIMIT_BY_IP, .max_keys = 0},
        {.rate = 1, .burst = 1, .max_wait = -1},
        {.rate = 1, .burst = 1, .max_wait = NAN},
        {.rate = 1, .burst = 1, .max_wait = INFINITY},
        {.rate = 1, .burst = 1, .by = SP_RATELIMIT_BY_ROUTE, .max_keys = 10, .max_wait = 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sp_ratelimit_mw_create(&mw, &bad[i]) != -EINVAL)
            fail_msg("setting %zu accepted", i);
    }
    cfg.rate = 1;
    assert_true(cfg.burst == 1);
    assert_int_equal(cfg.max_keys, 10000);
    assert_int_equal(sp_ratelimit_mw_create(&mw, &cfg), 0);
    assert_int_equal(sp_ratelimit_mw_keys(mw), 0);
    sp_ratelimit_mw_destroy(mw);
    sp_ratelimit_mw_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_overload_for_10_s_accepts_burst_plus_rate_times_duration),
        cmocka_unit_test(test_responses_carry_ratelimit_headers_and_429_has_retry_after),
        cmocka_unit_test(test_retry_after_is_at_least_one_second),
        cmocka_unit_test(test_per_ip_buckets_are_isolated),
        cmocka_unit_test(test_per_ip_memory_is_bounded_by_max_keys),
        cmocka_unit_test(test_per_route_buckets_are_separate_and_shared_by_a_pattern),
        cmocka_unit_test(test_limiter_on_a_group_leaves_other_routes_alone),
        cmocka_unit_test(test_queued_requests_wait_for_their_tokens_in_arrival_order),
        cmocka_unit_test(test_client_leaving_the_queue_spends_no_token),
        cmocka_unit_test(test_request_that_would_wait_past_max_wait_gets_429_at_once),
        cmocka_unit_test(test_bad_settings_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
