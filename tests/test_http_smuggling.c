/* Request smuggling and malformed requests (RFC 9112): each bad request is
 * sent with a well-formed request right behind it on the same connection.
 * The server must answer the bad one (400, or the status named), close the
 * connection, and never answer the request behind it: no byte after a bad
 * request may be taken as the start of another. A fresh connection must
 * then be served normally. */
#include "http_harness.h"

static test_server g_srv;

static int h_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

/* Answers with the decoded path and the Host header as the server saw them. */
static int h_where(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str path = sp_http_req_path(req), host = {"", 0};
    sp_http_req_header(req, "Host", &host);
    char body[256];
    int n =
        snprintf(body, sizeof(body), "%.*s %.*s", (int)path.len, path.ptr, (int)host.len, host.ptr);
    return sp_http_resp_send(resp, 200, "text/plain", body, (size_t)n);
}

static int h_echo(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str body;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc;
    return sp_http_resp_send(resp, 200, "text/plain", body.ptr, body.len);
}

/* Answers with the value of header X, between brackets. */
static int h_header_x(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str v = {"", 0};
    int rc = sp_http_req_header(req, "X", &v);
    char body[256];
    int n = snprintf(body, sizeof(body), "%d [%.*s]", rc, (int)v.len, v.ptr);
    return sp_http_resp_send(resp, 200, "text/plain", body, (size_t)n);
}

/* A string literal, NULs included. */
#define expect_rejected(lit, status) expect_refused_at(g_srv.port, lit, sizeof(lit) - 1, status)

#define POST_ "POST /echo HTTP/1.1\r\nHost: t\r\n"

/* ---- Framing: Content-Length and Transfer-Encoding ---- */

static void test_content_length_with_transfer_encoding_is_rejected(void **state) {
    (void)state;
    expect_rejected(POST_ "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    expect_rejected(POST_ "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400);
}

static void test_duplicate_content_length_is_rejected(void **state) {
    (void)state;
    expect_rejected(POST_ "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400);
}

static void test_conflicting_content_length_is_rejected(void **state) {
    (void)state;
    expect_rejected(POST_ "Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc", 400);
    expect_rejected(POST_ "Content-Length: 3, 3\r\n\r\nabc", 400);
}

static void test_invalid_content_length_is_rejected(void **state) {
    (void)state;
    expect_rejected(POST_ "Content-Length: +5\r\n\r\nabcde", 400);
    expect_rejected(POST_ "Content-Length: 5 5\r\n\r\nabcde", 400);
    expect_rejected(POST_ "Content-Length: 0x5\r\n\r\nabcde", 400);
    expect_rejected(POST_ "Content-Length: -1\r\n\r\n", 400);
    expect_rejected(POST_ "Content-Length:\r\n\r\n", 400);
    expect_rejected(POST_ "Content-Length: 99999999999999999999999\r\n\r\n", 400);
}

static void test_bad_chunk_size_is_rejected(void **state) {
    (void)state;
    expect_rejected(POST_ "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400);
    expect_rejected(POST_ "Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n", 400);
    expect_rejected(POST_ "Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 400);
    expect_rejected(POST_ "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n",
                    400);
    /* Chunk data not followed by CRLF. */
    expect_rejected(POST_ "Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400);
    expect_rejected(POST_ "Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n", 400);
}

static void test_transfer_encoding_not_ending_in_chunked_is_rejected(void **state) {
    (void)state;
    expect_rejected(POST_ "Transfer-Encoding: gzip\r\n\r\nabc", 400);
    expect_rejected(POST_ "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400);
    expect_rejected(POST_ "Transfer-Encoding: identity\r\n\r\n", 400);
    expect_rejected(POST_ "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "0\r\n\r\n",
                    400);
}

static void test_transfer_encoding_on_http10_is_rejected(void **state) {
    (void)state;
    expect_rejected(
        "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400);
}

/* ---- Header syntax ---- */

static void test_whitespace_before_colon_is_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400);
    expect_rejected(POST_ "Content-Length : 3\r\n\r\nabc", 400);
    expect_rejected(POST_ "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400);
}

static void test_control_character_in_header_value_is_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX: a\x01z\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX: a\x7fz\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX: a\0z\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX: a\x1b[31m\r\n\r\n", 400);
}

static void test_invalid_header_name_is_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX(y): z\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\n: z\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX\0Y: z\r\n\r\n", 400);
}

static void test_missing_host_on_http11_is_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nX-Host: t\r\n\r\n", 400);
}

static void test_two_host_headers_are_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
}

/* RFC 9112 5.2 lets a server reject obs-fold; llhttp accepts it, the server
 * must not. */
static void test_obs_fold_is_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n  folded\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n\tfolded\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\nX:\r\n folded\r\n\r\n", 400);
    /* A header line starting with a space would fold into the one before. */
    expect_rejected(POST_ "X: a\r\n Content-Length: 3\r\n\r\nabc", 400);
    expect_rejected("GET / HTTP/1.1\r\n Host: t\r\n\r\n", 400);
}

/* Decision: every line of a request head ends in CRLF. llhttp refuses a bare
 * LF ending a header line but accepts one ending the request line or the
 * head; the server refuses all of them (nginx accepts bare LF; refusing is
 * safer when a proxy in front parses differently). */
static void test_bare_lf_line_endings_are_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1\nHost: t\nX: y\n\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\nX: y\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\nHost: t\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\n\n", 400);
    expect_rejected("GET / HTTP/1.0\n\n", 400);
    expect_rejected("GET / HTTP/1.0\r\n\n", 400);
}

static void test_bare_cr_is_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", 400);
    expect_rejected("GET / HTTP/1.1\r\nHost: t\r\n\r\r\n", 400);
    expect_rejected("GET / HTTP/1.1\rHost: t\r\n\r\n", 400);
}

/* ---- Request line ---- */

static void test_bad_request_line_is_rejected(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/1.1 \r\nHost: t\r\n\r\n", 400);
    expect_rejected("GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    expect_rejected("GET a:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    expect_rejected("CONNECT t:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    expect_rejected("GET ftp:x HTTP/1.1\r\nHost: t\r\n\r\n", 400);
}

static void test_unsupported_http_version_gets_505(void **state) {
    (void)state;
    expect_rejected("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
    expect_rejected("GET / HTTP/0.9\r\nHost: t\r\n\r\n", 505);
}

/* RFC 9112 3.2.2: a server MUST accept the absolute form; the path is routed
 * as usual and the connection stays in step. */
static void test_absolute_form_target_is_routed_by_its_path(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET http://t/where?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                     "GET https://t:8080 HTTP/1.1\r\nHost: t\r\n\r\n"
                     "GET /where HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *want[] = {"/where t", "Hello, World!", "/where t"};
    for (int i = 0; i < 3; i++) {
        expect_status_body(&c, 200, want[i]);
    }
    assert_true(client_silent_for(&c, 0.05));
    client_close(&c);
}

/* An Upgrade request is served as a plain request: the server switches to no
 * other protocol, and the bytes after it are the next request. */
static void test_upgrade_request_is_served_as_plain_http(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /where HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                     "Upgrade: websocket\r\n\r\n"
                     "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_status_body(&c, 200, "/where t");
    expect_status_body(&c, 200, "Hello, World!");
    client_close(&c);
}

/* ---- Accepted edge cases ---- */

/* Whitespace around a value is not part of it (RFC 9110 5.5); Content-Length
 * may carry it too. */
static void test_whitespace_around_header_values_is_dropped(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /x HTTP/1.1\r\nHost: t\r\nX: \t a b \t \r\n\r\n"
                     "GET /x HTTP/1.1\r\nHost: t\r\nX:\r\n\r\n"
                     "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3 \r\n\r\nabc");
    const char *want[] = {"0 [a b]", "0 []", "abc"};
    for (int i = 0; i < 3; i++) {
        expect_status_body(&c, 200, want[i]);
    }
    client_close(&c);
}

/* A chunked body's bare-LF final line is the one spot where llhttp 8 still
 * accepts LF; the message ends there and the next request is parsed from the
 * following byte, so the connection stays in step. */
static void test_chunked_trailer_section_ending_in_lf_stays_in_step(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, POST_ "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\n"
                           "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_status_body(&c, 200, "abc");
    expect_status_body(&c, 200, "Hello, World!");
    client_close(&c);
}

static int setup(void **state) {
    (void)state;
    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "GET", "/", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/where", h_where, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/smuggled", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/x", h_header_x, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "POST", "/echo", h_echo, NULL, 0), 0);
    server_start_with(&g_srv, r, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    server_stop(&g_srv, false);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_with_transfer_encoding_is_rejected),
        cmocka_unit_test(test_duplicate_content_length_is_rejected),
        cmocka_unit_test(test_conflicting_content_length_is_rejected),
        cmocka_unit_test(test_invalid_content_length_is_rejected),
        cmocka_unit_test(test_bad_chunk_size_is_rejected),
        cmocka_unit_test(test_transfer_encoding_not_ending_in_chunked_is_rejected),
        cmocka_unit_test(test_transfer_encoding_on_http10_is_rejected),
        cmocka_unit_test(test_whitespace_before_colon_is_rejected),
        cmocka_unit_test(test_control_character_in_header_value_is_rejected),
        cmocka_unit_test(test_invalid_header_name_is_rejected),
        cmocka_unit_test(test_missing_host_on_http11_is_rejected),
        cmocka_unit_test(test_two_host_headers_are_rejected),
        cmocka_unit_test(test_obs_fold_is_rejected),
        cmocka_unit_test(test_bare_lf_line_endings_are_rejected),
        cmocka_unit_test(test_bare_cr_is_rejected),
        cmocka_unit_test(test_bad_request_line_is_rejected),
        cmocka_unit_test(test_unsupported_http_version_gets_505),
        cmocka_unit_test(test_absolute_form_target_is_routed_by_its_path),
        cmocka_unit_test(test_upgrade_request_is_served_as_plain_http),
        cmocka_unit_test(test_whitespace_around_header_values_is_dropped),
        cmocka_unit_test(test_chunked_trailer_section_ending_in_lf_stays_in_step),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
