/* The HTTP client against Spindle's own server: GET and POST, headers,
 * chunked and streamed bodies, HEAD and 204, the response size limit, name
 * resolution through /etc/hosts, IPv6, and the pool: keep-alive reuse counted
 * on the upstream, a cap per origin with FIFO waiters (asyncio.Semaphore's
 * order, cancelled waiters included), idle expiry, and connections the
 * upstream closed while pooled. */
#include "client_harness.h"

static test_server g_srv;
static test_server g_srv6; /* on ::1 */

/* ---- The upstream's connections, told apart by the client's port ---------------- */

static pthread_mutex_t g_peers_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_peers[256];
static int g_npeers;

static void peers_reset(void) {
    pthread_mutex_lock(&g_peers_mu);
    g_npeers = 0;
    pthread_mutex_unlock(&g_peers_mu);
}

static int peers_count(void) {
    pthread_mutex_lock(&g_peers_mu);
    int n = g_npeers;
    pthread_mutex_unlock(&g_peers_mu);
    return n;
}

static int mw_count_peers(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg) {
    (void)arg;
    socklen_t len;
    const struct sockaddr *sa = sp_http_req_peer(req, &len);
    int port = sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                                        : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    pthread_mutex_lock(&g_peers_mu);
    bool seen = false;
    for (int i = 0; i < g_npeers; i++)
        seen |= g_peers[i] == port;
    if (!seen && g_npeers < 256)
        g_peers[g_npeers++] = port;
    pthread_mutex_unlock(&g_peers_mu);
    return sp_http_next_call(next, req, resp);
}

/* ---- Handlers ------------------------------------------------------------------ */

static int h_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    sp_http_resp_header(resp, "X-Hello", "yes");
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

/* The body back, and what the request looked like in headers. */
static int h_echo(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str body, m = sp_http_req_method(req), v;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc;
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%.*s", (int)m.len, m.ptr);
    sp_http_resp_header(resp, "X-Method", tmp);
    if (sp_http_req_header(req, "X-Test", &v) == 0) {
        snprintf(tmp, sizeof(tmp), "%.*s", (int)v.len, v.ptr);
        sp_http_resp_header(resp, "X-Test-Was", tmp);
    }
    if (sp_http_req_header(req, "Host", &v) == 0) {
        snprintf(tmp, sizeof(tmp), "%.*s", (int)v.len, v.ptr);
        sp_http_resp_header(resp, "X-Host-Was", tmp);
    }
    sp_str target = sp_http_req_target(req);
    snprintf(tmp, sizeof(tmp), "%.*s", (int)target.len, target.ptr);
    sp_http_resp_header(resp, "X-Target-Was", tmp);
    return sp_http_resp_send(resp, 200, "application/octet-stream", body.ptr, body.len);
}

static int h_chunked(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int rc = sp_http_resp_start(resp, 200, "text/plain");
    const char *parts[] = {"first,", "second,", "third"};
    for (int i = 0; i < 3 && rc == 0; i++) {
        rc = sp_http_resp_write(resp, parts[i], strlen(parts[i]));
        if (rc == 0)
            rc = sp_sleep(0.02);
    }
    return rc ? rc : sp_http_resp_end(resp);
}

static int h_nocontent(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 204, NULL, NULL, 0);
}

/* ?n= bytes of 'b' (default 1 MiB). */
static int h_big(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str v;
    size_t n = 1 << 20;
    if (sp_http_req_query(req, "n", &v) == 0)
        n = strtoul(v.ptr, NULL, 10);
    char *b = malloc(n ? n : 1);
    memset(b, 'b', n);
    int rc = sp_http_resp_send(resp, 200, "application/octet-stream", b, n);
    free(b);
    return rc;
}

/* Answers after ?ms= milliseconds. */
static int h_slow(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str v;
    int ms = 0;
    if (sp_http_req_query(req, "ms", &v) == 0)
        ms = atoi(v.ptr);
    int rc = sp_sleep(ms / 1000.0);
    return rc ? rc : sp_http_resp_text(resp, 200, "text/plain", "slow");
}

static sp_router *make_router(void) {
    sp_router *r = new_router();
    assert_int_equal(sp_router_use(r, mw_count_peers, NULL), 0);
    assert_int_equal(sp_router_add(r, "GET", "/hello", h_hello, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "*", "/echo", h_echo, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/chunked", h_chunked, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/nocontent", h_nocontent, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/big", h_big, NULL, 0), 0);
    assert_int_equal(sp_router_add(r, "GET", "/slow", h_slow, NULL, 0), 0);
    return r;
}

/* Idle keep-alive connections close after 0.3 s: the pool tests need an
 * upstream that closes its end. */
static void short_idle(sp_http_config *cfg) {
    cfg->idle_timeout = 0.3;
}

static void v6_config(sp_http_config *cfg) {
    cfg->host = "::1";
    cfg->idle_timeout = 0.3;
}

static int setup(void **state) {
    (void)state;
    server_start_with(&g_srv, make_router(), short_idle);
    server_start_with(&g_srv6, make_router(), v6_config);
    return 0;
}

/* A graceful stop: the clients' last connections may be closing just now. */
static int teardown(void **state) {
    (void)state;
    server_stop(&g_srv, false);
    server_stop(&g_srv6, false);
    return 0;
}

static const char *url(char *buf, const char *path) {
    return url_of(buf, 128, g_srv.port, path);
}

static void expect_header(sp_http_client_resp *resp, const char *name, const char *want) {
    sp_str v;
    if (sp_http_client_resp_header(resp, name, &v) != 0)
        fail_msg("no header %s", name);
    if (!sp_str_eq(v, sp_str_c(want)))
        fail_msg("header %s: '%.*s', want '%s'", name, (int)v.len, v.ptr, want);
}

static void expect_body(sp_http_client_resp *resp, const char *want) {
    sp_str b;
    assert_int_equal(sp_http_client_resp_body(resp, &b, NULL), 0);
    if (!sp_str_eq(b, sp_str_c(want)))
        fail_msg("body '%.*s', want '%s'", (int)b.len, b.ptr, want);
}

/* ---- Requests and responses ---------------------------------------------------- */

static int get_status_headers_body_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128];
    sp_http_client_resp *resp;
    sp_http_client_error err;
    assert_int_equal(sp_http_client_get(cl, url(u, "/hello"), &resp, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(sp_http_client_resp_status(resp), 200);
    assert_int_equal(sp_http_client_resp_version(resp), 11);
    expect_header(resp, "x-hello", "yes"); /* any case */
    expect_header(resp, "CONTENT-LENGTH", "13");
    expect_header(resp, "Content-Type", "text/plain");
    sp_str v;
    assert_int_equal(sp_http_client_resp_header(resp, "X-Missing", &v), -ENOENT);
    size_t n = sp_http_client_resp_header_count(resp);
    assert_true(n >= 4); /* Date, Content-Type, Content-Length, X-Hello */
    bool saw_hello = false;
    for (size_t i = 0; i < n; i++) {
        sp_str name, value;
        assert_int_equal(sp_http_client_resp_header_at(resp, i, &name, &value), 0);
        saw_hello |= sp_str_eq(name, sp_str_c("X-Hello")) && sp_str_eq(value, sp_str_c("yes"));
    }
    assert_true(saw_hello);
    sp_str name;
    assert_int_equal(sp_http_client_resp_header_at(resp, n, &name, &v), -ENOENT);
    expect_body(resp, "Hello, World!");
    /* Read whole, the body also comes as one piece, then the end. */
    sp_str piece;
    assert_int_equal(sp_http_client_resp_read(resp, &piece, NULL), 0);
    assert_true(sp_str_eq(piece, sp_str_c("Hello, World!")));
    assert_int_equal(sp_http_client_resp_read(resp, &piece, NULL), 0);
    assert_int_equal(piece.len, 0);
    sp_http_client_resp_free(resp);

    /* A 404 is a response, not an error. */
    assert_int_equal(get_text(cl, url(u, "/nowhere"), NULL, 0), 404);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_get_returns_status_headers_and_body(void **state) {
    (void)state;
    run_main(get_status_headers_body_main, NULL);
}

static int post_echo_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128];
    const sp_http_field hdrs[] = {SP_HTTP_FIELD("X-Test", "forty-two"),
                                  SP_HTTP_FIELD("Content-Type", "text/plain")};
    sp_http_request req = {.method = "POST",
                           .url = url(u, "/echo?x=1"),
                           .headers = hdrs,
                           .nheaders = 2,
                           .body = "the body",
                           .body_len = 8};
    sp_http_client_resp *resp;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    assert_int_equal(sp_http_client_resp_status(resp), 200);
    expect_header(resp, "X-Method", "POST");
    expect_header(resp, "X-Test-Was", "forty-two");
    expect_header(resp, "X-Target-Was", "/echo?x=1");
    char host[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", g_srv.port);
    expect_header(resp, "X-Host-Was", host);
    expect_body(resp, "the body");
    sp_http_client_resp_free(resp);

    /* A POST without a body still says Content-Length: 0; a large body goes
     * out whole. */
    req.body = NULL;
    req.body_len = 0;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    expect_body(resp, "");
    sp_http_client_resp_free(resp);
    size_t big = 600 * 1024;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    req.method = "PUT";
    req.body = data;
    req.body_len = big;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    expect_header(resp, "X-Method", "PUT");
    sp_str b;
    assert_int_equal(sp_http_client_resp_body(resp, &b, NULL), 0);
    assert_int_equal(b.len, big);
    assert_memory_equal(b.ptr, data, big);
    sp_http_client_resp_free(resp);
    free(data);

    /* A URL without a path asks for "/", with a query "/?q". */
    req = (sp_http_request){.url = host};
    snprintf(host, sizeof(host), "http://127.0.0.1:%d?q=1", g_srv.port);
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    assert_int_equal(sp_http_client_resp_status(resp), 404);
    sp_http_client_resp_free(resp);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_post_and_put_send_body_headers_and_host(void **state) {
    (void)state;
    run_main(post_echo_main, NULL);
}

static int bad_requests_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_http_client_resp *resp = (sp_http_client_resp *)1;
    sp_http_client_error err;
    const char *bad_urls[] = {"127.0.0.1/x",     "ftp://h/x",     "http:///x",    "http://h:0/",
                              "http://h:70000/", "http://u@h/",   "http://h/a b", "http://[::1/",
                              "http://h:/",      "http://h\x01/x"};
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        assert_int_equal(sp_http_client_get(cl, bad_urls[i], &resp, &err), -EINVAL);
        assert_null(resp);
        assert_int_equal(err.code, -EINVAL);
        assert_true(err.msg[0] != '\0');
    }
    assert_int_equal(sp_http_client_get(cl, "https://h/", &resp, &err), -EPROTONOSUPPORT);
    char u[128];
    sp_http_field inj[] = {SP_HTTP_FIELD("X-A", "a\r\nX-Injected: 1")};
    sp_http_request req = {.url = url(u, "/hello"), .headers = inj, .nheaders = 1};
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), -EINVAL);
    sp_http_field framing[] = {SP_HTTP_FIELD("content-length", "5")};
    req.headers = framing;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), -EINVAL);
    sp_http_field badname[] = {SP_HTTP_FIELD("X A", "1")};
    req.headers = badname;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), -EINVAL);
    req = (sp_http_request){.url = u, .method = "GE T"};
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), -EINVAL);
    req.method = "CONNECT";
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), -EINVAL);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_bad_url_method_or_header_is_einval(void **state) {
    (void)state;
    run_main(bad_requests_main, NULL);
}

static int chunked_head_204_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128], body[128];
    assert_int_equal(get_text(cl, url(u, "/chunked"), body, sizeof(body)), 200);
    assert_string_equal(body, "first,second,third");

    sp_http_request req = {.method = "HEAD", .url = url(u, "/hello")};
    sp_http_client_resp *resp;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    assert_int_equal(sp_http_client_resp_status(resp), 200);
    expect_header(resp, "Content-Length", "13"); /* announced, not sent */
    expect_body(resp, "");
    sp_http_client_resp_free(resp);

    assert_int_equal(get_text(cl, url(u, "/nocontent"), body, sizeof(body)), 204);
    assert_string_equal(body, "");
    /* All on one connection: each response ended where it should. */
    assert_int_equal(get_text(cl, url(u, "/hello"), body, sizeof(body)), 200);
    assert_string_equal(body, "Hello, World!");
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 1);
    assert_int_equal(st.reused, 3);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_chunked_head_and_204_responses_keep_the_connection(void **state) {
    (void)state;
    run_main(chunked_head_204_main, NULL);
}

static int streaming_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128];
    sp_http_request req = {.url = url(u, "/chunked"), .stream = true};
    sp_http_client_resp *resp;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    assert_int_equal(sp_http_client_resp_status(resp), 200);
    expect_header(resp, "Transfer-Encoding", "chunked");
    char all[128] = "";
    int pieces = 0;
    for (;;) {
        sp_str piece;
        assert_int_equal(sp_http_client_resp_read(resp, &piece, NULL), 0);
        if (piece.len == 0)
            break;
        strncat(all, piece.ptr, piece.len);
        pieces++;
    }
    assert_string_equal(all, "first,second,third");
    assert_true(pieces >= 2); /* the pieces came 20 ms apart */
    /* The header views survived the reads. */
    expect_header(resp, "Content-Type", "text/plain");
    sp_str b;
    assert_int_equal(sp_http_client_resp_body(resp, &b, NULL), -EALREADY);
    sp_http_client_resp_free(resp);

    /* A streamed 1 MiB body: pieces as they come, in a buffer that does not
     * grow to the body's size. */
    req.url = url(u, "/big");
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    size_t total = 0;
    for (;;) {
        sp_str piece;
        assert_int_equal(sp_http_client_resp_read(resp, &piece, NULL), 0);
        if (piece.len == 0)
            break;
        assert_true(piece.len <= 64 * 1024);
        for (size_t i = 0; i < piece.len; i++)
            assert_true(piece.ptr[i] == 'b');
        total += piece.len;
    }
    assert_int_equal(total, 1 << 20);
    sp_http_client_resp_free(resp);

    /* Streamed, then read whole. */
    req.url = url(u, "/chunked");
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    expect_body(resp, "first,second,third");
    sp_http_client_resp_free(resp);
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 1);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_streamed_body_arrives_in_pieces(void **state) {
    (void)state;
    run_main(streaming_main, NULL);
}

static void small_max(sp_http_client_config *cfg) {
    cfg->max_response_bytes = 1000;
}

static int max_size_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(small_max);
    char u[128];
    sp_http_client_resp *resp;
    sp_http_client_error err;
    assert_int_equal(sp_http_client_get(cl, url(u, "/big?n=1000"), &resp, &err), 0);
    sp_http_client_resp_free(resp);
    assert_int_equal(sp_http_client_get(cl, url(u, "/big?n=1001"), &resp, &err), -EMSGSIZE);
    assert_non_null(strstr(err.msg, "max_response_bytes"));
    /* Per request, and for a chunked body too. */
    sp_http_request req = {.url = url(u, "/chunked"), .max_response_bytes = 10};
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), -EMSGSIZE);
    req.max_response_bytes = 18;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), 0);
    sp_http_client_resp_free(resp);
    /* A streamed body read whole is held to it; streamed pieces are not. */
    req = (sp_http_request){.url = url(u, "/big?n=5000"), .stream = true};
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), 0);
    sp_str b;
    assert_int_equal(sp_http_client_resp_body(resp, &b, &err), -EMSGSIZE);
    assert_int_equal(err.code, -EMSGSIZE);
    assert_int_equal(sp_http_client_resp_body(resp, &b, &err), -EMSGSIZE); /* it sticks */
    sp_http_client_resp_free(resp);
    assert_int_equal(sp_http_client_request(cl, &req, &resp, &err), 0);
    size_t total = 0;
    sp_str piece;
    while (sp_http_client_resp_read(resp, &piece, NULL) == 0 && piece.len)
        total += piece.len;
    assert_int_equal(total, 5000);
    sp_http_client_resp_free(resp);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_body_over_max_response_bytes_is_emsgsize(void **state) {
    (void)state;
    run_main(max_size_main, NULL);
}

/* The task's error message is the client's. */
static int failing_task(void *arg, void **result) {
    (void)result;
    sp_http_client *cl = arg;
    char u[128];
    sp_http_client_resp *resp;
    return sp_http_client_get(cl, url_of(u, sizeof(u), dead_port(), "/"), &resp, NULL);
}

static int task_message_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    sp_task *t = spawn(failing_task, cl);
    assert_int_equal(sp_task_await(t, NULL), -ECONNREFUSED);
    const char *msg = NULL;
    assert_int_equal(sp_task_error(t, &msg), -ECONNREFUSED);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "connection refused by 127.0.0.1:"));
    sp_task_release(t);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_failure_message_is_the_tasks_error_message(void **state) {
    (void)state;
    run_main(task_message_main, NULL);
}

/* ---- Names and addresses ------------------------------------------------------------ */

static int localhost_ipv6_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128], body[64];
    snprintf(u, sizeof(u), "http://localhost:%d/hello", g_srv.port);
    assert_int_equal(get_text(cl, u, body, sizeof(body)), 200);
    assert_string_equal(body, "Hello, World!");
    snprintf(u, sizeof(u), "http://LocalHost:%d/hello", g_srv.port); /* the same origin */
    assert_int_equal(get_text(cl, u, body, sizeof(body)), 200);
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 1);

    snprintf(u, sizeof(u), "http://[::1]:%d/echo", g_srv6.port);
    sp_http_client_resp *resp;
    assert_int_equal(sp_http_client_get(cl, u, &resp, NULL), 0);
    assert_int_equal(sp_http_client_resp_status(resp), 200);
    char host[64];
    snprintf(host, sizeof(host), "[::1]:%d", g_srv6.port);
    expect_header(resp, "X-Host-Was", host);
    sp_http_client_resp_free(resp);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_localhost_resolves_from_etc_hosts_and_ipv6_literal_connects(void **state) {
    (void)state;
    run_main(localhost_ipv6_main, NULL);
}

/* ---- Pool ------------------------------------------------------------------------ */

static int sequential_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    peers_reset();
    char u[128], body[64];
    for (int i = 0; i < 50; i++) {
        assert_int_equal(get_text(cl, url(u, "/hello"), body, sizeof(body)), 200);
        assert_string_equal(body, "Hello, World!");
    }
    assert_int_equal(peers_count(), 1);
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 1);
    assert_int_equal(st.reused, 49);
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.idle, 1);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_50_sequential_requests_use_one_connection(void **state) {
    (void)state;
    run_main(sequential_main, NULL);
}

static void max4(sp_http_client_config *cfg) {
    cfg->max_conns_per_origin = 4;
}

static int concurrent_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(max4);
    peers_reset();
    fetch f[20];
    sp_task *t[20];
    memset(f, 0, sizeof(f));
    for (int i = 0; i < 20; i++) {
        f[i].cl = cl;
        f[i].free_at_once = true;
        url(f[i].url, "/slow?ms=30");
        t[i] = spawn(fetch_task, &f[i]);
    }
    sp_yield();
    sp_yield();
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.waiting, 16);
    assert_int_equal(sp_gather(t, 20, 0, NULL, NULL), 0);
    release_all(t, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(f[i].rc, 0);
        assert_int_equal(f[i].status, 200);
    }
    assert_true(peers_count() <= 4);
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 4);
    assert_int_equal(st.connections, 4);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_20_concurrent_requests_share_at_most_4_connections(void **state) {
    (void)state;
    run_main(concurrent_main, NULL);
}

static void max1(sp_http_client_config *cfg) {
    cfg->max_conns_per_origin = 1;
}

/* The queue follows asyncio.Semaphore(1) (CPython 3.11). Python: A holds the
 * semaphore; tasks B, C, D each `await sem.acquire()` (log "<n> cancelled"
 * on CancelledError, else "<n> got it", sleep 0.01, release); after a
 * sleep(0), either C.cancel(), sleep(0), sem.release(), giving
 * ['C cancelled', 'B got it', 'D got it']; or sem.release(); B.cancel() (B
 * woken, cancelled before it runs), giving ['B cancelled', 'C got it',
 * 'D got it']. */
static int fifo_main(void *arg, void **result) {
    (void)result;
    bool cancel_after_wakeup = arg != NULL;
    sp_http_client *cl = new_client(max1);
    char u[128];
    /* A holds the only connection: its streamed response is not freed. */
    sp_http_request req = {.url = url(u, "/hello"), .stream = true};
    sp_http_client_resp *held;
    assert_int_equal(sp_http_client_request(cl, &req, &held, NULL), 0);
    fetch f[3];
    sp_task *t[3];
    memset(f, 0, sizeof(f));
    const char *names[] = {"B", "C", "D"};
    for (int i = 0; i < 3; i++) {
        f[i].cl = cl;
        f[i].name = names[i];
        f[i].free_at_once = true;
        url(f[i].url, "/hello");
        t[i] = spawn(fetch_task, &f[i]);
    }
    sp_yield();
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.waiting, 3);
    sp_str b;
    assert_int_equal(sp_http_client_resp_body(held, &b, NULL), 0);
    if (cancel_after_wakeup) {
        sp_http_client_resp_free(held); /* B is handed the connection... */
        sp_task_cancel(t[0]);           /* ...and cancelled before it runs */
    } else {
        sp_task_cancel(t[1]);
        sp_yield();
        sp_http_client_get_stats(cl, &st);
        assert_int_equal(st.waiting, 2); /* C left the queue */
        sp_http_client_resp_free(held);
    }
    assert_int_equal(sp_gather(t, 3, SP_GATHER_RETURN_EXCEPTIONS, NULL, NULL), 0);
    release_all(t, 3);
    if (cancel_after_wakeup)
        expect_log("B cancelled", "C got it", "D got it");
    else
        expect_log("C cancelled", "B got it", "D got it");
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 1);
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_waiters_are_served_fifo_and_a_cancelled_one_leaves_the_queue(void **state) {
    (void)state;
    run_main(fifo_main, NULL);
}

static void test_waiter_cancelled_after_wakeup_passes_the_connection_on(void **state) {
    (void)state;
    run_main(fifo_main, (void *)1);
}

static void wait_100ms(sp_http_client_config *cfg) {
    cfg->max_conns_per_origin = 1;
    cfg->connect_timeout = 0.1;
}

static int pool_wait_timeout_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(wait_100ms);
    char u[128];
    sp_http_request req = {.url = url(u, "/hello"), .stream = true};
    sp_http_client_resp *held, *resp;
    sp_http_client_error err;
    assert_int_equal(sp_http_client_request(cl, &req, &held, NULL), 0);
    double t0 = now_s();
    assert_int_equal(sp_http_client_get(cl, u, &resp, &err), -ETIMEDOUT);
    assert_true(now_s() - t0 < 1.0);
    assert_non_null(strstr(err.msg, "waiting for a pooled connection"));
    sp_http_client_resp_free(held);
    assert_int_equal(get_text(cl, u, NULL, 0), 200);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_waiting_for_a_pooled_connection_times_out(void **state) {
    (void)state;
    run_main(pool_wait_timeout_main, NULL);
}

static void idle_100ms(sp_http_client_config *cfg) {
    cfg->idle_timeout = 0.1;
}

static int idle_expiry_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(idle_100ms);
    char u[128];
    assert_int_equal(get_text(cl, url(u, "/hello"), NULL, 0), 200);
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.idle, 1);
    /* Kept busy, a connection outlives its idle timeout. */
    for (int i = 0; i < 6; i++) {
        sp_sleep(0.03);
        assert_int_equal(get_text(cl, u, NULL, 0), 200);
    }
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 1);
    sp_sleep(0.25);
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.connections, 0);
    assert_int_equal(st.idle, 0);
    assert_int_equal(get_text(cl, u, NULL, 0), 200);
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 2);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_idle_connection_expires(void **state) {
    (void)state;
    run_main(idle_expiry_main, NULL);
}

static int upstream_closed_idle_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    peers_reset();
    char u[128];
    assert_int_equal(get_text(cl, url(u, "/hello"), NULL, 0), 200);
    /* The server closes its idle connection after 0.3 s; the pool notices
     * while the loop runs. */
    sp_sleep(0.5);
    sp_http_client_stats st;
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.connections, 0);
    assert_int_equal(get_text(cl, u, NULL, 0), 200);

    /* Here the loop is kept from running (a blocking sleep) while the
     * server closes: the peek before reuse finds it closed, for a POST as
     * for a GET, and a fresh connection carries the request. */
    sleep_s(0.5);
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.connections, 1);
    sp_http_request req = {.method = "POST", .url = url(u, "/echo"), .body = "x", .body_len = 1};
    sp_http_client_resp *resp;
    assert_int_equal(sp_http_client_request(cl, &req, &resp, NULL), 0);
    expect_body(resp, "x");
    sp_http_client_resp_free(resp);
    sp_http_client_get_stats(cl, &st);
    assert_int_equal(st.opened, 3);
    assert_int_equal(st.reused, 0);
    assert_int_equal(peers_count(), 3);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_connection_closed_by_upstream_while_pooled_is_replaced(void **state) {
    (void)state;
    run_main(upstream_closed_idle_main, NULL);
}

static int busy_destroy_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl = new_client(NULL);
    char u[128];
    sp_http_client_resp *resp;
    assert_int_equal(sp_http_client_get(cl, url(u, "/hello"), &resp, NULL), 0);
    assert_int_equal(sp_http_client_destroy(cl), -EBUSY);
    sp_http_client_resp_free(resp);
    assert_int_equal(sp_http_client_destroy(cl), 0);
    return 0;
}

static void test_destroy_with_a_response_alive_is_ebusy(void **state) {
    (void)state;
    run_main(busy_destroy_main, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_returns_status_headers_and_body),
        cmocka_unit_test(test_post_and_put_send_body_headers_and_host),
        cmocka_unit_test(test_bad_url_method_or_header_is_einval),
        cmocka_unit_test(test_chunked_head_and_204_responses_keep_the_connection),
        cmocka_unit_test(test_streamed_body_arrives_in_pieces),
        cmocka_unit_test(test_body_over_max_response_bytes_is_emsgsize),
        cmocka_unit_test(test_failure_message_is_the_tasks_error_message),
        cmocka_unit_test(test_localhost_resolves_from_etc_hosts_and_ipv6_literal_connects),
        cmocka_unit_test(test_50_sequential_requests_use_one_connection),
        cmocka_unit_test(test_20_concurrent_requests_share_at_most_4_connections),
        cmocka_unit_test(test_waiters_are_served_fifo_and_a_cancelled_one_leaves_the_queue),
        cmocka_unit_test(test_waiter_cancelled_after_wakeup_passes_the_connection_on),
        cmocka_unit_test(test_waiting_for_a_pooled_connection_times_out),
        cmocka_unit_test(test_idle_connection_expires),
        cmocka_unit_test(test_connection_closed_by_upstream_while_pooled_is_replaced),
        cmocka_unit_test(test_destroy_with_a_response_alive_is_ebusy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
