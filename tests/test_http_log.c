/* The server's logs: one access log line per answered request (common and
 * JSON formats, to a file), and an error log line for each refused request. */
#include <spindle/log.h>

#include "http_harness.h"
#include "stderr_capture.h"

static int h_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_text(resp, 200, "text/plain", "hi");
}

static char g_log_path[64];

static void cfg_json_log(sp_http_config *cfg) {
    cfg->access_log = SP_ACCESS_LOG_JSON;
    cfg->access_log_path = g_log_path;
}

static void cfg_common_log(sp_http_config *cfg) {
    cfg->access_log = SP_ACCESS_LOG_COMMON;
    cfg->access_log_path = g_log_path;
}

static char *read_log(void) {
    sp_log_flush();
    FILE *f = fopen(g_log_path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void run_requests(void (*cfg_fn)(sp_http_config *)) {
    snprintf(g_log_path, sizeof(g_log_path), "/tmp/sp-access-%d.log", (int)getpid());
    unlink(g_log_path);
    sp_router *r = new_router();
    sp_router_add(r, "GET", "/hello", h_hello, NULL, 0);
    test_server ts;
    server_start_with(&ts, r, cfg_fn);
    client c;
    client_connect(&c, ts.port);
    client_sends(&c, "GET /hello?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: agent \"7\"\r\n\r\n");
    response resp;
    expect_response(&c, &resp, false);
    assert_int_equal(resp.status, 200);
    response_free(&resp);
    client_sends(&c, "GET /missing HTTP/1.1\r\nHost: t\r\nReferer: http://r/\r\n\r\n");
    expect_response(&c, &resp, false);
    assert_int_equal(resp.status, 404);
    response_free(&resp);
    client_close(&c);
    server_stop(&ts, false);
}

static void test_access_log_json_has_one_line_per_request(void **state) {
    (void)state;
    run_requests(cfg_json_log);
    char *log = read_log();
    assert_non_null(strstr(log,
                           "\"method\":\"GET\",\"target\":\"/hello?x=1\",\"proto\":\"HTTP/1.1\","
                           "\"status\":200,\"bytes\":2,"));
    assert_non_null(strstr(log, "\"user_agent\":\"agent \\\"7\\\"\""));
    assert_non_null(strstr(log, "\"target\":\"/missing\""));
    assert_non_null(strstr(log, "\"status\":404"));
    assert_non_null(strstr(log, "\"referer\":\"http://r/\""));
    size_t lines = 0;
    for (char *p = log; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2);
    free(log);
    sp_log_open_access(NULL);
    unlink(g_log_path);
}

static void test_access_log_common_format_escapes_quotes(void **state) {
    (void)state;
    run_requests(cfg_common_log);
    char *log = read_log();
    assert_non_null(strstr(log, "127.0.0.1 - - ["));
    assert_non_null(strstr(log, "\"GET /hello?x=1 HTTP/1.1\" 200 2 \"-\" \"agent \\x227\\x22\""));
    assert_non_null(strstr(log, "\"GET /missing HTTP/1.1\" 404 "));
    free(log);
    sp_log_open_access(NULL);
    unlink(g_log_path);
}

static void test_refused_request_is_answered_and_logged(void **state) {
    (void)state;
    sp_router *r = new_router();
    sp_router_add(r, "GET", "/hello", h_hello, NULL, 0);
    test_server ts;
    server_start_with(&ts, r, NULL);
    stderr_capture cap;
    capture_begin(&cap);
    char *body = NULL;
    int status = request_once(ts.port, "GET /hello HTTP/1.1\r\n\r\n", &body);
    free(body);
    char *err = capture_end(&cap);
    assert_int_equal(status, 400);
    assert_non_null(strstr(err, "[info]"));
    assert_non_null(strstr(err, "client 127.0.0.1: 400 Bad Request: missing Host header"));
    free(err);
    server_stop(&ts, false);
}

static void test_bad_access_log_settings_are_refused(void **state) {
    (void)state;
    sp_http_config cfg;
    test_config(&cfg);
    sp_router *r = new_router();
    sp_http_server *srv;
    cfg.access_log = 7;
    assert_int_equal(sp_http_server_create(&srv, &cfg, r), -EINVAL);
    cfg.access_log = SP_ACCESS_LOG_JSON;
    cfg.access_log_path = "/nonexistent-dir/access.log";
    assert_int_equal(sp_http_server_create(&srv, &cfg, r), -ENOENT);
    cfg.access_log = SP_ACCESS_LOG_OFF;
    cfg.max_headers = SP_HTTP_MAX_HEADERS + 1;
    assert_int_equal(sp_http_server_create(&srv, &cfg, r), -EINVAL);
    sp_router_destroy(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_log_json_has_one_line_per_request),
        cmocka_unit_test(test_access_log_common_format_escapes_quotes),
        cmocka_unit_test(test_refused_request_is_answered_and_logged),
        cmocka_unit_test(test_bad_access_log_settings_are_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sp_log_shutdown();
    return rc;
}
