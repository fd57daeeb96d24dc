/* The HTTP client against upstreams that misbehave (a raw-socket server on
 * its own thread): slow, silent, resetting, lying about Content-Length,
 * flooding headers, speaking no HTTP, closing a pooled connection under a
 * request; names that do not resolve and ports nobody listens on; and a
 * cancellation in every phase, after which the pool is clean, the next
 * request works and the upstream has seen the cancelled connection close. */
#include "client_harness.h"

static raw_upstream g_up;

static int setup(void **state) {
    (void)state;
    raw_start(&g_up);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    raw_stop(&g_up);
    return 0;
}

static const char *url(char *buf, const char *path) {
    return url_of(buf, 128, g_up.port, path);
}

static void expect_msg(const sp_http_client_error *err, const char *part) {
    if (!strstr(err->msg, part))
        fail_msg("message '%s' does not say '%s'", err->msg, part);
}

/* Fetches path with req's settings; returns the code, err filled. */
static int fetch_path(sp_http_client *cl, sp_http_request *req, const char *path,
                      sp_http_client_error *err, double *took) {
    char u[128];
    req->url = url(u, path);
    sp_http_client_resp *resp;
    double t0 = now_s();
    int rc = sp_http_client_request(cl, req, &resp, err);
    if (took)
        *took = now_s() - t0;
    if (rc == 0)
        sp_http_client_resp_free(resp);
    return rc;
}

/* The pool holds nothing but idle connections, and a request still works. */
static void expect_pool_clean_and_working(sp_http_client *cl) {
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.connections, st.idle);
    assert_int_equal(st.waiting, 0);
    char u[128], body[16];
    assert_int_equal(get_text(cl, url(u, "/ok"), body, sizeof(body)), 200);
    assert_string_equal(body, "ok");
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.idle, st.connections);
    assert_true(st.idle >= 1);
}

/* ---- Timeouts -------------------------------------------------------------------- */

static int drip_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_http_request req = {.first_byte_timeout = 1.0, .total_timeout = 0.5};
    sp_http_client_error err;
    double took;
    assert_int_equal(fetch_path(cl, &req, "/drip", &err, &took), -ETIMEDOUT);
    expect_msg(&err, "total timeout (0.5 s) expired while reading the response from 127.0.0.1:");
    assert_true(took >= 0.45 && took < 1.0);
    assert_true(await_int(&g_up.closed_seen, 1, 2.0));
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_upstream_dripping_one_byte_per_100ms_hits_the_total_timeout(void **state) {
    (void)state;
    run_main(drip_main, NULL);
}

static int hang_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_http_request req = {.first_byte_timeout = 0.2};
    sp_http_client_error err;
    double took;
    assert_int_equal(fetch_path(cl, &req, "/hang", &err, &took), -ETIMEDOUT);
    expect_msg(&err, "timed out waiting for the first response byte from 127.0.0.1:");
    expect_msg(&err, "after 0.2 s");
    assert_true(took >= 0.19 && took < 0.7);
    assert_true(await_int(&g_up.closed_seen, 1, 2.0));
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_upstream_that_never_answers_hits_the_first_byte_timeout(void **state) {
    (void)state;
    run_main(hang_main, NULL);
}

/* A listener whose backlog is full: a new connect neither completes nor fails. */
typedef struct full_listener {
    int lfd, cfd, port;
} full_listener;

static void full_listener_open(full_listener *fl) {
    fl->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fl->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fl->lfd, 0), 0);
    socklen_t len = sizeof(sa);
    getsockname(fl->lfd, (struct sockaddr *)&sa, &len);
    fl->port = ntohs(sa.sin_port);
    fl->cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(fl->cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void full_listener_close(full_listener *fl) {
    close(fl->cfd);
    close(fl->lfd);
}

static int connect_timeout_main(void *arg, void **result) {
    (void)arg, (void)result;
    full_listener fl;
    full_listener_open(&fl);
    sp_http_client *cl = new_client(NULL);
    sp_http_request req = {.connect_timeout = 0.2};
    char u[128];
    req.url = url_of(u, sizeof(u), fl.port, "/");
    sp_http_client_resp *resp;
    sp_http_client_error err;
    double t0 = now_s();
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), -ETIMEDOUT);
    assert_true(now_s() - t0 < 0.7);
    expect_msg(&err, "timed out connecting to 127.0.0.1:");
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.connections, 0);
    full_listener_close(&fl);
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_connect_that_never_completes_hits_the_connect_timeout(void **state) {
    (void)state;
    run_main(connect_timeout_main, NULL);
}

/* ---- Broken responses ---------------------------------------------------------------- */

static int reset_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_http_request req = {0};
    sp_http_client_error err;
    assert_int_equal(fetch_path(cl, &req, "/reset", &err, NULL), -ECONNRESET);
    expect_msg(&err, "connection reset by 127.0.0.1:");
    /* Streamed: the head arrives, a read fails, and every later one too. */
    char u[128];
    req = (sp_http_request){.url = url(u, "/reset"), .stream = true};
    sp_http_client_resp *resp;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), 0);
    int rc;
    sp_str piece;
    while ((rc = sp_http_client_resp_read(resp, &piece, &err)) == 0 && piece.len > 0)
        ;
    assert_int_equal(rc, -ECONNRESET);
    assert_int_equal(sp_http_client_resp_read(resp, &piece, &err), -ECONNRESET);
    expect_msg(&err, "connection reset by");
    sp_http_client_resp_free(resp);
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_reset_in_the_middle_of_the_body_is_econnreset(void **state) {
    (void)state;
    run_main(reset_main, NULL);
}

static int short_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_http_request req = {0};
    sp_http_client_error err;
    assert_int_equal(fetch_path(cl, &req, "/short", &err, NULL), -EPROTO);
    expect_msg(&err, "closed the connection after 10 of 100 body bytes");
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_body_shorter_than_content_length_then_close_is_eproto(void **state) {
    (void)state;
    run_main(short_main, NULL);
}

static int big_headers_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_http_request req = {0};
    sp_http_client_error err;
    double took;
    assert_int_equal(fetch_path(cl, &req, "/bigheaders", &err, &took), -EMSGSIZE);
    expect_msg(&err, "response head exceeds max_header_bytes (65536)");
    assert_true(took < 1.0);
    assert_true(await_int(&g_up.closed_seen, 1, 2.0));
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_one_mib_of_headers_is_refused_promptly_with_emsgsize(void **state) {
    (void)state;
    run_main(big_headers_main, NULL);
}

static int garbage_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_http_request req = {0};
    sp_http_client_error err;
    double took;
    assert_int_equal(fetch_path(cl, &req, "/garbage", &err, &took), -EPROTO);
    expect_msg(&err, "malformed response from 127.0.0.1:");
    assert_true(took < 1.0); /* at once, not when the upstream closes */
    assert_int_equal(fetch_path(cl, &req, "/fold", &err, NULL), -EPROTO);
    expect_msg(&err, "obsolete line folding");
    /* Found by fuzzing: llhttp takes ": b" as a field with an empty name. */
    assert_int_equal(fetch_path(cl, &req, "/no-name", &err, NULL), -EPROTO);
    expect_msg(&err, "a response header without a name");
    assert_int_equal(fetch_path(cl, &req, "/no-name-first", &err, NULL), -EPROTO);
    expect_msg(&err, "a response header without a name");
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_garbage_status_line_or_folded_header_is_eproto(void **state) {
    (void)state;
    run_main(garbage_main, NULL);
}

static int odd_but_valid_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128];
    sp_http_client_resp *resp;
    /* An empty header value, and a header twice. */
    assert_int_equal(sp_http_client_get(cl, url(u, "/headers"), &resp, NULL), 0);
    sp_str v, n;
    assert_int_equal(sp_http_client_resp_header(resp, "X-Empty", &v), 0);
    assert_int_equal(v.len, 0);
    assert_int_equal(sp_http_client_resp_header(resp, "X-After", &v), 0);
    assert_true(sp_str_eq(v, sp_str_c("1")));
    assert_int_equal(sp_http_client_resp_header(resp, "Set-Cookie", &v), 0);
    assert_true(sp_str_eq(v, sp_str_c("a=1")));
    assert_int_equal(sp_http_client_resp_header_at(resp, 3, &n, &v), 0);
    assert_true(sp_str_eq(n, sp_str_c("Set-Cookie")) && sp_str_eq(v, sp_str_c("b=2")));
    assert_int_equal(sp_http_client_resp_header_count(resp), 5);
    sp_http_client_resp_free(resp);
    /* A 103 before the response: skipped, its headers dropped. */
    assert_int_equal(sp_http_client_get(cl, url(u, "/interim"), &resp, NULL), 0);
    assert_int_equal(sp_http_client_resp_status(resp), 200);
    assert_int_equal(sp_http_client_resp_header(resp, "Link", &v), -ENOENT);
    assert_int_equal(sp_http_client_resp_header(resp, "X-Final", &v), 0);
    sp_http_client_resp_free(resp);
    /* A 304 announcing a length has no body: the connection goes on. */
    assert_int_equal(get_text(cl, url(u, "/304"), NULL, 0), 304);
    assert_int_equal(get_text(cl, url(u, "/ok"), NULL, 0), 200);
    assert_int_equal(atomic_load(&g_up.accepted), 1);
    /* A body delimited by the close, then a connection that is not reused. */
    char body[64];
    assert_int_equal(get_text(cl, url(u, "/until-close"), body, sizeof(body)), 200);
    assert_string_equal(body, "body delimited by the close");
    assert_int_equal(get_text(cl, url(u, "/ok"), NULL, 0), 200);
    assert_int_equal(atomic_load(&g_up.accepted), 2);
    /* Bytes after the response, or HTTP/1.0 without keep-alive: not reused. */
    assert_int_equal(get_text(cl, url(u, "/extra"), body, sizeof(body)), 200);
    assert_string_equal(body, "ok");
    assert_int_equal(get_text(cl, url(u, "/http10"), NULL, 0), 200);
    assert_int_equal(get_text(cl, url(u, "/ok"), NULL, 0), 200);
    assert_int_equal(atomic_load(&g_up.accepted), 4);
    assert_true(await_int(&g_up.closed_seen, 2, 2.0));
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_interim_304_empty_values_and_close_delimited_bodies(void **state) {
    (void)state;
    run_main(odd_but_valid_main, NULL);
}

/* ---- Connections and names ------------------------------------------------------------ */

static int refused_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128];
    sp_http_client_resp *resp;
    sp_http_client_error err;
    assert_int_equal(sp_http_client_get(cl, url_of(u, sizeof(u), dead_port(), "/"), &resp, &err),
                     -ECONNREFUSED);
    assert_int_equal(err.code, -ECONNREFUSED);
    expect_msg(&err, "connection refused by 127.0.0.1:");
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.connections, 0);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_port_nobody_listens_on_is_econnrefused(void **state) {
    (void)state;
    run_main(refused_main, NULL);
}

static void resolve_1s(sp_http_client_config *cfg) {
    cfg->resolve_timeout = 1.0;
}

static int unknown_name_main(void *arg, void **result) {
    (void)arg, (void)result;
    /* With the system's resolv.conf: this sandbox has no network, so the
     * nameserver fails or never answers; either way within resolve_timeout. */
    sp_http_client *cl = new_client(resolve_1s);
    sp_http_client_resp *resp;
    sp_http_client_error err;
    double t0 = now_s();
    int rc = sp_http_client_get(cl, "http://no-such-host.invalid:8080/", &resp, &err);
    assert_true(rc == -ENXIO || rc == -ETIMEDOUT);
    assert_true(now_s() - t0 < 1.5);
    expect_msg(&err, "no-such-host.invalid");
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_name_not_in_etc_hosts_fails_quickly(void **state) {
    (void)state;
    run_main(unknown_name_main, NULL);
}

/* A nameserver that never answers: a UDP socket nobody reads. */
static int g_dns_fd = -1;
static char g_dns_addr[64];

static void silent_dns(sp_http_client_config *cfg) {
    g_dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(g_dns_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    getsockname(g_dns_fd, (struct sockaddr *)&sa, &len);
    snprintf(g_dns_addr, sizeof(g_dns_addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    cfg->nameservers = g_dns_addr;
    cfg->resolve_timeout = 0.2;
}

static int resolve_timeout_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(silent_dns);
    sp_http_client_resp *resp;
    sp_http_client_error err;
    double t0 = now_s();
    assert_int_equal(sp_http_client_get(cl, "http://slow.test/", &resp, &err), -ETIMEDOUT);
    assert_true(now_s() - t0 < 0.7);
    expect_msg(&err, "timed out resolving slow.test after 0.2 s");
    /* /etc/hosts still answers with a nameserver of one's own. */
    char u[128];
    snprintf(u, sizeof(u), "http://localhost:%d/ok", g_up.port);
    assert_int_equal(get_text(cl, u, NULL, 0), 200);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    close(g_dns_fd);
    return 0;
}

static void test_silent_nameserver_hits_the_resolve_timeout(void **state) {
    (void)state;
    run_main(resolve_timeout_main, NULL);
}

static int bad_config_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client_config cfg;
    sp_http_client *cl;
    sp_http_client_config_init(&cfg);
    cfg.nameservers = "not an address";
    assert_int_equal(sp_http_client_create(&cl, &cfg), -EINVAL);
    sp_http_client_config_init(&cfg);
    cfg.connect_timeout = 0;
    assert_int_equal(sp_http_client_create(&cl, &cfg), -EINVAL);
    sp_http_client_config_init(&cfg);
    cfg.max_header_bytes = 10;
    assert_int_equal(sp_http_client_create(&cl, &cfg), -EINVAL);
    return 0;
}

static void test_bad_client_settings_are_einval(void **state) {
    (void)state;
    run_main(bad_config_main, NULL);
}

/* ---- A pooled connection closed under a request --------------------------------------- */

static int retry_get_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128], body[16];
    assert_int_equal(get_text(cl, url(u, "/close-second"), body, sizeof(body)), 200);
    /* The upstream reads the next request and closes: sent again, once, on a
     * fresh connection. */
    assert_int_equal(get_text(cl, u, body, sizeof(body)), 200);
    assert_string_equal(body, "ok");
    assert_int_equal(atomic_load(&g_up.accepted), 2);
    assert_int_equal(atomic_load(&g_up.requests), 3);
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 2);
    assert_int_equal(st.connections, 1);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_get_on_a_reused_connection_closed_before_answering_is_retried(void **state) {
    (void)state;
    run_main(retry_get_main, NULL);
}

static int no_retry_post_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_http_request req = {.method = "POST", .body = "x", .body_len = 1};
    sp_http_client_error err;
    assert_int_equal(fetch_path(cl, &req, "/close-second", &err, NULL), 0);
    assert_int_equal(fetch_path(cl, &req, "/close-second", &err, NULL), -ECONNRESET);
    expect_msg(&err, "closed a reused connection before responding; POST is not idempotent");
    assert_int_equal(atomic_load(&g_up.accepted), 1);
    assert_int_equal(atomic_load(&g_up.requests), 2);
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_post_on_a_reused_connection_closed_before_answering_is_econnreset(void **state) {
    (void)state;
    run_main(no_retry_post_main, NULL);
}

/* ---- Cancellation in every phase -------------------------------------------------------- */

/* Starts f's request in a task, cancels it after `after` seconds, returns
 * how long the cancelled request took to return. */
static double cancel_after(fetch *f, double after) {
    sp_task *t = spawn(fetch_task, f);
    sp_sleep(after);
    double t0 = now_s();
    assert_int_equal(sp_task_cancel(t), 0);
    assert_int_equal(sp_task_await(t, NULL), 0);
    sp_task_release(t);
    assert_int_equal(f->rc, -ECANCELED);
    assert_int_equal(f->err.code, -ECANCELED);
    assert_null(f->resp);
    return now_s() - t0;
}

static int cancel_dns_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(silent_dns);
    fetch f = {.cl = cl};
    snprintf(f.url, sizeof(f.url), "http://slow.test:%d/ok", g_up.port);
    assert_true(cancel_after(&f, 0.05) < 0.05);
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.connections, 0);
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    close(g_dns_fd);
    return 0;
}

static void test_cancel_during_resolution(void **state) {
    (void)state;
    run_main(cancel_dns_main, NULL);
}

static int cancel_connect_main(void *arg, void **result) {
    (void)arg, (void)result;
    full_listener fl;
    full_listener_open(&fl);
    sp_http_client *cl = new_client(NULL);
    fetch f = {.cl = cl};
    url_of(f.url, sizeof(f.url), fl.port, "/");
    assert_true(cancel_after(&f, 0.05) < 0.05);
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.connections, 0);
    full_listener_close(&fl);
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_cancel_during_connect(void **state) {
    (void)state;
    run_main(cancel_connect_main, NULL);
}

/* Cancels a request to path after `after` s; the upstream must see its
 * connection close, and the pool stay clean. */
static void cancel_request_to(sp_http_client *cl, const char *path, size_t body_len, double after) {
    fetch f = {.cl = cl};
    url(f.url, path);
    char *body = NULL;
    if (body_len) {
        body = calloc(1, body_len);
        f.req.method = "POST";
        f.req.body = body;
        f.req.body_len = body_len;
    }
    int closed = atomic_load(&g_up.closed_seen);
    assert_true(cancel_after(&f, after) < 0.05);
    free(body);
    assert_true(await_int(&g_up.closed_seen, closed + 1, 2.0));
    expect_pool_clean_and_working(cl);
}

static int cancel_write_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    /* The upstream reads nothing: 64 MiB cannot all go out. */
    cancel_request_to(cl, "/noread", 64 << 20, 0.1);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_cancel_while_writing_the_request(void **state) {
    (void)state;
    run_main(cancel_write_main, NULL);
}

static int cancel_wait_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    cancel_request_to(cl, "/hang", 0, 0.1);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_cancel_while_waiting_for_the_response(void **state) {
    (void)state;
    run_main(cancel_wait_main, NULL);
}

static int cancel_body_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    cancel_request_to(cl, "/halfbody", 0, 0.1);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_cancel_while_reading_the_body(void **state) {
    (void)state;
    run_main(cancel_body_main, NULL);
}

typedef struct stream_reader {
    sp_http_client_resp *resp;
    int rc;
} stream_reader;

static int read_piece_task(void *arg, void **result) {
    (void)result;
    stream_reader *s = arg;
    sp_str piece;
    s->rc = sp_http_client_resp_read(s->resp, &piece, NULL);
    return 0;
}

static int cancel_stream_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128];
    sp_http_request req = {.url = url(u, "/halfbody"), .stream = true};
    stream_reader s = {0};
    assert_int_equal(sp_http_client_request(cl, &req, &s.resp, NULL), 0);
    sp_str piece;
    assert_int_equal(sp_http_client_resp_read(s.resp, &piece, NULL), 0);
    assert_true(sp_str_eq(piece, sp_str_c("0123456789")));
    sp_task *t = spawn(read_piece_task, &s);
    sp_sleep(0.05);
    sp_task_cancel(t);
    await_release(t);
    assert_int_equal(s.rc, -ECANCELED);
    /* Freed half-read, the connection is closed, not pooled. */
    sp_http_client_resp_free(s.resp);
    assert_true(await_int(&g_up.closed_seen, 1, 2.0));
    expect_pool_clean_and_working(cl);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_cancel_while_streaming_then_free_closes_the_connection(void **state) {
    (void)state;
    run_main(cancel_stream_main, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_upstream_dripping_one_byte_per_100ms_hits_the_total_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_upstream_that_never_answers_hits_the_first_byte_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_that_never_completes_hits_the_connect_timeout,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_in_the_middle_of_the_body_is_econnreset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_body_shorter_than_content_length_then_close_is_eproto,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_mib_of_headers_is_refused_promptly_with_emsgsize,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_status_line_or_folded_header_is_eproto, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_interim_304_empty_values_and_close_delimited_bodies,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_nobody_listens_on_is_econnrefused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_name_not_in_etc_hosts_fails_quickly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_nameserver_hits_the_resolve_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_client_settings_are_einval, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_get_on_a_reused_connection_closed_before_answering_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_post_on_a_reused_connection_closed_before_answering_is_econnreset, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_cancel_during_resolution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_during_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_writing_the_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_waiting_for_the_response, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_reading_the_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_streaming_then_free_closes_the_connection,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
