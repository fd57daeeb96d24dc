/* RFC 9110/9112 conformance where Spindle once answered otherwise, each case
 * found by tests/http_diff.py against nginx: extension methods, versions,
 * request-line and target forms, Host syntax, transfer codings and
 * 100-continue. Raw requests over real sockets to one shared server. */
#include "http_harness.h"

static test_server g_srv;
static atomic_int g_counted; /* requests /count has served */

static int h_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

/* "<method> <path> <query> <version>" as the server saw them. */
static int h_where(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str m = sp_http_req_method(req), p = sp_http_req_path(req);
    sp_str q = sp_http_req_query_string(req);
    char body[256];
    int n = snprintf(body, sizeof(body), "%.*s %.*s %.*s %d", (int)m.len, m.ptr, (int)p.len, p.ptr,
                     (int)q.len, q.ptr, sp_http_req_version(req));
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

static int h_count(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    atomic_fetch_add(&g_counted, 1);
    return sp_http_resp_send(resp, 200, "text/plain", "counted", 7);
}

#define expect_refused(lit, status) expect_refused_at(g_srv.port, lit, sizeof(lit) - 1, status)

/* Sends raw on one connection and expects the responses listed, in order,
 * each with its status and body (NULL: any body), the connection kept. */
static void expect_answers(const char *raw, size_t n, const int *status, const char *const *body) {
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, raw);
    for (size_t i = 0; i < n; i++) {
        response r;
        expect_response(&c, &r, false);
        if (r.status != status[i] || (body[i] && strcmp(r.body, body[i]) != 0))
            fail_msg("%.40s: response %zu: want %d '%s', got %d '%s'", raw, i, status[i],
                     body[i] ? body[i] : "*", r.status, r.body);
        char v[64];
        assert_false(response_header(&r, "Connection", v, sizeof(v)) && strcmp(v, "close") == 0);
        response_free(&r);
    }
    assert_true(client_silent_for(&c, 0.05));
    client_close(&c);
}

#define H         "Host: t\r\n"
#define GET_HELLO "GET / HTTP/1.1\r\n" H "\r\n"

/* ---- Methods ---- */

/* RFC 9110 9.1: a method is any token. One llhttp does not list reaches
 * the router like PURGE does: its own route, else 405 with Allow (nginx
 * answers 405 too), else 404; never a 400 for a well-formed request. */
static void test_extension_method_is_routed_not_rejected(void **state) {
    (void)state;
    expect_answers("FOO /ext HTTP/1.1\r\n" H "\r\n" GET_HELLO, 2, (int[]){200, 200},
                   (const char *[]){"FOO /ext  11", "Hello, World!"});
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "FOO / HTTP/1.1\r\n" H "\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 405);
    char allow[64];
    assert_true(response_header(&r, "Allow", allow, sizeof(allow)));
    assert_string_equal(allow, "GET, HEAD");
    response_free(&r);
    client_close(&c);
    /* A 405 names the extension methods too (RFC 9110 15.5.6). */
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /ext HTTP/1.1\r\n" H "\r\n");
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 405);
    assert_true(response_header(&r, "Allow", allow, sizeof(allow)));
    assert_string_equal(allow, "FOO");
    response_free(&r);
    client_close(&c);
    expect_answers("FOO /nope HTTP/1.1\r\n" H "\r\n", 1, (int[]){404}, (const char *[]){NULL});
    /* Longer than any method llhttp knows, and with token punctuation. */
    expect_answers("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n" H "\r\n"
                   "X-Y.Z!~ / HTTP/1.1\r\n" H "\r\n",
                   2, (int[]){405, 405}, (const char *[]){NULL, NULL});
}

/* Methods are case-sensitive: "get" is another method, not GET. */
static void test_lowercase_method_is_not_get(void **state) {
    (void)state;
    expect_answers("get / HTTP/1.1\r\n" H "\r\nGet / HTTP/1.1\r\n" H "\r\n", 2, (int[]){405, 405},
                   (const char *[]){NULL, NULL});
}

/* The token may arrive in pieces, after the empty lines RFC 9112 2.2 lets
 * a server skip; its body is framed as any request's. */
static void test_extension_method_split_across_reads_with_body(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "\r\nF");
    assert_true(client_silent_for(&c, 0.05));
    client_sends(&c, "OO /ext HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\nhello" GET_HELLO);
    expect_status_body(&c, 200, "FOO /ext  11");
    expect_status_body(&c, 200, "Hello, World!");
    client_close(&c);
}

/* ---- Versions and the request line ---- */

/* RFC 9110 2.5: a higher minor version of HTTP/1 is served as HTTP/1.1. */
static void test_higher_http1_minor_version_is_served_as_1_1(void **state) {
    (void)state;
    expect_answers("GET /where HTTP/1.2\r\n" H "\r\n"
                   "POST /echo HTTP/1.9\r\n" H "Content-Length: 2\r\n\r\nhi" GET_HELLO,
                   3, (int[]){200, 200, 200},
                   (const char *[]){"GET /where  11", "hi", "Hello, World!"});
}

/* RFC 9110 15.6.6: 505 for a major version other than 1, which llhttp
 * refused with 400 from HTTP/3 on. */
static void test_other_major_version_gets_505(void **state) {
    (void)state;
    expect_refused("GET / HTTP/3.0\r\n" H "\r\n", 505);
    expect_refused("GET / HTTP/2.0\r\n" H "\r\n", 505);
    expect_refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
}

/* RFC 9112 3: the version is part of the request line. An HTTP/0.9-style
 * "GET /" gets its 400 at once, not after the header timeout. */
static void test_request_line_without_version_is_refused_at_once(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    double t0 = now_s();
    client_sends(&c, "GET /\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 400);
    assert_true(now_s() - t0 < 1.0);
    response_free(&r);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    client_close(&c);
    expect_refused("GET /where\r\n" H "\r\n", 400);
}

/* RFC 9112 3.2.4: "OPTIONS *" asks about the server (RFC 9110 9.3.7: a
 * ping), answered 200; the asterisk-form with any other method is a bad
 * request, never a path a route could match. */
static void test_options_asterisk_is_answered_by_the_server(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "OPTIONS * HTTP/1.1\r\n" H "\r\n" GET_HELLO);
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    char v[64];
    assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
    assert_string_equal(v, "0");
    response_free(&r);
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(&c);
    expect_refused("GET * HTTP/1.1\r\n" H "\r\n", 400);
    expect_refused("POST * HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", 400);
}

/* A fragment is not part of a request-target (RFC 9112 3.2); as nginx,
 * ignore it rather than route it. */
static void test_fragment_in_target_is_ignored(void **state) {
    (void)state;
    expect_answers("GET /where#frag HTTP/1.1\r\n" H "\r\n"
                   "GET /where?q=1#f HTTP/1.1\r\n" H "\r\n"
                   "GET http://t/where?x#y/z HTTP/1.1\r\n" H "\r\n",
                   3, (int[]){200, 200, 200},
                   (const char *[]){"GET /where  11", "GET /where q=1 11", "GET /where x 11"});
}

/* ---- Host ---- */

/* RFC 9112 3.2: a Host whose value is not uri-host [ ":" port ] MUST get
 * a 400. */
static void test_invalid_host_value_is_rejected(void **state) {
    (void)state;
    expect_refused("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: u@t\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: t:8o\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: t:80:80\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\nHost: %4\r\n\r\n", 400);
    /* An HTTP/1.0 request need not send Host, but one it sends is checked. */
    expect_refused("GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400);
    /* So is the Host beside an absolute-form target, which it does not name. */
    expect_refused("GET http://t/ HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
}

/* The forms RFC 9110 7.2 allows, the empty one included (a target without
 * an authority), whatever nginx refuses. */
static void test_valid_host_forms_are_accepted(void **state) {
    (void)state;
    expect_answers("GET / HTTP/1.1\r\nHost:\r\n\r\n"
                   "GET / HTTP/1.1\r\nHost: t:\r\n\r\n"
                   "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
                   "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"
                   "GET / HTTP/1.1\r\nHost: [v1.x]\r\n\r\n"
                   "GET / HTTP/1.1\r\nHost: xn--caf-dma.example\r\n\r\n"
                   "GET / HTTP/1.1\r\nHost: %41b_c~d!$&'()*+,;=\r\n\r\n",
                   7, (int[]){200, 200, 200, 200, 200, 200, 200},
                   (const char *[]){NULL, NULL, NULL, NULL, NULL, NULL, NULL});
}

/* ---- Transfer codings and 100-continue ---- */

/* RFC 9112 6.1: a coding the server does not implement gets 501, even
 * before a final chunked that frames the body; it is never handed to the
 * handler as if it were the content. */
static void test_transfer_coding_before_chunked_gets_501(void **state) {
    (void)state;
    expect_refused("POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n",
                   501);
    expect_refused("POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                   501);
    /* Empty list members are not codings (RFC 9110 5.6.1). */
    expect_answers("POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: , chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n",
                   1, (int[]){200}, (const char *[]){"hello"});
}

/* RFC 9112 6.3: without chunked last the body has no length: 400 and
 * close, decided from the head, before any handler runs (llhttp only fails
 * once the body is read). */
static void test_transfer_encoding_without_final_chunked_never_reaches_the_handler(void **state) {
    (void)state;
    atomic_store(&g_counted, 0);
    expect_refused("GET /count HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\nhello", 400);
    expect_refused("GET /count HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n", 400);
    assert_int_equal(atomic_load(&g_counted), 0);
    expect_answers("GET /count HTTP/1.1\r\n" H "\r\n", 1, (int[]){200},
                   (const char *[]){"counted"});
    assert_int_equal(atomic_load(&g_counted), 1);
}

/* RFC 9110 10.1.1: with no content to send, 100-continue expects nothing:
 * no 100, and the connection carries on as for any request. */
static void test_expect_100_continue_without_content_keeps_the_connection(void **state) {
    (void)state;
    expect_answers("GET / HTTP/1.1\r\n" H "Expect: 100-continue\r\n\r\n"
                   "POST /echo HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 0\r\n\r\n"
                   "POST /where HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 0\r\n\r\n"
                   "GET /where HTTP/1.1\r\n" H "\r\n",
                   4, (int[]){200, 200, 405, 200},
                   (const char *[]){"Hello, World!", "", NULL, "GET /where  11"});
}

/* RFC 9110 5.1: a field name is a token. llhttp takes ": v" as a field
 * with an empty name; found by fuzzing the client, which had the same gap. */
static void test_field_line_without_a_name_is_refused(void **state) {
    (void)state;
    expect_refused("GET / HTTP/1.1\r\n: x\r\n" H "\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\n" H ": x\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\n" H ":\r\n\r\n", 400);
    expect_refused("GET / HTTP/1.1\r\n" H "X-A: a\r\n:x\r\nX-B: b\r\n\r\n", 400);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET / HTTP/1.1\r\n" H ": x\r\n\r\n");
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    assert_non_null(memmem(c.buf, c.len, "header field without a name", 27));
    client_close(&c);
}

static int setup(void **state) {
    (void)state;
    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "GET", "/", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/smuggled", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/where", h_where, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "FOO", "/ext", h_where, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "POST", "/echo", h_echo, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/count", h_count, NULL, 0), 0);
    server_start_with(&g_srv, r, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    server_stop(&g_srv, false);
    expect_no_handler_failures();
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extension_method_is_routed_not_rejected),
        cmocka_unit_test(test_lowercase_method_is_not_get),
        cmocka_unit_test(test_extension_method_split_across_reads_with_body),
        cmocka_unit_test(test_higher_http1_minor_version_is_served_as_1_1),
        cmocka_unit_test(test_other_major_version_gets_505),
        cmocka_unit_test(test_request_line_without_version_is_refused_at_once),
        cmocka_unit_test(test_options_asterisk_is_answered_by_the_server),
        cmocka_unit_test(test_fragment_in_target_is_ignored),
        cmocka_unit_test(test_invalid_host_value_is_rejected),
        cmocka_unit_test(test_valid_host_forms_are_accepted),
        cmocka_unit_test(test_transfer_coding_before_chunked_gets_501),
        cmocka_unit_test(test_transfer_encoding_without_final_chunked_never_reaches_the_handler),
        cmocka_unit_test(test_expect_100_continue_without_content_keeps_the_connection),
        cmocka_unit_test(test_field_line_without_a_name_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
