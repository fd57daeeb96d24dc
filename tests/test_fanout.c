/* sp_fanout_fetch against in-process upstreams (a Spindle server on its own
 * thread): parallel answers, the overall deadline keeping what came back,
 * per-backend timeouts, refused and failing backends, and cancellation of the
 * caller (directly, or by its HTTP client going away) closing every upstream
 * connection. */
#include "http_harness.h"

static test_server g_up;
static atomic_int g_hang_started, g_hang_closed;

/* ---- The upstream ------------------------------------------------------------ */

/* A view holding a number, as a long (views are not NUL-terminated). */
static long view_long(sp_str v) {
    char buf[24];
    snprintf(buf, sizeof(buf), "%.*s", (int)(v.len < 23 ? v.len : 23), v.ptr);
    return atol(buf);
}

/* GET /ok?name=S&ms=N: {"name":"S"} after N ms. */
static int h_ok(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str name = sp_str_c("anon"), ms;
    sp_http_req_query(req, "name", &name);
    if (sp_http_req_query(req, "ms", &ms) == 0) {
        int rc = sp_sleep((double)view_long(ms) / 1000.0);
        if (rc != 0)
            return rc;
    }
    char body[128];
    int n = snprintf(body, sizeof(body), "{\"name\":\"%.*s\"}", (int)name.len, name.ptr);
    return sp_http_resp_send(resp, 200, "application/json", body, (size_t)n);
}

/* GET /hang: never answers; counts the requests and the clients that left. */
static int h_hang(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    atomic_fetch_add(&g_hang_started, 1);
    int rc = sp_sleep(30);
    atomic_fetch_add(&g_hang_closed, 1); /* cancelled: the connection closed */
    return rc ? rc : sp_http_resp_text(resp, 200, "text/plain", "late\n");
}

/* GET /status/:code: that status. */
static int h_status(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str code;
    sp_http_req_param(req, "code", &code);
    return sp_http_resp_text(resp, (int)view_long(code), "text/plain", "status\n");
}

static int setup(void **state) {
    (void)state;
    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "GET", "/ok", h_ok, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/hang", h_hang, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/status/:code", h_status, NULL, 0), 0);
    server_start_with(&g_up, r, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    server_stop(&g_up, true);
    return 0;
}

static void reset_counts(void) {
    atomic_store(&g_hang_started, 0);
    atomic_store(&g_hang_closed, 0);
}

/* ---- Helpers ------------------------------------------------------------------ */

/* Suspends until *v == want or timeout seconds pass; returns whether it did. */
static bool await_int(atomic_int *v, int want, double timeout) {
    double end = now_s() + timeout;
    while (atomic_load(v) != want) {
        if (now_s() > end)
            return false;
        sp_sleep(0.005);
    }
    return true;
}

static char g_urls[8][128];

/* A request to the upstream's path, its URL kept in g_urls[i]. */
static sp_fanout_req up_req(int i, const char *name, const char *path) {
    snprintf(g_urls[i], sizeof(g_urls[i]), "http://127.0.0.1:%d%s", g_up.port, path);
    return (sp_fanout_req){.name = name, .req = {.url = g_urls[i]}};
}

static sp_http_client *new_client(void) {
    sp_http_client *cl;
    assert_int_equal(sp_http_client_create(&cl, NULL), 0);
    return cl;
}

static void destroy_client(sp_http_client *cl) {
    assert_int_equal(sp_http_client_destroy(cl), 0);
}

static void expect_body(const sp_fanout_result *r, const char *want) {
    assert_int_equal(r->err, 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body.len, strlen(want));
    assert_memory_equal(r->body.ptr, want, r->body.len);
}

static void expect_msg_has(const sp_fanout_result *r, const char *needle) {
    if (!strstr(r->msg, needle))
        fail_msg("message '%s' lacks '%s'", r->msg, needle);
}

/* ---- Tests ---------------------------------------------------------------------- */

static int all_answer_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client();
    sp_fanout_req reqs[3] = {up_req(0, "a", "/ok?name=a&ms=200"),
                             up_req(1, "b", "/ok?name=b&ms=200"),
                             up_req(2, "c", "/ok?name=c&ms=200")};
    sp_fanout_result res[3];
    double t0 = now_s();
    assert_int_equal(sp_fanout_fetch(cl, reqs, 3, 5.0, res), 0);
    double took = now_s() - t0;
    /* In parallel: about one delay, not three. */
    assert_true(took >= 0.2 && took < 0.55);
    expect_body(&res[0], "{\"name\":\"a\"}");
    expect_body(&res[1], "{\"name\":\"b\"}");
    expect_body(&res[2], "{\"name\":\"c\"}");
    for (int i = 0; i < 3; i++) {
        assert_true(res[i].elapsed >= 0.2 && res[i].elapsed <= took);
        assert_string_equal(res[i].msg, "");
        sp_str ct;
        assert_int_equal(sp_http_client_resp_header(res[i].resp, "Content-Type", &ct), 0);
        assert_true(sp_str_eq(ct, sp_str_c("application/json")));
    }
    sp_fanout_results_free(res, 3);
    assert_null(res[0].resp);
    destroy_client(cl);
    return 0;
}

static void test_all_backends_answer_in_parallel(void **state) {
    (void)state;
    run_main(all_answer_main, NULL);
}

static int deadline_main(void *arg, void **result) {
    (void)arg, (void)result;
    reset_counts();
    sp_http_client *cl = new_client();
    sp_fanout_req reqs[3] = {up_req(0, "a", "/ok?name=a"), up_req(1, "slow", "/hang"),
                             up_req(2, "b", "/ok?name=b&ms=50")};
    sp_fanout_result res[3];
    double t0 = now_s();
    assert_int_equal(sp_fanout_fetch(cl, reqs, 3, 0.3, res), 0);
    double took = now_s() - t0;
    assert_true(took >= 0.3 && took < 0.7);
    expect_body(&res[0], "{\"name\":\"a\"}");
    expect_body(&res[2], "{\"name\":\"b\"}");
    assert_int_equal(res[1].err, -ETIMEDOUT);
    assert_int_equal(res[1].status, 0);
    assert_null(res[1].resp);
    assert_int_equal(res[1].body.len, 0);
    assert_string_equal(res[1].msg, "no response within the 0.3 s deadline");
    assert_true(res[1].elapsed >= 0.3);
    /* The straggler's connection was closed: the upstream's handler saw it. */
    assert_true(await_int(&g_hang_closed, 1, CLIENT_TIMEOUT));
    sp_fanout_results_free(res, 3);
    destroy_client(cl);
    return 0;
}

static void test_backend_slower_than_the_deadline_is_timed_out_and_the_others_kept(void **state) {
    (void)state;
    run_main(deadline_main, NULL);
}

static int per_backend_timeout_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client();
    sp_fanout_req reqs[2] = {up_req(0, "a", "/ok?name=a&ms=20"), up_req(1, "slow", "/hang")};
    reqs[1].req.total_timeout = 0.1;
    sp_fanout_result res[2];
    double t0 = now_s();
    assert_int_equal(sp_fanout_fetch(cl, reqs, 2, 5.0, res), 0);
    double took = now_s() - t0;
    /* The call ends with its last fetch, long before the overall deadline. */
    assert_true(took >= 0.1 && took < 0.6);
    expect_body(&res[0], "{\"name\":\"a\"}");
    assert_int_equal(res[1].err, -ETIMEDOUT);
    expect_msg_has(&res[1], "total timeout (0.1 s) expired");
    sp_fanout_results_free(res, 2);
    destroy_client(cl);
    return 0;
}

static void test_per_backend_timeout_fails_only_that_backend(void **state) {
    (void)state;
    run_main(per_backend_timeout_main, NULL);
}

static int refused_main(void *arg, void **result) {
    (void)arg, (void)result;
    /* A bound socket that does not listen: connecting to it is refused. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d/x", ntohs(sa.sin_port));

    sp_http_client *cl = new_client();
    sp_fanout_req reqs[3] = {up_req(0, "a", "/ok?name=a"),
                             {.name = "dead", .req = {.url = dead}},
                             up_req(2, "bad", "/status/503")};
    sp_fanout_result res[3];
    assert_int_equal(sp_fanout_fetch(cl, reqs, 3, 5.0, res), 0);
    expect_body(&res[0], "{\"name\":\"a\"}");
    assert_int_equal(res[1].err, -ECONNREFUSED);
    assert_null(res[1].resp);
    expect_msg_has(&res[1], "refused");
    /* An error status is an answer: the caller judges it. */
    assert_int_equal(res[2].err, 0);
    assert_int_equal(res[2].status, 503);
    assert_int_equal(res[2].body.len, 7);
    sp_fanout_results_free(res, 3);
    destroy_client(cl);
    close(fd);
    return 0;
}

static void
test_refused_backend_fails_with_econnrefused_and_an_error_status_is_an_answer(void **state) {
    (void)state;
    run_main(refused_main, NULL);
}

typedef struct fanout_call {
    sp_http_client *cl;
    sp_fanout_req reqs[3];
    sp_fanout_result res[3];
    double deadline;
} fanout_call;

static int fanout_task(void *arg, void **result) {
    (void)result;
    fanout_call *fc = arg;
    return sp_fanout_fetch(fc->cl, fc->reqs, 3, fc->deadline, fc->res);
}

static int caller_cancelled_main(void *arg, void **result) {
    (void)arg, (void)result;
    reset_counts();
    fanout_call fc = {.cl = new_client(), .deadline = -1};
    for (int i = 0; i < 3; i++)
        fc.reqs[i] = up_req(i, "h", "/hang");
    sp_task *t = spawn(fanout_task, &fc);
    assert_true(await_int(&g_hang_started, 3, CLIENT_TIMEOUT));
    assert_int_equal(g_hang_closed, 0);
    assert_int_equal(sp_task_cancel(t), 0);
    assert_int_equal(sp_task_await(t, NULL), -ECANCELED);
    sp_task_release(t);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fc.res[i].err, -ECANCELED);
        assert_string_equal(fc.res[i].msg, "cancelled");
    }
    /* Every upstream connection was closed: the upstream's handlers saw it. */
    assert_true(await_int(&g_hang_closed, 3, CLIENT_TIMEOUT));
    sp_http_client_stats st;
    sp_http_client_get_stats(fc.cl, &st);
    assert_int_equal(st.connections, 0);
    sp_fanout_results_free(fc.res, 3);
    destroy_client(fc.cl);
    return 0;
}

static void
test_cancelling_the_caller_cancels_every_fetch_and_closes_their_connections(void **state) {
    (void)state;
    run_main(caller_cancelled_main, NULL);
}

static int deadline_zero_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client();
    sp_fanout_req reqs[2] = {up_req(0, "a", "/ok?name=a"), up_req(1, "b", "/ok?name=b")};
    sp_fanout_result res[2];
    assert_int_equal(sp_fanout_fetch(cl, reqs, 2, 0, res), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].err, -ETIMEDOUT);
        assert_string_equal(res[i].msg, "no response within the 0 s deadline");
    }
    sp_fanout_results_free(res, 2);
    destroy_client(cl);
    return 0;
}

static void test_deadline_zero_cuts_every_fetch(void **state) {
    (void)state;
    run_main(deadline_zero_main, NULL);
}

static int reuse_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client();
    sp_fanout_req reqs[3] = {up_req(0, "a", "/ok?name=a&ms=20"), up_req(1, "b", "/ok?name=b&ms=20"),
                             up_req(2, "c", "/ok?name=c&ms=20")};
    sp_fanout_result res[3];
    for (int round = 0; round < 3; round++) {
        assert_int_equal(sp_fanout_fetch(cl, reqs, 3, 5.0, res), 0);
        for (int i = 0; i < 3; i++)
            assert_int_equal(res[i].err, 0);
        sp_fanout_results_free(res, 3);
    }
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 3);
    assert_int_equal(st.reused, 6);
    assert_int_equal(st.idle, 3);
    destroy_client(cl);
    return 0;
}

static void test_freed_results_give_their_connections_back_to_the_pool(void **state) {
    (void)state;
    run_main(reuse_main, NULL);
}

static int bad_args_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client();
    sp_fanout_req req = up_req(0, "a", "/ok");
    sp_fanout_result res = {.err = 99};
    assert_int_equal(sp_fanout_fetch(NULL, &req, 1, 1.0, &res), -EINVAL);
    assert_int_equal(res.err, 0); /* cleared even so */
    assert_int_equal(sp_fanout_fetch(cl, NULL, 1, 1.0, &res), -EINVAL);
    assert_int_equal(sp_fanout_fetch(cl, &req, 1, 1.0, NULL), -EINVAL);
    assert_int_equal(sp_fanout_fetch(cl, NULL, 0, 1.0, NULL), 0);
    /* A bad URL is that fetch's failure, not the call's. */
    sp_fanout_req bad = {.name = "bad", .req = {.url = "ftp://x/"}};
    assert_int_equal(sp_fanout_fetch(cl, &bad, 1, 1.0, &res), 0);
    assert_int_equal(res.err, -EINVAL);
    expect_msg_has(&res, "ftp://x/");
    sp_fanout_results_free(&res, 1);
    destroy_client(cl);
    return 0;
}

static void test_bad_arguments_are_einval_and_outside_a_task_eperm(void **state) {
    (void)state;
    run_main(bad_args_main, NULL);
    int dummy;
    sp_fanout_req req = {.req = {.url = "http://127.0.0.1:1/"}};
    sp_fanout_result res;
    assert_int_equal(sp_fanout_fetch((sp_http_client *)&dummy, &req, 1, 1.0, &res), -EPERM);
}

/* A handler fanning out to three hanging upstream calls, with a client made
 * for the request (one per loop would do; this keeps the test small). */
static int h_fanout(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    sp_http_client *cl;
    if (sp_http_client_create(&cl, NULL) != 0)
        return -ENOMEM;
    sp_fanout_req reqs[3];
    for (int i = 0; i < 3; i++)
        reqs[i] = (sp_fanout_req){.name = "h", .req = {.url = g_urls[0]}};
    sp_fanout_result res[3];
    int rc = sp_fanout_fetch(cl, reqs, 3, 20.0, res);
    HANDLER_CHECK(rc == -ECANCELED);
    sp_fanout_results_free(res, 3);
    HANDLER_CHECK(sp_http_client_destroy(cl) == 0);
    return rc ? rc : sp_http_resp_text(resp, 200, "text/plain", "all\n");
}

static void test_client_disconnect_cancels_the_handlers_fetches(void **state) {
    (void)state;
    reset_counts();
    up_req(0, "h", "/hang");
    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "GET", "/fan", h_fanout, NULL, 0), 0);
    test_server agg;
    server_start_with(&agg, r, NULL);
    client c;
    client_connect(&c, agg.port);
    client_sends(&c, "GET /fan HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_for_int(&g_hang_started, 3, CLIENT_TIMEOUT));
    assert_int_equal(g_hang_closed, 0);
    client_close(&c);
    assert_true(wait_for_int(&g_hang_closed, 3, CLIENT_TIMEOUT));
    server_stop(&agg, false);
    expect_no_handler_failures();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_backends_answer_in_parallel),
        cmocka_unit_test(test_backend_slower_than_the_deadline_is_timed_out_and_the_others_kept),
        cmocka_unit_test(test_per_backend_timeout_fails_only_that_backend),
        cmocka_unit_test(
            test_refused_backend_fails_with_econnrefused_and_an_error_status_is_an_answer),
        cmocka_unit_test(
            test_cancelling_the_caller_cancels_every_fetch_and_closes_their_connections),
        cmocka_unit_test(test_deadline_zero_cuts_every_fetch),
        cmocka_unit_test(test_freed_results_give_their_connections_back_to_the_pool),
        cmocka_unit_test(test_bad_arguments_are_einval_and_outside_a_task_eperm),
        cmocka_unit_test(test_client_disconnect_cancels_the_handlers_fetches),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
