/* apps/upstream as a black box: started as a child process on ephemeral
 * ports, each behaviour checked over raw sockets (delays, failures, hangs,
 * trickling, large bodies, echo, the raw port's resets and garbage), then
 * stopped with SIGTERM. */
#include "http_harness.h"

typedef struct upstream_proc {
    pid_t pid;
    int out_fd;
    int port, raw_port;
} upstream_proc;

static upstream_proc g_up;

static const char *upstream_path(void) {
    static char path[512];
    const char *dir = getenv("SP_APPS_DIR");
    snprintf(path, sizeof(path), "%s/upstream", dir ? dir : ".");
    return path;
}

/* Reads the child's stdout until it has printed n lines. */
static void read_lines(int fd, char *out, size_t cap, int n) {
    size_t len = 0;
    int lines = 0;
    double end = now_s() + CLIENT_TIMEOUT;
    while (lines < n && len < cap - 1 && now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t got = read(fd, out + len, 1);
        if (got <= 0)
            break;
        if (out[len++] == '\n')
            lines++;
    }
    out[len] = '\0';
}

static int setup(void **state) {
    (void)state;
    char *argv[] = {
        (char *)upstream_path(), "--port", "0", "--workers", "2", "--name", "alpha", NULL};
    g_up.pid = spawn_child(argv, &g_up.out_fd);
    /* "upstream: listening on http://127.0.0.1:PORT/ ..." then the raw port. */
    char out[512];
    read_lines(g_up.out_fd, out, sizeof(out), 2);
    const char *url = strstr(out, "listening on http://");
    const char *raw = strstr(out, "raw port on http://");
    if (!url || sscanf(url, "listening on http://%*[^:]:%d/", &g_up.port) != 1 || !raw ||
        sscanf(raw, "raw port on http://%*[^:]:%d/", &g_up.raw_port) != 1)
        fail_msg("upstream printed '%s'", out);
    return 0;
}

/* ---- Helpers ------------------------------------------------------------------ */

/* GET path on a new connection; returns the status, *r holds the response. */
static int fetch(int port, const char *path, response *r) {
    client c;
    client_connect(&c, port);
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    client_sends(&c, req);
    expect_response(&c, r, false);
    client_close(&c);
    return r->status;
}

static void expect_header(const response *r, const char *name, const char *want) {
    char v[128];
    if (!response_header(r, name, v, sizeof(v)))
        fail_msg("no %s header in '%s'", name, r->head);
    assert_string_equal(v, want);
}

/* A count from /stats. */
static long stat(const char *name) {
    response r;
    assert_int_equal(fetch(g_up.port, "/stats", &r), 200);
    char key[32];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *p = strstr(r.body, key);
    assert_non_null(p);
    long n = atol(p + strlen(key));
    response_free(&r);
    return n;
}

/* Polls /stats until the count is want. The counts change as handlers
 * return, just after a client received their answer. */
static void expect_stat(const char *name, long want) {
    double end = now_s() + CLIENT_TIMEOUT;
    long n;
    while ((n = stat(name)) != want && now_s() < end)
        sleep_s(0.01);
    if (n != want)
        fail_msg("%s is %ld, want %ld", name, n, want);
}

/* ---- /data ------------------------------------------------------------------- */

static void test_data_answers_json_after_the_requested_delay(void **state) {
    (void)state;
    response r;
    double t0 = now_s();
    assert_int_equal(fetch(g_up.port, "/data?delay_ms=200&name=users", &r), 200);
    double took = now_s() - t0;
    assert_true(took >= 0.2 && took < 1.0);
    expect_header(&r, "Content-Type", "application/json");
    char want[256];
    snprintf(want, sizeof(want),
             "{\"source\":\"users\",\"delay_ms\":200,\"pid\":%d,\"items\":["
             "{\"id\":1,\"name\":\"users 1\"},{\"id\":2,\"name\":\"users 2\"},"
             "{\"id\":3,\"name\":\"users 3\"}]}\n",
             (int)g_up.pid);
    assert_string_equal(r.body, want);
    response_free(&r);
}

static void test_delays_of_concurrent_requests_overlap(void **state) {
    (void)state;
    enum { N = 8 };
    client c[N];
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        client_connect(&c[i], g_up.port);
        client_sends(&c[i], "GET /data?delay_ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for (int i = 0; i < N; i++) {
        response r;
        expect_response(&c[i], &r, false);
        assert_int_equal(r.status, 200);
        response_free(&r);
        client_close(&c[i]);
    }
    double took = now_s() - t0;
    assert_true(took >= 0.3 && took < 0.9);
}

static void test_data_defaults_to_the_name_flag(void **state) {
    (void)state;
    response r;
    assert_int_equal(fetch(g_up.port, "/data?items=0", &r), 200);
    char want[128];
    snprintf(want, sizeof(want), "{\"source\":\"alpha\",\"delay_ms\":0,\"pid\":%d,\"items\":[]}\n",
             (int)g_up.pid);
    assert_string_equal(r.body, want);
    response_free(&r);
}

static void test_fail_answers_that_status_with_a_json_error_after_the_delay(void **state) {
    (void)state;
    response r;
    double t0 = now_s();
    assert_int_equal(fetch(g_up.port, "/data?fail=503&delay_ms=100&name=db", &r), 503);
    assert_true(now_s() - t0 >= 0.1);
    char want[160];
    snprintf(want, sizeof(want),
             "{\"source\":\"db\",\"delay_ms\":100,\"pid\":%d,\"error\":\"requested failure\","
             "\"status\":503}\n",
             (int)g_up.pid);
    assert_string_equal(r.body, want);
    response_free(&r);
}

static void test_bad_parameters_get_400(void **state) {
    (void)state;
    const char *bad[] = {"/data?fail=200",    "/data?fail=600", "/data?delay_ms=-1",
                         "/data?delay_ms=1x", "/data?items=",   "/data?items=1001",
                         "/data?name=a%22b",  "/data?hang=2",   "/data?trickle=yes",
                         "/big?bytes=-5",     "/big?chunked=2", "/data?name="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        response r;
        int status = fetch(g_up.port, bad[i], &r);
        if (status != 400)
            fail_msg("%s: status %d", bad[i], status);
        assert_non_null(strstr(r.body, "{\"error\":"));
        response_free(&r);
    }
}

static void test_hang_never_answers_and_ends_when_the_client_leaves(void **state) {
    (void)state;
    expect_stat("in_flight", 0);
    client c;
    client_connect(&c, g_up.port);
    client_sends(&c, "GET /data?hang=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(client_silent_for(&c, 0.3));
    expect_stat("in_flight", 1);
    client_close(&c);
    /* The handler's sleep is cancelled: nothing is left in flight. */
    expect_stat("in_flight", 0);
}

static void test_trickle_sends_one_byte_per_100_ms(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_up.port);
    client_sends(&c, "GET /data?items=0&trickle=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    double end = now_s() + CLIENT_TIMEOUT;
    ssize_t he = client_wait_for(&c, 0, "\r\n\r\n", end);
    assert_true(he > 0);
    assert_non_null(memmem(c.buf, (size_t)he, "Transfer-Encoding: chunked", 26));
    /* Each byte is its own chunk, "1\r\nX\r\n": note when the first and the
     * fourth are complete. */
    size_t body = (size_t)he + 4;
    double first = 0, fourth = 0;
    while (!fourth && now_s() < end) {
        if (!first && c.len >= body + 6)
            first = now_s();
        if (c.len >= body + 4 * 6)
            fourth = now_s();
        else
            assert_true(client_fill(&c, end - now_s()) > 0);
    }
    assert_true(first > 0 && fourth > 0);
    assert_true(fourth - first >= 0.25 && fourth - first < 0.6);
    assert_memory_equal(c.buf + body, "1\r\n{\r\n1\r\n\"\r\n1\r\ns\r\n1\r\no\r\n", 24);
    client_close(&c);
}

static void test_reset_asked_on_the_http_port_points_to_the_raw_port(void **state) {
    (void)state;
    response r;
    assert_int_equal(fetch(g_up.port, "/data?reset=1", &r), 400);
    char want[32];
    snprintf(want, sizeof(want), "\"raw_port\":%d}", g_up.raw_port);
    assert_non_null(strstr(r.body, want));
    response_free(&r);
}

/* ---- /big, /echo, /stats ---------------------------------------------------- */

/* True if body is the start of /big's pattern: 64-byte lines of 'a' to 'p'. */
static bool big_pattern(const response *r) {
    for (size_t i = 0; i < r->body_len; i++) {
        if (r->body[i] != (i % 64 == 63 ? '\n' : 'a' + (char)(i / 64 % 16)))
            return false;
    }
    return true;
}

static void test_big_sends_the_requested_bytes(void **state) {
    (void)state;
    response r;
    assert_int_equal(fetch(g_up.port, "/big?bytes=100000", &r), 200);
    expect_header(&r, "Content-Length", "100000");
    assert_int_equal(r.body_len, 100000);
    assert_true(big_pattern(&r));
    response_free(&r);

    /* Above 1 MiB: streamed with its length, the pattern carrying on across
     * its pieces. */
    assert_int_equal(fetch(g_up.port, "/big?bytes=3145739", &r), 200);
    assert_false(r.chunked);
    expect_header(&r, "Content-Length", "3145739");
    assert_int_equal(r.body_len, 3145739);
    assert_true(big_pattern(&r));
    response_free(&r);

    assert_int_equal(fetch(g_up.port, "/big?bytes=10&chunked=1", &r), 200);
    assert_true(r.chunked);
    assert_string_equal(r.body, "aaaaaaaaaa");
    response_free(&r);

    assert_int_equal(fetch(g_up.port, "/big?bytes=0", &r), 200);
    expect_header(&r, "Content-Length", "0");
    response_free(&r);
}

static void test_echo_returns_the_body_and_its_type(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_up.port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-demo\r\n"
                     "Content-Length: 11\r\n\r\nhello world");
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello world");
    expect_header(&r, "Content-Type", "text/x-demo");
    response_free(&r);
    client_close(&c);
}

static void test_stats_counts_answered_requests(void **state) {
    (void)state;
    response r;
    assert_int_equal(fetch(g_up.port, "/stats", &r), 200);
    char want[64];
    snprintf(want, sizeof(want), "{\"name\":\"alpha\",\"pid\":%d,", (int)g_up.pid);
    assert_true(strncmp(r.body, want, strlen(want)) == 0);
    response_free(&r);
    expect_stat("in_flight", 0);
    long before = stat("answered");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fetch(g_up.port, "/data", &r), 200);
        response_free(&r);
    }
    /* /stats does not count itself. */
    expect_stat("answered", before + 3);
}

/* ---- The raw port -------------------------------------------------------------- */

static void test_reset_on_the_raw_port_resets_the_connection(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_up.raw_port);
    client_sends(&c, "GET /data?name=x&reset=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    assert_int_equal(c.err, ECONNRESET);
    assert_int_equal(c.len, 0);
    client_close(&c);
}

static void test_malformed_on_the_raw_port_sends_a_garbage_status_line(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_up.raw_port);
    client_sends(&c, "GET /data?malformed=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(client_read_to_eof(&c, CLIENT_TIMEOUT), 0);
    assert_int_equal(c.err, 0);
    assert_true(c.len > 12);
    /* No three-digit status after the version. */
    assert_memory_equal(c.buf, "HTTP/1.1 2x0", 12);
    client_close(&c);
}

static void test_raw_port_answers_404_to_other_requests(void **state) {
    (void)state;
    response r;
    /* reset=10 and xreset=1 are not reset=1. */
    assert_int_equal(fetch(g_up.raw_port, "/data?reset=10&xreset=1", &r), 404);
    assert_string_equal(r.body, "{\"error\":\"ask for ?reset=1 or ?malformed=1\"}\n");
    response_free(&r);
}

static void test_raw_port_drops_a_client_that_leaves_mid_head(void **state) {
    (void)state;
    client c;
    client_connect(&c, g_up.raw_port);
    client_sends(&c, "GET /data?reset=1 HTTP/1.1\r\n");
    client_close(&c);
    response r;
    assert_int_equal(fetch(g_up.raw_port, "/", &r), 404);
    response_free(&r);
}

/* ---- Flags and shutdown ----------------------------------------------------------- */

static void test_help_and_bad_flags(void **state) {
    (void)state;
    char out[2048];
    char *help[] = {(char *)upstream_path(), "--help", NULL};
    assert_int_equal(run_capture(help, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "usage: upstream"));
    assert_non_null(strstr(out, "--raw-port"));
    char *bogus[] = {(char *)upstream_path(), "--bogus", NULL};
    assert_int_equal(run_capture(bogus, out, sizeof(out)), 2);
    char *bad_name[] = {(char *)upstream_path(), "--name", "a\"b", NULL};
    assert_int_equal(run_capture(bad_name, out, sizeof(out)), 2);
    char *extra[] = {(char *)upstream_path(), "stray", NULL};
    assert_int_equal(run_capture(extra, out, sizeof(out)), 2);
}

static void test_sigterm_stops_both_ports_and_exits_0(void **state) {
    (void)state;
    /* A request in flight is finished first. */
    client c;
    client_connect(&c, g_up.port);
    client_sends(&c, "GET /data?delay_ms=200 HTTP/1.1\r\nHost: t\r\n\r\n");
    sleep_s(0.05);
    assert_int_equal(kill(g_up.pid, SIGTERM), 0);
    response r;
    expect_response(&c, &r, false);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(&c);
    assert_int_equal(finish_child(g_up.pid, g_up.out_fd, NULL, 0), 0);
    g_up.pid = 0;
    assert_int_equal(client_try_connect(&c, g_up.raw_port), -ECONNREFUSED);
}

/* A test that failed before the SIGTERM one leaves the child running. */
static int teardown(void **state) {
    (void)state;
    if (g_up.pid > 0) {
        kill(g_up.pid, SIGKILL);
        finish_child(g_up.pid, g_up.out_fd, NULL, 0);
    }
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_answers_json_after_the_requested_delay),
        cmocka_unit_test(test_delays_of_concurrent_requests_overlap),
        cmocka_unit_test(test_data_defaults_to_the_name_flag),
        cmocka_unit_test(test_fail_answers_that_status_with_a_json_error_after_the_delay),
        cmocka_unit_test(test_bad_parameters_get_400),
        cmocka_unit_test(test_hang_never_answers_and_ends_when_the_client_leaves),
        cmocka_unit_test(test_trickle_sends_one_byte_per_100_ms),
        cmocka_unit_test(test_reset_asked_on_the_http_port_points_to_the_raw_port),
        cmocka_unit_test(test_big_sends_the_requested_bytes),
        cmocka_unit_test(test_echo_returns_the_body_and_its_type),
        cmocka_unit_test(test_stats_counts_answered_requests),
        cmocka_unit_test(test_reset_on_the_raw_port_resets_the_connection),
        cmocka_unit_test(test_malformed_on_the_raw_port_sends_a_garbage_status_line),
        cmocka_unit_test(test_raw_port_answers_404_to_other_requests),
        cmocka_unit_test(test_raw_port_drops_a_client_that_leaves_mid_head),
        cmocka_unit_test(test_help_and_bad_flags),
        cmocka_unit_test(test_sigterm_stops_both_ports_and_exits_0),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
