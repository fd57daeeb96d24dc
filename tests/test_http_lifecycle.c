/* The life of handlers and of the server: a client going away cancels its
 * suspended handler and the handler's children; failing handlers give 500
 * (413 for -EMSGSIZE) and a log line naming the route and task; blocking
 * routes run on the thread pool while others are served; several workers
 * share the port; graceful and forced stops, with the server in this process
 * and with apps/hello under SIGTERM. */
#include <sys/syscall.h>

#include "http_harness.h"
#include "stderr_capture.h"

static test_server g_srv;

/* What handlers saw, for the tests to check. */
static atomic_int g_started;       /* handlers that began */
static atomic_int g_finished;      /* handlers that returned */
static atomic_int g_handler_rc;    /* the last /cancel handler's wait result */
static atomic_int g_child_rc;      /* its child's sleep result */
static _Atomic double g_cancel_at; /* when that handler saw its result */
static atomic_int g_blocking_tid;
static atomic_int g_loop_tid;
static atomic_int g_tids[2];

static int gettid_(void) {
    return (int)syscall(SYS_gettid);
}

static int h_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

/* /sleep?ms=N: counts itself in and out around the sleep. */
static int h_sleep(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str v;
    long ms = 100;
    if (sp_http_req_query(req, "ms", &v) == 0)
        ms = strtol(v.ptr, NULL, 10);
    atomic_fetch_add(&g_started, 1);
    int rc = sp_sleep((double)ms / 1000.0);
    atomic_fetch_add(&g_finished, 1);
    if (rc != 0)
        return rc;
    return sp_http_resp_text(resp, 200, "text/plain", "slept");
}

static int child_sleeps(void *arg, void **result) {
    (void)arg, (void)result;
    int rc = sp_sleep(10);
    atomic_store(&g_child_rc, rc);
    return rc;
}

/* Waits 10 s on a task group whose child sleeps 10 s. */
static int h_cancel(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    sp_taskgroup g;
    HANDLER_CHECK(sp_taskgroup_init(&g) == 0);
    HANDLER_CHECK(sp_taskgroup_spawn(&g, NULL, "child", child_sleeps, NULL) == 0);
    atomic_fetch_add(&g_started, 1);
    int rc = sp_taskgroup_wait(&g, 0);
    sp_taskgroup_fini(&g);
    atomic_store(&g_cancel_at, now_s());
    atomic_store(&g_handler_rc, rc);
    atomic_fetch_add(&g_finished, 1);
    if (rc != 0)
        return rc;
    return sp_http_resp_text(resp, 200, "text/plain", "not cancelled");
}

static int h_fail(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)resp, (void)arg;
    return sp_fail(-EIO, "disk on fire");
}

static int h_silent(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)resp, (void)arg;
    return 0;
}

static int h_too_big(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)resp, (void)arg;
    return -EMSGSIZE;
}

/* Starts a chunked response, then fails. */
static int h_fail_midway(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int rc = sp_http_resp_start(resp, 200, "text/plain");
    if (rc == 0)
        rc = sp_http_resp_write(resp, "partial", 7);
    return rc ? rc : -EIO;
}

/* A blocking handler (SP_ROUTE_BLOCKING): sleeps ?ms= on its thread, then
 * answers with the body it was sent and the query's "tag". */
static int h_blocking(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    atomic_store(&g_blocking_tid, gettid_());
    atomic_fetch_add(&g_started, 1);
    sp_str v, tag = {"", 0}, body;
    long ms = 300;
    if (sp_http_req_query(req, "ms", &v) == 0)
        ms = strtol(v.ptr, NULL, 10);
    HANDLER_CHECK(sp_http_req_query(req, "tag", &tag) == 0 || tag.len == 0);
    HANDLER_CHECK(sp_http_req_body(req, &body) == 0);
    usleep((useconds_t)ms * 1000);
    char out[256];
    int n = snprintf(out, sizeof(out), "%.*s:%.*s", (int)tag.len, tag.ptr, (int)body.len, body.ptr);
    sp_http_resp_header(resp, "X-Blocking", "yes");
    int rc = sp_http_resp_send(resp, 200, "text/plain", out, (size_t)n);
    atomic_fetch_add(&g_finished, 1);
    return rc;
}

static int h_loop_tid(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int tid = gettid_();
    atomic_store(&g_loop_tid, tid);
    int expect = 0;
    if (!atomic_compare_exchange_strong(&g_tids[0], &expect, tid) && expect != tid) {
        expect = 0;
        atomic_compare_exchange_strong(&g_tids[1], &expect, tid);
    }
    return sp_http_resp_text(resp, 200, "text/plain", "tid");
}

/* ---- Worker hooks: per-worker data, set up and torn down in the loop ---- */

typedef struct worker_res {
    int index;
    int started_in_tid; /* the start hook's thread: the worker's loop thread */
} worker_res;

static atomic_int g_hook_starts, g_hook_stops, g_fail_worker = -1;
static atomic_int g_stop_saw_finished; /* g_finished when the stop hooks ran */
static atomic_int g_stop_index_mask;   /* bit per worker whose stop hook ran */

static int hook_start(int worker, void *arg, void **data) {
    HANDLER_CHECK(arg == &g_hook_starts);
    /* It runs in a task: it may suspend. */
    if (sp_sleep(0.02) != 0)
        return -ECANCELED;
    if (worker == atomic_load(&g_fail_worker))
        return -ENOENT;
    worker_res *res = malloc(sizeof(*res));
    if (!res)
        return -ENOMEM;
    res->index = worker;
    res->started_in_tid = (int)gettid();
    *data = res;
    atomic_fetch_add(&g_hook_starts, 1);
    return 0;
}

static void hook_stop(int worker, void *arg, void *data) {
    HANDLER_CHECK(arg == &g_hook_starts);
    worker_res *res = data;
    HANDLER_CHECK(res && res->index == worker && res->started_in_tid == (int)gettid());
    atomic_fetch_or(&g_stop_index_mask, 1 << worker);
    atomic_store(&g_stop_saw_finished, atomic_load(&g_finished));
    atomic_fetch_add(&g_hook_stops, 1);
    free(res);
}

/* Answers "worker N" from the hook's data, checking it matches the request's
 * worker and thread. */
static int h_worker(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    worker_res *res = sp_http_req_worker_data(req);
    if (!res)
        return sp_http_resp_text(resp, 200, "text/plain", "no data");
    HANDLER_CHECK(res->index == sp_http_req_worker(req));
    HANDLER_CHECK(res->started_in_tid == (int)gettid());
    char body[32];
    snprintf(body, sizeof(body), "worker %d", res->index);
    return sp_http_resp_text(resp, 200, "text/plain", body);
}

static sp_router *lifecycle_router(void) {
    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "GET", "/", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/sleep", h_sleep, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/cancel", h_cancel, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/fail", h_fail, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/silent", h_silent, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/too-big", h_too_big, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/fail-midway", h_fail_midway, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "*", "/blocking", h_blocking, NULL, SP_ROUTE_BLOCKING), 0);
    assert_int_equal(sp_router_add(r, "GET", "/tid", h_loop_tid, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/worker", h_worker, NULL, 0), 0);
    return r;
}

static void reset_counters(void) {
    atomic_store(&g_started, 0);
    atomic_store(&g_finished, 0);
    atomic_store(&g_handler_rc, 1);
    atomic_store(&g_child_rc, 1);
}

static void start(void (*cfg_fn)(sp_http_config *)) {
    reset_counters();
    server_start_with(&g_srv, lifecycle_router(), cfg_fn);
}

static void stop(void) {
    server_stop(&g_srv, false);
    expect_no_handler_failures();
}

static void get_status(client *c, const char *path, int status) {
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    client_sends(c, req);
    response r;
    expect_response(c, &r, false);
    if (r.status != status)
        fail_msg("GET %s: want %d, got %d", path, status, r.status);
    response_free(&r);
}

/* ---- Cancellation --------------------------------------------------------------- */

static void test_client_disconnect_cancels_the_handler_and_its_children(void **state) {
    (void)state;
    start(NULL);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /cancel HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_for_int(&g_started, 1, CLIENT_TIMEOUT));
    sleep_s(0.1);
    double closed_at = now_s();
    client_close(&c);
    assert_true(wait_for_int(&g_finished, 1, 2.0));
    assert_int_equal(atomic_load(&g_handler_rc), -ECANCELED);
    assert_int_equal(atomic_load(&g_child_rc), -ECANCELED);
    assert_true(atomic_load(&g_cancel_at) - closed_at < 1.0);
    expect_server_healthy(g_srv.port);
    stop();
}

/* Bytes of the next request arriving while a handler is suspended are not a
 * disconnect: only the client's end of stream cancels. */
static void test_pipelined_bytes_do_not_cancel_a_running_handler(void **state) {
    (void)state;
    start(NULL);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /sleep?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_for_int(&g_started, 1, CLIENT_TIMEOUT));
    client_sends(&c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_status_body(&c, 200, "slept");
    expect_response(&c, &r, false);
    assert_string_equal(r.body, "Hello, World!");
    response_free(&r);
    client_close(&c);
    stop();
}

/* ---- Failing handlers -------------------------------------------------------------- */

static void test_failing_handler_gives_500_and_a_log_line(void **state) {
    (void)state;
    start(NULL);
    stderr_capture cap;
    capture_begin(&cap);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /fail HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    int rc = client_response(&c, &r, false, CLIENT_TIMEOUT);
    char *log = capture_end(&cap);
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 500);
    char v[64];
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    response_free(&r);
    if (!strstr(log, "route '/fail' (task 'Task-") ||
        !strstr(log, "failed: Input/output error: disk on fire"))
        fail_msg("log: '%s'", log);
    free(log);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

static void test_handler_returning_without_an_answer_gives_500(void **state) {
    (void)state;
    start(NULL);
    stderr_capture cap;
    capture_begin(&cap);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /silent HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    int rc = client_response(&c, &r, false, CLIENT_TIMEOUT);
    char *log = capture_end(&cap);
    assert_int_equal(rc, 0);
    assert_int_equal(r.status, 500);
    response_free(&r);
    if (!strstr(log, "route '/silent' (task 'Task-") || !strstr(log, "without a response"))
        fail_msg("log: '%s'", log);
    free(log);
    client_close(&c);
    stop();
}

static void test_handler_returning_emsgsize_gives_413(void **state) {
    (void)state;
    start(NULL);
    client c;
    client_connect(&c, g_srv.port);
    get_status(&c, "/too-big", 413);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    client_close(&c);
    stop();
}

static void test_handler_failing_after_starting_a_stream_cuts_it_off(void **state) {
    (void)state;
    start(NULL);
    stderr_capture cap;
    capture_begin(&cap);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /fail-midway HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    int rc = client_response(&c, &r, false, CLIENT_TIMEOUT);
    free(capture_end(&cap));
    /* The chunked body never ends: the client sees it cut off. */
    assert_int_equal(rc, -EPROTO);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

/* ---- Blocking routes -------------------------------------------------------------- */

static void test_blocking_route_runs_on_the_pool_while_others_are_served(void **state) {
    (void)state;
    start(NULL);
    client slow, fast;
    client_connect(&fast, g_srv.port);
    get_status(&fast, "/tid", 200);
    client_connect(&slow, g_srv.port);
    client_sends(&slow, "POST /blocking?ms=400&tag=a%20b HTTP/1.1\r\nHost: t\r\n"
                        "Content-Length: 4\r\n\r\nbody");
    assert_true(wait_for_int(&g_started, 1, CLIENT_TIMEOUT));
    /* While the blocking handler sleeps, the loop answers others at once. */
    for (int i = 0; i < 5; i++) {
        double t0 = now_s();
        get_status(&fast, "/", 200);
        assert_true(now_s() - t0 < 0.2);
    }
    assert_int_equal(atomic_load(&g_finished), 0);
    response r;
    expect_response(&slow, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "a b:body");
    char v[16];
    assert_true(response_header(&r, "X-Blocking", v, sizeof(v)));
    response_free(&r);
    assert_int_not_equal(atomic_load(&g_blocking_tid), atomic_load(&g_loop_tid));
    /* The connection goes on as usual. */
    get_status(&slow, "/", 200);
    client_close(&slow);
    client_close(&fast);
    stop();
}

/* The client leaves while a blocking handler runs: the thread can't be
 * interrupted, so the connection waits for it (its request and response stay
 * valid) and then closes. */
static void test_client_leaving_during_a_blocking_handler_is_safe(void **state) {
    (void)state;
    start(NULL);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /blocking?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_for_int(&g_started, 1, CLIENT_TIMEOUT));
    client_close(&c);
    assert_true(wait_for_int(&g_finished, 1, CLIENT_TIMEOUT));
    sleep_s(0.05);
    expect_server_healthy(g_srv.port);
    stop();
}

/* ---- Workers ------------------------------------------------------------------------ */

static void cfg_two_workers(sp_http_config *cfg) {
    cfg->workers = 2;
}

static void test_two_workers_both_serve(void **state) {
    (void)state;
    atomic_store(&g_tids[0], 0);
    atomic_store(&g_tids[1], 0);
    start(cfg_two_workers);
    /* The kernel spreads connections over the listeners by their address:
     * with 64 of them, both workers get some. */
    for (int i = 0; i < 64 && !atomic_load(&g_tids[1]); i++) {
        client c;
        client_connect(&c, g_srv.port);
        get_status(&c, "/tid", 200);
        client_close(&c);
    }
    assert_int_not_equal(atomic_load(&g_tids[0]), 0);
    assert_int_not_equal(atomic_load(&g_tids[1]), 0);
    assert_int_not_equal(atomic_load(&g_tids[0]), atomic_load(&g_tids[1]));
    stop();
}

static void cfg_two_workers_hooked(sp_http_config *cfg) {
    cfg->workers = 2;
    cfg->worker_start = hook_start;
    cfg->worker_stop = hook_stop;
    cfg->worker_arg = &g_hook_starts;
}

static void reset_hooks(int fail_worker) {
    atomic_store(&g_hook_starts, 0);
    atomic_store(&g_hook_stops, 0);
    atomic_store(&g_fail_worker, fail_worker);
    atomic_store(&g_stop_index_mask, 0);
    atomic_store(&g_stop_saw_finished, -1);
}

/* Each worker's start hook runs in its loop before it serves; handlers get
 * their worker's data; each stop hook runs after the requests in flight
 * finished, in the same loop, with the same data. */
static void test_worker_hooks_set_up_and_tear_down_per_worker_data(void **state) {
    (void)state;
    reset_hooks(-1);
    start(cfg_two_workers_hooked);
    bool seen[2] = {false, false};
    for (int i = 0; i < 64 && !(seen[0] && seen[1]); i++) {
        client c;
        client_connect(&c, g_srv.port);
        client_sends(&c, "GET /worker HTTP/1.1\r\nHost: t\r\n\r\n");
        response r;
        expect_response(&c, &r, false);
        int w = -1;
        if (sscanf(r.body, "worker %d", &w) != 1 || w < 0 || w > 1)
            fail_msg("unexpected body '%s'", r.body);
        seen[w] = true;
        response_free(&r);
        client_close(&c);
    }
    assert_true(seen[0] && seen[1]);
    assert_int_equal(atomic_load(&g_hook_starts), 2);
    assert_int_equal(atomic_load(&g_hook_stops), 0);
    client slow;
    client_connect(&slow, g_srv.port);
    client_sends(&slow, "GET /sleep?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_for_int(&g_started, 1, CLIENT_TIMEOUT));
    sp_http_server_stop(g_srv.srv, false);
    response r;
    expect_response(&slow, &r, false);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(&slow);
    assert_int_equal(pthread_join(g_srv.thread, NULL), 0);
    assert_int_equal(g_srv.run_rc, 0);
    assert_int_equal(atomic_load(&g_hook_stops), 2);
    assert_int_equal(atomic_load(&g_stop_index_mask), 3);
    /* The last stop hook ran after the slow handler had returned. */
    assert_int_equal(atomic_load(&g_stop_saw_finished), 1);
    sp_http_server_destroy(g_srv.srv);
    sp_router_destroy(g_srv.router);
    expect_no_handler_failures();
}

/* A failing start hook stops the server, whose run returns that error; the
 * worker that did start is torn down. */
static void test_failing_worker_start_stops_the_server_with_its_error(void **state) {
    (void)state;
    reset_hooks(1);
    stderr_capture cap;
    capture_begin(&cap);
    start(cfg_two_workers_hooked);
    assert_int_equal(pthread_join(g_srv.thread, NULL), 0);
    char *log = capture_end(&cap);
    assert_int_equal(g_srv.run_rc, -ENOENT);
    assert_int_equal(atomic_load(&g_hook_starts), 1);
    assert_int_equal(atomic_load(&g_hook_stops), 1);
    assert_int_equal(atomic_load(&g_stop_index_mask), 1);
    assert_non_null(strstr(log, "worker 1: worker_start failed: No such file or directory"));
    free(log);
    sp_http_server_destroy(g_srv.srv);
    sp_router_destroy(g_srv.router);
    expect_no_handler_failures();
}

/* ---- Stopping --------------------------------------------------------------------- */

static void cfg_two_workers_long_drain(sp_http_config *cfg) {
    cfg->workers = 2;
    cfg->drain_timeout = 5;
}

static void test_graceful_stop_finishes_requests_in_flight(void **state) {
    (void)state;
    start(cfg_two_workers_long_drain);
    enum { N = 20 };
    client idle, c[N];
    client_connect(&idle, g_srv.port);
    get_status(&idle, "/", 200);
    for (int i = 0; i < N; i++) {
        client_connect(&c[i], g_srv.port);
        client_sends(&c[i], "GET /sleep?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    assert_true(wait_for_int(&g_started, N, CLIENT_TIMEOUT));
    double t0 = now_s();
    sp_http_server_stop(g_srv.srv, false);
    /* The idle keep-alive connection is closed at once. */
    assert_int_equal(client_read_to_eof(&idle, 1.0), 0);
    assert_int_equal(idle.len, idle.pos);
    client_close(&idle);
    /* New connections are refused. */
    client late;
    int rc = 0;
    for (int i = 0; i < 100 && (rc = client_try_connect(&late, g_srv.port)) == 0; i++) {
        client_close(&late);
        sleep_s(0.002);
    }
    /* Refused, or reset when it raced into a listener's backlog as it closed. */
    assert_true(rc == -ECONNREFUSED || rc == -ECONNRESET);
    /* Every request in flight is answered, then its connection closed. */
    for (int i = 0; i < N; i++) {
        response r;
        expect_response(&c[i], &r, false);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "slept");
        char v[64];
        assert_true(response_header(&r, "Connection", v, sizeof(v)));
        assert_string_equal(v, "close");
        response_free(&r);
        assert_int_equal(client_read_to_eof(&c[i], CLIENT_TIMEOUT), 0);
        client_close(&c[i]);
    }
    assert_int_equal(pthread_join(g_srv.thread, NULL), 0);
    assert_true(now_s() - t0 < 1.5);
    assert_int_equal(g_srv.run_rc, 0);
    assert_int_equal(atomic_load(&g_finished), N);
    sp_http_server_destroy(g_srv.srv);
    sp_router_destroy(g_srv.router);
    expect_no_handler_failures();
}

static void test_forced_stop_returns_promptly_and_cancels_handlers(void **state) {
    (void)state;
    start(cfg_two_workers_long_drain);
    enum { N = 5 };
    client c[N];
    for (int i = 0; i < N; i++) {
        client_connect(&c[i], g_srv.port);
        client_sends(&c[i], "GET /sleep?ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    assert_true(wait_for_int(&g_started, N, CLIENT_TIMEOUT));
    double took = server_stop(&g_srv, true);
    assert_true(took < 1.0);
    assert_int_equal(atomic_load(&g_finished), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(client_read_to_eof(&c[i], CLIENT_TIMEOUT), 0);
        assert_int_equal(c[i].len, 0);
        client_close(&c[i]);
    }
    expect_no_handler_failures();
}

static void cfg_short_drain(sp_http_config *cfg) {
    cfg->drain_timeout = 0.3;
}

static void test_graceful_stop_gives_up_after_the_drain_timeout(void **state) {
    (void)state;
    start(cfg_short_drain);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /sleep?ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_for_int(&g_started, 1, CLIENT_TIMEOUT));
    double took = server_stop(&g_srv, false);
    assert_true(took >= 0.25 && took < 1.5);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    client_close(&c);
}

/* ---- apps/hello under SIGTERM ----------------------------------------------------------- */

typedef struct hello_proc {
    pid_t pid;
    int out_fd;
    int port;
} hello_proc;

static void hello_start(hello_proc *h) {
    const char *dir = getenv("SP_APPS_DIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/hello", dir ? dir : ".");
    char *argv[] = {path, "--port", "0", "--workers", "2", NULL};
    h->pid = spawn_child(argv, &h->out_fd);
    /* "hello: listening on http://127.0.0.1:PORT/ ..." */
    char line[256];
    size_t len = 0;
    double end = now_s() + CLIENT_TIMEOUT;
    while (!memchr(line, '\n', len) && len < sizeof(line) - 1 && now_s() < end) {
        struct pollfd p = {.fd = h->out_fd, .events = POLLIN};
        if (poll(&p, 1, 100) == 1) {
            ssize_t n = read(h->out_fd, line + len, 1);
            if (n <= 0)
                break;
            len += (size_t)n;
        }
    }
    line[len] = '\0';
    const char *url = strstr(line, "listening on http://");
    if (!url || sscanf(url, "listening on http://%*[^:]:%d/", &h->port) != 1)
        fail_msg("hello printed '%s'", line);
}

static void test_hello_sigterm_finishes_requests_in_flight(void **state) {
    (void)state;
    hello_proc h;
    hello_start(&h);
    enum { N = 10 };
    client c[N];
    for (int i = 0; i < N; i++) {
        client_connect(&c[i], h.port);
        client_sends(&c[i], "GET /sleep?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    sleep_s(0.1);
    assert_int_equal(kill(h.pid, SIGTERM), 0);
    for (int i = 0; i < N; i++) {
        expect_status_body(&c[i], 200, "slept 300 ms\n");
        client_close(&c[i]);
    }
    assert_int_equal(finish_child(h.pid, h.out_fd, NULL, 0), 0);
}

static void test_hello_second_sigterm_forces_the_exit(void **state) {
    (void)state;
    hello_proc h;
    hello_start(&h);
    client c;
    client_connect(&c, h.port);
    client_sends(&c, "GET /sleep?ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n");
    sleep_s(0.1);
    assert_int_equal(kill(h.pid, SIGTERM), 0);
    sleep_s(0.2);
    /* Still draining: the request in flight holds the exit. */
    int st;
    assert_int_equal(waitpid(h.pid, &st, WNOHANG), 0);
    double t0 = now_s();
    assert_int_equal(kill(h.pid, SIGTERM), 0);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    assert_int_equal(c.len, 0);
    client_close(&c);
    assert_int_equal(finish_child(h.pid, h.out_fd, NULL, 0), 0);
    assert_true(now_s() - t0 < 1.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_disconnect_cancels_the_handler_and_its_children),
        cmocka_unit_test(test_pipelined_bytes_do_not_cancel_a_running_handler),
        cmocka_unit_test(test_failing_handler_gives_500_and_a_log_line),
        cmocka_unit_test(test_handler_returning_without_an_answer_gives_500),
        cmocka_unit_test(test_handler_returning_emsgsize_gives_413),
        cmocka_unit_test(test_handler_failing_after_starting_a_stream_cuts_it_off),
        cmocka_unit_test(test_blocking_route_runs_on_the_pool_while_others_are_served),
        cmocka_unit_test(test_client_leaving_during_a_blocking_handler_is_safe),
        cmocka_unit_test(test_two_workers_both_serve),
        cmocka_unit_test(test_worker_hooks_set_up_and_tear_down_per_worker_data),
        cmocka_unit_test(test_failing_worker_start_stops_the_server_with_its_error),
        cmocka_unit_test(test_graceful_stop_finishes_requests_in_flight),
        cmocka_unit_test(test_forced_stop_returns_promptly_and_cancels_handlers),
        cmocka_unit_test(test_graceful_stop_gives_up_after_the_drain_timeout),
        cmocka_unit_test(test_hello_sigterm_finishes_requests_in_flight),
        cmocka_unit_test(test_hello_second_sigterm_forces_the_exit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
