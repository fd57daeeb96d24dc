/* The HTTP server's limits and timeouts, each shortened for the test: the
 * header timeout (slowloris), body, idle keep-alive and write timeouts, the
 * head size and header count (431), body size (413), URI length (414), and
 * the connection limit, above which the server stops accepting and the
 * kernel's backlog holds the rest until a connection closes. */
#include "http_harness.h"

static test_server g_srv;
static atomic_int g_flood_rc;
static atomic_int g_flood_done;

static int h_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

static int h_echo(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str body;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc;
    return sp_http_resp_send(resp, 200, "text/plain", body.ptr, body.len);
}

/* Streams 64 KiB pieces until a write fails; records how it failed. */
static int h_flood(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    static char piece[65536];
    int rc = sp_http_resp_start(resp, 200, "application/octet-stream");
    for (int i = 0; rc == 0 && i < 100000; i++)
        rc = sp_http_resp_write(resp, piece, sizeof(piece));
    atomic_store(&g_flood_rc, rc);
    atomic_store(&g_flood_done, 1);
    return rc;
}

static sp_router *limits_router(void) {
    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "GET", "/", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/*rest", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "POST", "/echo", h_echo, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/flood", h_flood, NULL, 0), 0);
    return r;
}

static void start(void (*cfg_fn)(sp_http_config *)) {
    server_start_with(&g_srv, limits_router(), cfg_fn);
}

static void stop(void) {
    server_stop(&g_srv, false);
}

/* Expects one response with `status` and Connection: close, then the close;
 * returns the seconds it took from the call. */
static double expect_status_then_close(client *c, int status) {
    double t0 = now_s();
    response r;
    expect_response(c, &r, false);
    double took = now_s() - t0;
    if (r.status != status)
        fail_msg("want %d, got %d: %s", status, r.status, r.head);
    char v[64];
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    response_free(&r);
    assert_int_equal(client_read_to_eof(c, CLIENT_TIMEOUT), 0);
    assert_int_equal(c->pos, c->len);
    return took;
}

/* ---- Timeouts ---------------------------------------------------------------- */

static void cfg_header_timeout(sp_http_config *cfg) {
    cfg->header_timeout = 0.4;
}

static void test_header_timeout_trickled_head_gets_408_and_close(void **state) {
    (void)state;
    start(cfg_header_timeout);
    client c;
    client_connect(&c, g_srv.port);
    double t0 = now_s();
    client_sends(&c, "GET / HTTP/1.1\r\n");
    /* One byte every 50 ms: the head never completes; the deadline counts
     * from the first byte, not from the last. */
    while (c.len == 0 && !c.eof && now_s() - t0 < 3) {
        if (client_send(&c, "X", 1) != 0)
            break;
        client_fill(&c, 0.05);
    }
    double took = now_s() - t0;
    expect_status_then_close(&c, 408);
    assert_true(took >= 0.35 && took < 1.5);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

static void test_header_timeout_closes_a_silent_connection_without_answer(void **state) {
    (void)state;
    start(cfg_header_timeout);
    client c;
    client_connect(&c, g_srv.port);
    double t0 = now_s();
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    double took = now_s() - t0;
    assert_int_equal(c.len, 0);
    assert_true(took >= 0.35 && took < 1.5);
    client_close(&c);
    stop();
}

/* A server idle for longer than the header timeout still gives a new
 * connection the whole timeout: the deadline counts from the accept, not
 * from the loop's last wake-up. Several connections, since the server
 * accepts them in one go. */
static void test_header_timeout_counts_from_the_accept_after_a_quiet_spell(void **state) {
    (void)state;
    start(cfg_header_timeout);
    for (int round = 0; round < 2; round++) {
        sleep_s(0.6); /* the server's loop sleeps */
        client c[4];
        for (int i = 0; i < 4; i++)
            client_connect(&c[i], g_srv.port);
        sleep_s(0.15);
        for (int i = 0; i < 4; i++) {
            client_sends(&c[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            response r;
            expect_response(&c[i], &r, false);
            assert_int_equal(r.status, 200);
            response_free(&r);
            client_close(&c[i]);
        }
    }
    stop();
}

static void test_header_timeout_applies_to_a_later_request_head(void **state) {
    (void)state;
    start(cfg_header_timeout);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_sends(&c, "GET / HTTP/1.1\r\nHost");
    double took = expect_status_then_close(&c, 408);
    assert_true(took >= 0.35 && took < 1.5);
    client_close(&c);
    stop();
}

static void cfg_body_timeout(sp_http_config *cfg) {
    cfg->body_timeout = 0.3;
}

static void test_body_timeout_gives_408_and_close(void **state) {
    (void)state;
    start(cfg_body_timeout);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    double took = expect_status_then_close(&c, 408);
    assert_true(took >= 0.25 && took < 1.5);
    client_close(&c);
    /* Chunked, stalled between two chunks. */
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n");
    took = expect_status_then_close(&c, 408);
    assert_true(took >= 0.25 && took < 1.5);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

static void cfg_idle_timeout(sp_http_config *cfg) {
    cfg->idle_timeout = 0.3;
}

static void test_idle_keep_alive_timeout_closes_the_connection(void **state) {
    (void)state;
    start(cfg_idle_timeout);
    client c;
    client_connect(&c, g_srv.port);
    /* Requests closer together than the timeout keep the connection. */
    for (int i = 0; i < 5; i++) {
        client_sends(&c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        response r;
        expect_response(&c, &r, false);
        assert_int_equal(r.status, 200);
        response_free(&r);
        sleep_s(0.15);
    }
    double t0 = now_s();
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    double took = now_s() - t0;
    assert_int_equal(c.pos, c.len);
    assert_true(took >= 0.1 && took < 1.2);
    client_close(&c);
    stop();
}

static void cfg_write_timeout(sp_http_config *cfg) {
    cfg->write_timeout = 0.3;
}

/* A client that never reads a large streamed response: the handler's write
 * fails with -ETIMEDOUT and the server closes the connection. */
static void test_write_timeout_ends_a_stalled_stream(void **state) {
    (void)state;
    atomic_store(&g_flood_done, 0);
    start(cfg_write_timeout);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_for_int(&g_flood_done, 1, CLIENT_TIMEOUT));
    assert_int_equal(atomic_load(&g_flood_rc), -ETIMEDOUT);
    /* What the server had buffered, then the close. */
    double end = now_s() + CLIENT_TIMEOUT;
    char scratch[65536];
    ssize_t n;
    while ((n = recv(c.fd, scratch, sizeof(scratch), 0)) > 0 && now_s() < end)
        ;
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

/* ---- Sizes ------------------------------------------------------------------- */

static void cfg_small_head(sp_http_config *cfg) {
    cfg->max_header_bytes = 1024;
    cfg->max_headers = 10;
}

static char *head_with_filler(size_t filler) {
    char *req = malloc(filler + 128);
    int n = sprintf(req, "GET / HTTP/1.1\r\nHost: t\r\nX-Fill: ");
    memset(req + n, 'f', filler);
    strcpy(req + n + filler, "\r\n\r\n");
    return req;
}

static void test_max_header_bytes_gives_431(void **state) {
    (void)state;
    start(cfg_small_head);
    /* Under the limit. */
    char *req = head_with_filler(900);
    assert_int_equal(request_once(g_srv.port, req, NULL), 200);
    free(req);
    /* Over it, in one write: the whole head fits in one read. */
    req = head_with_filler(1100);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, req);
    expect_status_then_close(&c, 431);
    client_close(&c);
    /* Over it, in pieces. */
    client_connect(&c, g_srv.port);
    for (size_t off = 0; off < strlen(req); off += 100) {
        if (client_send(&c, req + off, strlen(req) - off < 100 ? strlen(req) - off : 100) != 0)
            break;
        sleep_s(0.002);
    }
    expect_status_then_close(&c, 431);
    client_close(&c);
    free(req);
    /* A head that never ends. */
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET / HTTP/1.1\r\nHost: t\r\nX-Fill: ");
    char fill[256];
    memset(fill, 'f', sizeof(fill));
    for (int i = 0; i < 20; i++)
        if (client_send(&c, fill, sizeof(fill)) != 0)
            break;
    expect_status_then_close(&c, 431);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

static void test_max_header_count_gives_431(void **state) {
    (void)state;
    start(cfg_small_head);
    char req[1024];
    int n = sprintf(req, "GET / HTTP/1.1\r\nHost: t\r\n");
    for (int i = 1; i < 10; i++)
        n += sprintf(req + n, "X-%d: v\r\n", i);
    strcpy(req + n, "\r\n");
    assert_int_equal(request_once(g_srv.port, req, NULL), 200);
    sprintf(req + n, "X-10: v\r\n\r\n");
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, req);
    expect_status_then_close(&c, 431);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

static void cfg_small_body(sp_http_config *cfg) {
    cfg->max_body = 1000;
}

static void test_max_body_content_length_gives_413(void **state) {
    (void)state;
    start(cfg_small_body);
    char body[1001];
    memset(body, 'b', sizeof(body));
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n");
    assert_int_equal(client_send(&c, body, 1000), 0);
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 1000);
    response_free(&r);
    /* Refused from the head alone, before any body byte is sent. */
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
    expect_status_then_close(&c, 413);
    client_close(&c);
    /* With Expect: 100-continue, no 100 comes first. */
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n"
                     "Expect: 100-continue\r\n\r\n");
    expect_status_then_close(&c, 413);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

static void test_max_body_chunked_gives_413(void **state) {
    (void)state;
    start(cfg_small_body);
    char chunk[700];
    memset(chunk, 'c', sizeof(chunk));
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2bc\r\n");
    assert_int_equal(client_send(&c, chunk, sizeof(chunk)), 0);
    client_sends(&c, "\r\n2bc\r\n");
    client_send(&c, chunk, sizeof(chunk)); /* the server may have closed */
    client_send(&c, "\r\n0\r\n\r\n", 7);
    expect_status_then_close(&c, 413);
    client_close(&c);
    /* Trailers count toward the limit too. */
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; i < 40; i++)
        if (client_send(&c, "X-Trailer: 0123456789012345678901234567890123456789\r\n", 53) != 0)
            break;
    expect_status_then_close(&c, 413);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

/* The client sends its whole body before reading: the server refuses the body
 * but reads and drops it (lingering close), so the client's sends succeed and
 * the 413 reaches it instead of a reset. */
static void test_rejection_reaches_a_client_still_sending(void **state) {
    (void)state;
    start(cfg_small_body);
    size_t len = 3000000;
    char *body = calloc(1, len);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n");
    assert_int_equal(client_send(&c, body, len), 0);
    free(body);
    expect_status_then_close(&c, 413);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

static void cfg_small_uri(sp_http_config *cfg) {
    cfg->max_uri = 100;
}

static void test_max_uri_gives_414(void **state) {
    (void)state;
    start(cfg_small_uri);
    char path[200], req[512];
    memset(path, 'u', sizeof(path));
    path[0] = '/';
    path[100] = '\0';
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    assert_int_equal(request_once(g_srv.port, req, NULL), 200);
    path[100] = 'u';
    path[101] = '\0';
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, req);
    expect_status_then_close(&c, 414);
    client_close(&c);
    expect_server_healthy(g_srv.port);
    stop();
}

/* ---- Connections ---------------------------------------------------------------- */

static void cfg_two_connections(sp_http_config *cfg) {
    cfg->max_connections = 2;
}

static void get_hello(client *c) {
    client_sends(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(c, &r, false);
    assert_int_equal(r.status, 200);
    response_free(&r);
}

static void test_max_connections_pauses_accepting_until_one_closes(void **state) {
    (void)state;
    start(cfg_two_connections);
    client a, b, c, d;
    client_connect(&a, g_srv.port);
    get_hello(&a);
    client_connect(&b, g_srv.port);
    get_hello(&b);
    /* Above the limit: the connection completes in the kernel's backlog but
     * nobody reads it yet. */
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    client_connect(&d, g_srv.port);
    client_sends(&d, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_silent_for(&c, 0.3));
    assert_true(client_silent_for(&d, 0.01));
    /* The accepted ones are still served. */
    get_hello(&a);
    client_close(&a);
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    response_free(&r);
    assert_true(client_silent_for(&d, 0.1));
    client_close(&b);
    expect_response(&d, &r, false);
    assert_int_equal(r.status, 200);
    response_free(&r);
    get_hello(&c);
    get_hello(&d);
    client_close(&c);
    client_close(&d);
    expect_server_healthy(g_srv.port);
    stop();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_timeout_trickled_head_gets_408_and_close),
        cmocka_unit_test(test_header_timeout_closes_a_silent_connection_without_answer),
        cmocka_unit_test(test_header_timeout_counts_from_the_accept_after_a_quiet_spell),
        cmocka_unit_test(test_header_timeout_applies_to_a_later_request_head),
        cmocka_unit_test(test_body_timeout_gives_408_and_close),
        cmocka_unit_test(test_idle_keep_alive_timeout_closes_the_connection),
        cmocka_unit_test(test_write_timeout_ends_a_stalled_stream),
        cmocka_unit_test(test_max_header_bytes_gives_431),
        cmocka_unit_test(test_max_header_count_gives_431),
        cmocka_unit_test(test_max_body_content_length_gives_413),
        cmocka_unit_test(test_max_body_chunked_gives_413),
        cmocka_unit_test(test_rejection_reaches_a_client_still_sending),
        cmocka_unit_test(test_max_uri_gives_414),
        cmocka_unit_test(test_max_connections_pauses_accepting_until_one_closes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
