/* The HTTP server's everyday behaviour, over real sockets against one server
 * shared by the tests: keep-alive, HTTP/1.0, HEAD, 404 and 405, path and
 * query parameters, response header checks, pipelining, chunked bodies in
 * and out, server-sent events, 100-continue, files, and curl as a client. */
#include <stdint.h>

#include "http_harness.h"
#include "stderr_capture.h"

static test_server g_srv;
static int g_file_fd = -1;
static char *g_file_data;
#define FILE_LEN 100000

/* ---- Handlers ------------------------------------------------------------ */

static int h_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

static int h_user(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str id;
    HANDLER_CHECK(sp_http_req_param(req, "id", &id) == 0);
    return sp_http_resp_send(resp, 200, "text/plain", id.ptr, id.len);
}

/* "name=<decoded>;other=<decoded>;missing=<rc>" */
static int h_query(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str name = {"", 0}, other = {"", 0}, missing;
    sp_http_req_query(req, "name", &name);
    sp_http_req_query(req, "other", &other);
    int rc = sp_http_req_query(req, "missing", &missing);
    char body[512];
    int n = snprintf(body, sizeof(body), "name=%.*s;other=%.*s;missing=%d", (int)name.len, name.ptr,
                     (int)other.len, other.ptr, rc);
    return sp_http_resp_send(resp, 200, "text/plain", body, (size_t)n);
}

static int h_echo(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str body;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc;
    sp_str again;
    HANDLER_CHECK(sp_http_req_body(req, &again) == 0 && again.ptr == body.ptr);
    return sp_http_resp_send(resp, 200, "application/octet-stream", body.ptr, body.len);
}

/* Streams the body in; answers it with the piece count in X-Pieces. */
static int h_pieces(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    char *all = NULL;
    size_t len = 0, pieces = 0;
    for (;;) {
        sp_str piece;
        int rc = sp_http_req_read(req, &piece);
        if (rc != 0) {
            free(all);
            return rc;
        }
        if (piece.len == 0)
            break;
        all = realloc(all, len + piece.len);
        memcpy(all + len, piece.ptr, piece.len);
        len += piece.len;
        pieces++;
    }
    sp_str end;
    HANDLER_CHECK(sp_http_req_read(req, &end) == 0 && end.len == 0);
    char n[32];
    snprintf(n, sizeof(n), "%zu", pieces);
    sp_http_resp_header(resp, "X-Pieces", n);
    int rc = sp_http_resp_send(resp, 200, "application/octet-stream", all, len);
    free(all);
    return rc;
}

static int h_stream(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int rc = sp_http_resp_start(resp, 200, "text/plain");
    for (int i = 1; rc == 0 && i <= 5; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "piece %d\n", i);
        rc = sp_http_resp_write(resp, line, (size_t)n);
        if (rc == 0)
            rc = sp_sleep(0.01);
    }
    return rc ? rc : sp_http_resp_end(resp);
}

/* Two events; returning without sp_http_resp_end ends the stream too. */
static int h_events(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int rc = sp_http_sse_start(resp);
    if (rc == 0)
        rc = sp_http_sse_send(resp, "tick", "line 1\nline 2", "7");
    if (rc == 0)
        rc = sp_http_sse_send(resp, NULL, "plain", NULL);
    if (rc == 0)
        HANDLER_CHECK(sp_http_sse_send(resp, "bad\nevent", "x", NULL) == -EINVAL);
    return rc;
}

/* Tries to inject headers; reports the return codes in the body. */
static int h_inject(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int crlf = sp_http_resp_header(resp, "X-A", "ok\r\nSet-Cookie: evil=1");
    int lf = sp_http_resp_header(resp, "X-B", "ok\nX-Evil: 1");
    int cr = sp_http_resp_header(resp, "X-C", "ok\rX-Evil: 1");
    int name = sp_http_resp_header(resp, "X-D: evil\r\nX", "v");
    int space = sp_http_resp_header(resp, "Bad Name", "v");
    int empty = sp_http_resp_header(resp, "", "v");
    int good = sp_http_resp_header(resp, "X-Good", "fine");
    int length = sp_http_resp_header(resp, "content-length", "0");
    int te = sp_http_resp_header(resp, "Transfer-Encoding", "chunked");
    int ctype = sp_http_resp_send(resp, 200, "text/plain\r\nX-Evil: 1", "x", 1);
    char body[128];
    int n = snprintf(body, sizeof(body), "%d %d %d %d %d %d %d %d %d %d", crlf, lf, cr, name, space,
                     empty, good, length, te, ctype);
    int rc = sp_http_resp_send(resp, 200, "text/plain", body, (size_t)n);
    HANDLER_CHECK(sp_http_resp_header(resp, "X-Late", "v") == -EALREADY);
    HANDLER_CHECK(sp_http_resp_send(resp, 200, NULL, "", 0) == -EALREADY);
    return rc;
}

static int h_file(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send_file(resp, 200, "application/octet-stream", g_file_fd, 0, FILE_LEN);
}

static int h_file_part(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send_file(resp, 200, NULL, g_file_fd, 1000, 10);
}

/* Answers without reading the request body. */
static int h_ignore(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_text(resp, 200, "text/plain", "ignored");
}

/* Statuses without a body, given one anyway: ?status=204|304, ?stream=1. */
static int h_bodiless(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str v;
    int status = sp_http_req_query(req, "status", &v) == 0 ? atoi(v.ptr) : 204;
    if (sp_http_req_query(req, "stream", &v) != 0)
        return sp_http_resp_send(resp, status, "text/plain", "oops", 4);
    int rc = sp_http_resp_start(resp, status, "text/plain");
    if (rc == 0)
        rc = sp_http_resp_write(resp, "oops", 4);
    return rc ? rc : sp_http_resp_end(resp);
}

/* A body of announced length: ?len=N (announced), ?send=M (written, in
 * pieces of 3 bytes, then the handler returns without ending), ?over=1
 * (tries one byte past the length, then ends). */
static int h_sized(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str v;
    size_t len = sp_http_req_query(req, "len", &v) == 0 ? strtoul(v.ptr, NULL, 10) : 0;
    size_t send = sp_http_req_query(req, "send", &v) == 0 ? strtoul(v.ptr, NULL, 10) : len;
    bool over = sp_http_req_query(req, "over", &v) == 0;
    HANDLER_CHECK(sp_http_resp_write(resp, "x", 1) == -EINVAL); /* not started */
    int rc = sp_http_resp_start_length(resp, 200, "text/plain", len);
    for (size_t i = 0; rc == 0 && i < send; i += 3) {
        char piece[3] = {(char)('a' + i % 26), (char)('a' + (i + 1) % 26),
                         (char)('a' + (i + 2) % 26)};
        rc = sp_http_resp_write(resp, piece, send - i < 3 ? send - i : 3);
    }
    if (rc != 0 || send < len)
        return rc;
    if (over) {
        /* A HEAD answer has no body: its writes are no-ops. */
        bool head = sp_str_eq(sp_http_req_method(req), sp_str_c("HEAD"));
        HANDLER_CHECK(sp_http_resp_write(resp, "!", 1) == (head ? 0 : -EMSGSIZE));
    }
    return sp_http_resp_end(resp);
}

/* A content type longer than the usual head buffer. */
static int h_long_type(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    char ctype[2100];
    memcpy(ctype, "text/plain; x=", 14);
    memset(ctype + 14, 'y', sizeof(ctype) - 15);
    ctype[sizeof(ctype) - 1] = '\0';
    sp_http_resp_header(resp, "X-After", "present");
    return sp_http_resp_send(resp, 200, ctype, "long", 4);
}

/* ---- Helpers ------------------------------------------------------------- */

static void get_ok(client *c, const char *path, const char *want_body) {
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    client_sends(c, req);
    expect_status_body(c, 200, want_body);
}

/* ---- Connections ----------------------------------------------------------- */

static void test_keep_alive_serves_several_requests_on_one_connection(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    for (int i = 0; i < 5; i++) {
        get_ok(&c, "/", "Hello, World!");
        char v[64];
        response r;
        client_sends(&c, "GET /users/7 HTTP/1.1\r\nHost: t\r\n\r\n");
        expect_response(&c, &r, false);
        assert_false(response_header(&r, "Connection", v, sizeof(v)));
        assert_true(response_header(&r, "Date", v, sizeof(v)));
        assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
        assert_string_equal(v, "1");
        response_free(&r);
    }
    assert_true(client_silent_for(&c, 0.05));
    client_close(&c);
}

static void test_http10_request_closes_the_connection_by_default(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET / HTTP/1.0\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    char v[64];
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    response_free(&r);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    assert_int_equal(c.len, c.pos);
    client_close(&c);
}

static void test_http10_keep_alive_request_keeps_the_connection(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    for (int i = 0; i < 3; i++) {
        client_sends(&c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        response r;
        expect_response(&c, &r, false);
        assert_int_equal(r.status, 200);
        char v[64];
        assert_true(response_header(&r, "Connection", v, sizeof(v)));
        assert_string_equal(v, "keep-alive");
        assert_true(strncmp(r.head, "HTTP/1.1 200", 12) == 0);
        response_free(&r);
    }
    assert_true(client_silent_for(&c, 0.05));
    client_close(&c);
}

static void test_connection_close_request_closes_after_the_response(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    /* The second request, pipelined after "Connection: close", is never read. */
    client_sends(&c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                     "GET /users/2 HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    char v[64];
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    response_free(&r);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    assert_int_equal(c.len, c.pos);
    client_close(&c);
}

static void test_head_sends_content_length_without_body(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, true);
    assert_int_equal(r.status, 200);
    char v[64];
    assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
    assert_string_equal(v, "13");
    response_free(&r);
    /* No body bytes followed: the next response starts right away. */
    get_ok(&c, "/users/9", "9");
    client_close(&c);
}

static void test_unknown_path_gives_404_and_keeps_the_connection(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 404);
    char v[64];
    assert_false(response_header(&r, "Connection", v, sizeof(v)));
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_wrong_method_gives_405_with_allow(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "DELETE /users/3 HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 405);
    char v[64];
    assert_true(response_header(&r, "Allow", v, sizeof(v)));
    assert_string_equal(v, "GET, HEAD");
    response_free(&r);
    /* A 405 with a body to skip keeps the connection too. */
    client_sends(&c, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 405);
    assert_true(response_header(&r, "Allow", v, sizeof(v)));
    assert_string_equal(v, "POST");
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_dot_segments_and_double_slashes_are_resolved_as_nginx_does(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    get_ok(&c, "/users/../users/7", "7");
    get_ok(&c, "//users//8", "8");
    get_ok(&c, "/x/./../users/%2e%2e/users/9", "9");
    client_close(&c);
    /* Climbing above the root is refused, encoded or not. */
    assert_int_equal(
        request_once(g_srv.port, "GET /../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", NULL), 400);
    assert_int_equal(
        request_once(g_srv.port, "GET /users/%2e%2e/%2E%2E/x HTTP/1.1\r\nHost: t\r\n\r\n", NULL),
        400);
    expect_server_healthy(g_srv.port);
}

static void test_a_client_that_half_closes_after_its_request_is_answered_then_closed(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /users/5 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
    double t0 = now_s();
    /* The FIN came with the request: no idle keep-alive wait after the answer. */
    assert_int_equal(client_read_to_eof(&c, 2.0), 0);
    assert_true(now_s() - t0 < 1.0);
    assert_non_null(strstr(c.buf, "HTTP/1.1 200 OK"));
    client_close(&c);
}

static void test_path_params_reach_the_handler_decoded(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    get_ok(&c, "/users/42", "42");
    get_ok(&c, "/users/J%C3%B6rg%20B", "J\xc3\xb6rg B");
    get_ok(&c, "/users/a+b", "a+b");
    client_close(&c);
    char *body = NULL;
    /* A bad escape or an encoded NUL in the path is a bad request. */
    assert_int_equal(request_once(g_srv.port, "GET /users/%zz HTTP/1.1\r\nHost: t\r\n\r\n", NULL),
                     400);
    assert_int_equal(request_once(g_srv.port, "GET /users/a%00 HTTP/1.1\r\nHost: t\r\n\r\n", NULL),
                     400);
    assert_int_equal(request_once(g_srv.port, "GET /users/x HTTP/1.1\r\nHost: t\r\n\r\n", &body),
                     200);
    assert_string_equal(body, "x");
    free(body);
}

static void test_query_params_are_decoded(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    get_ok(&c, "/query?name=J%C3%B6rg+x%26y&other=1", "name=J\xc3\xb6rg x&y;other=1;missing=-2");
    get_ok(&c, "/query?a=1&%6eame=enc&other", "name=enc;other=;missing=-2");
    get_ok(&c, "/query", "name=;other=;missing=-2");
    client_close(&c);
}

static void test_response_header_injection_is_rejected(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /inject HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "-22 -22 -22 -22 -22 -22 0 -22 -22 -22");
    char v[64];
    assert_true(response_header(&r, "X-Good", v, sizeof(v)));
    assert_string_equal(v, "fine");
    assert_false(response_header(&r, "Set-Cookie", v, sizeof(v)));
    assert_false(response_header(&r, "X-Evil", v, sizeof(v)));
    assert_false(response_header(&r, "X-A", v, sizeof(v)));
    assert_true(response_header(&r, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "text/plain");
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_204_and_304_responses_carry_no_body(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    const char *paths[] = {"/bodiless?status=204", "/bodiless?status=304",
                           "/bodiless?status=204&stream=1", "/bodiless?status=304&stream=1"};
    for (int i = 0; i < 4; i++) {
        char req[128];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", paths[i]);
        client_sends(&c, req);
        response r;
        expect_response(&c, &r, false);
        assert_int_equal(r.status, i % 2 ? 304 : 204);
        char v[64];
        assert_false(response_header(&r, "Content-Length", v, sizeof(v)));
        assert_false(response_header(&r, "Transfer-Encoding", v, sizeof(v)));
        assert_false(response_header(&r, "Connection", v, sizeof(v)));
        response_free(&r);
        /* No body bytes: the next response follows at once. */
        get_ok(&c, "/", "Hello, World!");
    }
    client_close(&c);
}

static void test_long_content_type_is_sent_whole(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /long-type HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "long");
    char v[4096];
    assert_true(response_header(&r, "Content-Type", v, sizeof(v)));
    assert_int_equal(strlen(v), 2099);
    assert_true(response_header(&r, "X-After", v, sizeof(v)));
    assert_string_equal(v, "present");
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

/* ---- Pipelining ------------------------------------------------------------ */

static void test_pipelined_100_requests_answered_in_order(void **state) {
    (void)state;
    char *all = malloc(100 * 64);
    size_t len = 0;
    for (int i = 0; i < 100; i++)
        len += (size_t)sprintf(all + len, "GET /users/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    client c;
    client_connect(&c, g_srv.port);
    assert_int_equal(client_send(&c, all, len), 0);
    free(all);
    for (int i = 0; i < 100; i++) {
        response r;
        expect_response(&c, &r, false);
        assert_int_equal(r.status, 200);
        char want[16];
        snprintf(want, sizeof(want), "%d", i);
        assert_string_equal(r.body, want);
        response_free(&r);
    }
    assert_true(client_silent_for(&c, 0.05));
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_pipelined_requests_with_bodies_stay_in_step(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                     "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "2\r\nde\r\n0\r\n\r\n"
                     "POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nGET "
                     "GET /users/last HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *want[] = {"abc", "de", "ignored", "last"};
    for (int i = 0; i < 4; i++) {
        expect_status_body(&c, 200, want[i]);
    }
    assert_true(client_silent_for(&c, 0.05));
    client_close(&c);
}

/* ---- Bodies in ---------------------------------------------------------------- */

static void test_chunked_request_body_with_extensions_and_trailers(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5;name=val\r\nHello\r\n7\r\n, World\r\n1;x;y=z\r\n!\r\n0\r\n"
                     "X-Trailer: yes\r\nX-Other: 2\r\n\r\n");
    expect_status_body(&c, 200, "Hello, World!");
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_request_body_streamed_piece_by_piece(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /pieces HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    const char *chunks[] = {"4\r\nabcd\r\n", "3\r\nefg\r\n", "2\r\nhi\r\n", "0\r\n\r\n"};
    for (int i = 0; i < 4; i++) {
        sleep_s(0.02);
        client_sends(&c, chunks[i]);
    }
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "abcdefghi");
    char v[16];
    assert_true(response_header(&r, "X-Pieces", v, sizeof(v)));
    assert_string_equal(v, "3");
    response_free(&r);
    /* An empty body streams as no piece at all. */
    client_sends(&c, "POST /pieces HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_true(response_header(&r, "X-Pieces", v, sizeof(v)));
    assert_string_equal(v, "0");
    response_free(&r);
    client_close(&c);
}

/* A body much larger than the read buffer, arriving over many reads, both
 * with a length and chunked: the handler must see it byte for byte. */
static void test_large_body_arriving_in_many_reads_is_intact(void **state) {
    (void)state;
    size_t len = 300000;
    char *body = malloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)('a' + (i * 7 + i / 4096) % 26);
    for (int chunked = 0; chunked < 2; chunked++) {
        client c;
        client_connect(&c, g_srv.port);
        char head[256];
        if (chunked)
            snprintf(head, sizeof(head),
                     "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        else
            snprintf(head, sizeof(head),
                     "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", len);
        client_sends(&c, head);
        for (size_t off = 0; off < len; off += 5000) {
            size_t n = len - off < 5000 ? len - off : 5000;
            if (chunked) {
                char size[16];
                snprintf(size, sizeof(size), "%zx\r\n", n);
                client_sends(&c, size);
            }
            assert_int_equal(client_send(&c, body + off, n), 0);
            if (chunked)
                client_sends(&c, "\r\n");
            if (off % 50000 == 0)
                sleep_s(0.002);
        }
        if (chunked)
            client_sends(&c, "0\r\n\r\n");
        response r;
        expect_response(&c, &r, false);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, len);
        assert_memory_equal(r.body, body, len);
        response_free(&r);
        get_ok(&c, "/", "Hello, World!");
        client_close(&c);
    }
    free(body);
}

/* A head that exactly fills the first read buffer, its body arriving later. */
static void test_head_filling_the_read_buffer_leaves_room_for_the_body(void **state) {
    (void)state;
    char head[4097];
    int n = snprintf(head, sizeof(head),
                     "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nX-Fill: ");
    memset(head + n, 'f', 4096 - (size_t)n - 4);
    memcpy(head + 4092, "\r\n\r\n", 5);
    client c;
    client_connect(&c, g_srv.port);
    assert_int_equal(client_send(&c, head, 4096), 0);
    sleep_s(0.05);
    client_sends(&c, "hello");
    expect_status_body(&c, 200, "hello");
    client_close(&c);
}

static void test_unread_body_is_skipped_and_the_connection_kept(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_sends(&c, "0123456789");
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

/* Too large to read and drop: the response says the connection closes. */
static void test_large_unread_body_announces_the_close(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    char v[64];
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    response_free(&r);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    client_close(&c);
}

/* ---- Bodies out ---------------------------------------------------------------- */

static void test_stream_response_is_chunked(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    assert_int_equal(r.nchunks, 5);
    assert_string_equal(r.body, "piece 1\npiece 2\npiece 3\npiece 4\npiece 5\n");
    char v[64];
    assert_false(response_header(&r, "Content-Length", v, sizeof(v)));
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_stream_response_on_http10_is_close_delimited(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_false(r.chunked);
    assert_true(r.until_eof);
    assert_string_equal(r.body, "piece 1\npiece 2\npiece 3\npiece 4\npiece 5\n");
    char v[64];
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    response_free(&r);
    client_close(&c);
}

static void test_head_of_stream_response_has_no_body(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, true);
    assert_int_equal(r.status, 200);
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_stream_of_announced_length_has_content_length_and_keeps_alive(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /sized?len=10&over=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_false(r.chunked);
    char v[64];
    assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
    assert_string_equal(v, "10");
    assert_string_equal(r.body, "abcdefghij");
    response_free(&r);
    /* HTTP/1.0 keeps the connection too: the length frames the body. */
    client_sends(&c, "GET /sized?len=4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_response(&c, &r, false);
    assert_string_equal(r.body, "abcd");
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "keep-alive");
    response_free(&r);
    /* HEAD states the length a GET would have, and sends no body. */
    client_sends(&c, "HEAD /sized?len=1000&over=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(&c, &r, true);
    assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
    assert_string_equal(v, "1000");
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
    expect_no_handler_failures();
}

static void test_stream_short_of_its_length_closes_the_connection(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    stderr_capture cap;
    capture_begin(&cap);
    client_sends(&c, "GET /sized?len=10&send=4 HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    /* The client sees the length, four bytes, then the close: a cut body. */
    assert_int_equal(client_response(&c, &r, false, CLIENT_TIMEOUT), -EPROTO);
    response_free(&r);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    assert_non_null(memmem(c.buf, c.len, "Content-Length: 10\r\n", 20));
    assert_non_null(memmem(c.buf, c.len, "\r\n\r\nabcd", 8));
    assert_null(memmem(c.buf, c.len, "abcde", 5));
    client_close(&c);
    char *log = capture_end(&cap);
    assert_non_null(strstr(log, "returned 6 bytes short of its Content-Length"));
    free(log);
    expect_no_handler_failures();
}

static void test_server_sent_events(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    char v[64];
    assert_true(response_header(&r, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "text/event-stream");
    assert_true(response_header(&r, "Cache-Control", v, sizeof(v)));
    assert_string_equal(v, "no-cache");
    assert_string_equal(r.body,
                        "event: tick\nid: 7\ndata: line 1\ndata: line 2\n\ndata: plain\n\n");
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_send_file_sends_the_file(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "GET /file HTTP/1.1\r\nHost: t\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, FILE_LEN);
    assert_memory_equal(r.body, g_file_data, FILE_LEN);
    response_free(&r);
    client_sends(&c, "GET /file-part HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(&c, &r, false);
    assert_int_equal(r.body_len, 10);
    assert_memory_equal(r.body, g_file_data + 1000, 10);
    response_free(&r);
    client_sends(&c, "HEAD /file HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(&c, &r, true);
    char v[64];
    assert_true(response_header(&r, "Content-Length", v, sizeof(v)));
    assert_int_equal(atoi(v), FILE_LEN);
    response_free(&r);
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

/* ---- Expect: 100-continue --------------------------------------------------------- */

static void test_expect_100_continue_sends_100_then_the_response(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     "Expect: 100-continue\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 100);
    response_free(&r);
    client_sends(&c, "hello");
    expect_status_body(&c, 200, "hello");
    get_ok(&c, "/", "Hello, World!");
    client_close(&c);
}

static void test_expect_100_continue_unread_body_gets_no_100_and_closes(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     "Expect: 100-continue\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ignored");
    char v[64];
    assert_true(response_header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    response_free(&r);
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    assert_int_equal(c.pos, c.len);
    client_close(&c);
}

/* RFC 9110 10.1.1 lets a server answer an expectation it does not know with
 * 417 or ignore it; nginx ignores it, and so does Spindle. 100-continue is
 * found among others. */
static void test_unknown_expectation_is_ignored_as_nginx_does(void **state) {
    (void)state;
    char *body = NULL;
    assert_int_equal(request_once(g_srv.port,
                                  "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n"
                                  "Content-Length: 2\r\n\r\nhi",
                                  &body),
                     200);
    assert_string_equal(body, "hi");
    free(body);
    client c;
    client_connect(&c, g_srv.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: magic, 100-Continue\r\n"
                     "Content-Length: 2\r\n\r\n");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 100);
    response_free(&r);
    client_sends(&c, "hi");
    expect_status_body(&c, 200, "hi");
    client_close(&c);
}

/* ---- curl ------------------------------------------------------------------------ */

static void test_curl_get_post_chunked_upload_and_stream(void **state) {
    (void)state;
    char url[128], out[4096];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", g_srv.port);
    char *get[] = {"curl", "-sS", "--max-time", "5", url, NULL};
    assert_int_equal(run_capture(get, out, sizeof(out)), 0);
    assert_string_equal(out, "Hello, World!");

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", g_srv.port);
    char *post[] = {"curl", "-sS", "--max-time", "5", "--data-binary", "posted body", url, NULL};
    assert_int_equal(run_capture(post, out, sizeof(out)), 0);
    assert_string_equal(out, "posted body");

    char *chunked[] = {"curl",
                       "-sS",
                       "--max-time",
                       "5",
                       "-H",
                       "Transfer-Encoding: chunked",
                       "--data-binary",
                       "chunked upload",
                       url,
                       NULL};
    assert_int_equal(run_capture(chunked, out, sizeof(out)), 0);
    assert_string_equal(out, "chunked upload");

    char *expect[] = {
        "curl",           "-sS", "--max-time", "5", "-H", "Expect: 100-continue", "--data-binary",
        "after continue", url,   NULL};
    assert_int_equal(run_capture(expect, out, sizeof(out)), 0);
    assert_string_equal(out, "after continue");

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/stream", g_srv.port);
    char *stream[] = {"curl", "-sSN", "--max-time", "5", url, NULL};
    assert_int_equal(run_capture(stream, out, sizeof(out)), 0);
    assert_string_equal(out, "piece 1\npiece 2\npiece 3\npiece 4\npiece 5\n");

    /* Two URLs on one connection: curl reports reusing it. */
    char url2[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/users/1", g_srv.port);
    snprintf(url2, sizeof(url2), "http://127.0.0.1:%d/users/2", g_srv.port);
    char *two[] = {"curl", "-sS", "--max-time", "5", "-w", "[%{num_connects}]", url, url2, NULL};
    assert_int_equal(run_capture(two, out, sizeof(out)), 0);
    assert_string_equal(out, "1[1]2[0]");

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/nowhere", g_srv.port);
    char *missing[] = {"curl",      "-s", "--max-time",   "5", "-o",
                       "/dev/null", "-w", "%{http_code}", url, NULL};
    assert_int_equal(run_capture(missing, out, sizeof(out)), 0);
    assert_string_equal(out, "404");
}

/* ---- Setup ---------------------------------------------------------------------- */

static int setup(void **state) {
    (void)state;
    char path[] = "/tmp/sp-http-file-XXXXXX";
    g_file_fd = mkstemp(path);
    assert_true(g_file_fd >= 0);
    unlink(path);
    g_file_data = malloc(FILE_LEN);
    for (size_t i = 0; i < FILE_LEN; i++)
        g_file_data[i] = (char)(i * 31 + i / 1000);
    assert_int_equal(write(g_file_fd, g_file_data, FILE_LEN), FILE_LEN);

    sp_router *r = new_router();
    assert_int_equal(sp_router_add(r, "GET", "/", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/users/:id", h_user, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/query", h_query, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "POST", "/echo", h_echo, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "POST", "/pieces", h_pieces, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "POST", "/ignore", h_ignore, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/stream", h_stream, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/events", h_events, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/inject", h_inject, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/file", h_file, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/file-part", h_file_part, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/long-type", h_long_type, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/bodiless", h_bodiless, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/sized", h_sized, NULL, 0), 0);
    server_start_with(&g_srv, r, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    server_stop(&g_srv, false);
    expect_no_handler_failures();
    close(g_file_fd);
    free(g_file_data);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_alive_serves_several_requests_on_one_connection),
        cmocka_unit_test(test_http10_request_closes_the_connection_by_default),
        cmocka_unit_test(test_http10_keep_alive_request_keeps_the_connection),
        cmocka_unit_test(test_connection_close_request_closes_after_the_response),
        cmocka_unit_test(test_head_sends_content_length_without_body),
        cmocka_unit_test(test_unknown_path_gives_404_and_keeps_the_connection),
        cmocka_unit_test(test_wrong_method_gives_405_with_allow),
        cmocka_unit_test(test_path_params_reach_the_handler_decoded),
        cmocka_unit_test(test_a_client_that_half_closes_after_its_request_is_answered_then_closed),
        cmocka_unit_test(test_dot_segments_and_double_slashes_are_resolved_as_nginx_does),
        cmocka_unit_test(test_query_params_are_decoded),
        cmocka_unit_test(test_response_header_injection_is_rejected),
        cmocka_unit_test(test_204_and_304_responses_carry_no_body),
        cmocka_unit_test(test_long_content_type_is_sent_whole),
        cmocka_unit_test(test_pipelined_100_requests_answered_in_order),
        cmocka_unit_test(test_pipelined_requests_with_bodies_stay_in_step),
        cmocka_unit_test(test_chunked_request_body_with_extensions_and_trailers),
        cmocka_unit_test(test_request_body_streamed_piece_by_piece),
        cmocka_unit_test(test_large_body_arriving_in_many_reads_is_intact),
        cmocka_unit_test(test_head_filling_the_read_buffer_leaves_room_for_the_body),
        cmocka_unit_test(test_unread_body_is_skipped_and_the_connection_kept),
        cmocka_unit_test(test_large_unread_body_announces_the_close),
        cmocka_unit_test(test_stream_response_is_chunked),
        cmocka_unit_test(test_stream_response_on_http10_is_close_delimited),
        cmocka_unit_test(test_head_of_stream_response_has_no_body),
        cmocka_unit_test(test_stream_of_announced_length_has_content_length_and_keeps_alive),
        cmocka_unit_test(test_stream_short_of_its_length_closes_the_connection),
        cmocka_unit_test(test_server_sent_events),
        cmocka_unit_test(test_send_file_sends_the_file),
        cmocka_unit_test(test_expect_100_continue_sends_100_then_the_response),
        cmocka_unit_test(test_expect_100_continue_unread_body_gets_no_100_and_closes),
        cmocka_unit_test(test_unknown_expectation_is_ignored_as_nginx_does),
        cmocka_unit_test(test_curl_get_post_chunked_upload_and_stream),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
