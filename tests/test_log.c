/* Tests of the error and access logs: levels, exact line formats under a
 * fixed clock, escaping that keeps every line one line (and valid JSON), many
 * threads, a writer stuck on a full pipe, flushing, shutdown and rotation. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "sp_test.h"

/* Test hook in core/log.c: fixes the clock (0 restores the real one). */
void sp_log_test_set_time(int64_t unix_ns);

/* 2026-11-27T23:40:01.123Z */
#define FIXED_NS (1795822801LL * 1000000000 + 123456789)

#define S(lit) ((sp_str){(lit), sizeof(lit) - 1})

static sp_str str_of(const char *s) {
    return (sp_str){s, strlen(s)};
}

static char tmp_paths[4][96];

/* A fresh temporary path per slot, removed by the teardown. */
static const char *tmp_path(int slot) {
    snprintf(tmp_paths[slot], sizeof(tmp_paths[slot]), "/tmp/sp-log-%d-%d", (int)getpid(), slot);
    unlink(tmp_paths[slot]);
    return tmp_paths[slot];
}

static int teardown(void **state) {
    (void)state;
    sp_log_shutdown();
    sp_log_test_set_time(0);
    for (int i = 0; i < 4; i++) {
        if (tmp_paths[i][0] != '\0') {
            char old[sizeof(tmp_paths) + 4];
            snprintf(old, sizeof(old), "%s.1", tmp_paths[i]);
            unlink(old);
            unlink(tmp_paths[i]);
        }
        tmp_paths[i][0] = '\0';
    }
    return 0;
}

/* The whole file, NUL-terminated (malloc'ed; "" if missing). */
static char *slurp(const char *path) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd = open(path, O_RDONLY);
    for (;;) {
        if (cap - len < 65536) {
            cap = cap * 2 + 65536;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t n = fd >= 0 ? read(fd, buf + len, cap - len) : 0;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    buf[len] = '\0';
    return buf;
}

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int flush_fn(void *arg, void **result) {
    (void)arg, (void)result;
    return sp_log_flush();
}

/* sp_log_flush blocks: from a task it goes through the thread pool. */
static void flush_from_task(void) {
    assert_int_equal(sp_to_thread(flush_fn, NULL, NULL, NULL), 0);
}

/* ---- A small JSON checker: objects of strings, numbers and null ---- */

static size_t utf8_len_check(const unsigned char *s) {
    unsigned char c = s[0];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xc2 && c <= 0xdf ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (len == 3) {
        unsigned cp = (c & 0x0fu) << 12 | (s[1] & 0x3fu) << 6 | (s[2] & 0x3fu);
        if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    }
    if (len == 4) {
        unsigned cp =
            (c & 0x07u) << 18 | (s[1] & 0x3fu) << 12 | (s[2] & 0x3fu) << 6 | (s[3] & 0x3fu);
        if (cp < 0x10000 || cp > 0x10ffff)
            return 0;
    }
    return len;
}

static bool json_string(const unsigned char **pp) {
    const unsigned char *p = *pp;
    if (*p++ != '"')
        return false;
    for (;;) {
        if (*p == '"')
            break;
        if (*p < 0x20)
            return false;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || p[i] == '\0')
                        return false;
                p += 5;
            } else if (*p != '\0' && strchr("\"\\/bfnrt", *p)) {
                p++;
            } else {
                return false;
            }
            continue;
        }
        size_t n = utf8_len_check(p);
        if (n == 0)
            return false;
        p += n;
    }
    *pp = p + 1;
    return true;
}

static bool json_value(const unsigned char **pp) {
    const unsigned char *p = *pp;
    if (*p == '"')
        return json_string(pp);
    if (strncmp((const char *)p, "null", 4) == 0) {
        *pp = p + 4;
        return true;
    }
    if (*p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    *pp = p;
    return true;
}

/* Whether line (up to its '\n' or NUL) is one valid JSON object of scalar values. */
static bool json_line_valid(const char *line) {
    const unsigned char *p = (const unsigned char *)line;
    if (*p++ != '{')
        return false;
    for (;;) {
        if (!json_string(&p) || *p++ != ':' || !json_value(&p))
            return false;
        if (*p == ',') {
            p++;
            continue;
        }
        return p[0] == '}' && (p[1] == '\n' || p[1] == '\0');
    }
}

/* ---- Error log ---- */

static void test_error_log_filters_levels_below_minimum(void **state) {
    (void)state;
    const char *path = tmp_path(0);
    assert_int_equal(sp_log_open_error(path), 0);
    assert_int_equal(sp_log_set_level(SP_LOG_WARN), 0);
    sp_log(SP_LOG_DEBUG, "debug line");
    sp_log(SP_LOG_INFO, "info line");
    sp_log(SP_LOG_WARN, "warn line");
    sp_log(SP_LOG_ERROR, "error line");
    assert_int_equal(sp_log_set_level(SP_LOG_DEBUG), 0);
    sp_log(SP_LOG_DEBUG, "debug again");
    assert_int_equal(sp_log_set_level((sp_log_level)7), -EINVAL);
    assert_int_equal(sp_log_set_level((sp_log_level)-1), -EINVAL);
    assert_int_equal(sp_log_flush(), 0);
    char *out = slurp(path);
    assert_null(strstr(out, "debug line"));
    assert_null(strstr(out, "info line"));
    assert_non_null(strstr(out, "[warn] warn line\n"));
    assert_non_null(strstr(out, "[error] error line\n"));
    assert_non_null(strstr(out, "[debug] debug again\n"));
    assert_int_equal(count_lines(out), 3);
    free(out);
}

static void test_error_line_format_with_fixed_clock_and_tag(void **state) {
    (void)state;
    const char *path = tmp_path(0);
    assert_int_equal(sp_log_open_error(path), 0);
    sp_log_test_set_time(FIXED_NS);
    sp_log(SP_LOG_INFO, "no tag %d", 1);
    assert_int_equal(sp_log_set_tag("worker 1"), 0);
    sp_log(SP_LOG_WARN, "message");
    assert_int_equal(sp_log_set_tag("bad\ntag"), 0);
    sp_log(SP_LOG_ERROR, "split\nline\x01 \"kept\" caf\xc3\xa9");
    assert_int_equal(sp_log_set_tag(NULL), 0);
    sp_log(SP_LOG_DEBUG, "below the default level");
    assert_int_equal(sp_log_flush(), 0);
    char *out = slurp(path);
    assert_string_equal(out, "2026-11-27T23:40:01.123Z [info] no tag 1\n"
                             "2026-11-27T23:40:01.123Z [warn] worker 1: message\n"
                             "2026-11-27T23:40:01.123Z [error] bad?tag: split\\x0Aline\\x01 "
                             "\"kept\" caf\xc3\xa9\n");
    free(out);
}

static void test_long_error_message_is_cut_at_4_kib(void **state) {
    (void)state;
    const char *path = tmp_path(0);
    assert_int_equal(sp_log_open_error(path), 0);
    char *big = malloc(10000);
    memset(big, 'm', 9999);
    big[9999] = '\0';
    sp_log(SP_LOG_INFO, "%s", big);
    sp_log(SP_LOG_INFO, "after");
    assert_int_equal(sp_log_flush(), 0);
    char *out = slurp(path);
    assert_int_equal(count_lines(out), 2);
    char *m = strchr(out, 'm');
    assert_non_null(m);
    assert_int_equal(strspn(m, "m"), 4095);
    assert_memory_equal(m + 4095, "...\n", 4);
    assert_non_null(strstr(out, "[info] after\n"));
    free(out);
    free(big);
}

static void test_open_failures_return_errno_and_keep_destination(void **state) {
    (void)state;
    const char *path = tmp_path(0);
    assert_int_equal(sp_log_open_error(path), 0);
    assert_int_equal(sp_log_open_error("/nonexistent-dir/error.log"), -ENOENT);
    assert_int_equal(sp_log_open_access("/nonexistent-dir/access.log"), -ENOENT);
    assert_false(sp_log_access_enabled());
    assert_int_equal(sp_log_set_access_format((sp_access_format)5), -EINVAL);
    sp_log(SP_LOG_WARN, "still here");
    assert_int_equal(sp_log_flush(), 0);
    char *out = slurp(path);
    assert_non_null(strstr(out, "[warn] still here\n"));
    free(out);
}

/* ---- Access log formats ---- */

static sp_access_entry curl_entry(void) {
    return (sp_access_entry){
        .remote = S("127.0.0.1"),
        .method = S("GET"),
        .target = S("/"),
        .proto = S("HTTP/1.1"),
        .status = 200,
        .bytes = 13,
        .duration = 0.000123,
        .user_agent = S("curl/7.88.1"),
    };
}

/* Logs the entries in `format` under the fixed clock and returns the file. */
static char *access_lines(sp_access_format format, const sp_access_entry *e, size_t n) {
    const char *path = tmp_path(1);
    assert_int_equal(sp_log_open_access(path), 0);
    assert_int_equal(sp_log_set_access_format(format), 0);
    sp_log_test_set_time(FIXED_NS);
    for (size_t i = 0; i < n; i++)
        sp_log_access(&e[i]);
    assert_int_equal(sp_log_flush(), 0);
    return slurp(path);
}

static void test_access_common_format_matches_nginx_combined(void **state) {
    (void)state;
    sp_access_entry e[3] = {curl_entry(), curl_entry(), {.status = 400, .duration = -1}};
    e[1].status = 404;
    e[1].bytes = 0;
    e[1].duration = 2.25;
    e[1].referer = S("http://example.com/");
    e[1].method = S("POST");
    e[1].target = S("/api?x=1&y=2");
    char *out = access_lines(SP_ACCESS_COMMON, e, 3);
    assert_string_equal(out, "127.0.0.1 - - [27/Nov/2026:23:40:01 +0000] \"GET / HTTP/1.1\" 200 13 "
                             "\"-\" \"curl/7.88.1\" 0.000\n"
                             "127.0.0.1 - - [27/Nov/2026:23:40:01 +0000] \"POST /api?x=1&y=2 "
                             "HTTP/1.1\" 404 0 \"http://example.com/\" \"curl/7.88.1\" 2.250\n"
                             "- - - [27/Nov/2026:23:40:01 +0000] \"-\" 400 0 \"-\" \"-\" 0.000\n");
    free(out);
}

static void test_access_json_format_exact_line(void **state) {
    (void)state;
    sp_access_entry e[2] = {curl_entry(), {.status = 400, .target = S(""), .duration = 1e12}};
    char *out = access_lines(SP_ACCESS_JSON, e, 2);
    assert_string_equal(
        out, "{\"time\":\"2026-11-27T23:40:01.123Z\",\"remote\":\"127.0.0.1\",\"method\":\"GET\","
             "\"target\":\"/\",\"proto\":\"HTTP/1.1\",\"status\":200,\"bytes\":13,"
             "\"duration\":0.000123,\"referer\":null,\"user_agent\":\"curl/7.88.1\"}\n"
             "{\"time\":\"2026-11-27T23:40:01.123Z\",\"remote\":null,\"method\":null,"
             "\"target\":\"\",\"proto\":null,\"status\":400,\"bytes\":0,"
             "\"duration\":1000000000.000000,\"referer\":null,\"user_agent\":null}\n");
    char *second = strchr(out, '\n') + 1;
    assert_true(json_line_valid(out));
    assert_true(json_line_valid(second));
    free(out);
}

static void test_peer_sockaddr_is_spelled_when_remote_is_absent(void **state) {
    (void)state;
    struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "192.168.10.255", &in4.sin_addr);
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/run/x.sock"};
    sp_access_entry e[4] = {
        {.peer = (struct sockaddr *)&in4, .status = 200},
        {.peer = (struct sockaddr *)&in6, .status = 200},
        {.peer = (struct sockaddr *)&un, .status = 200},
        {.remote = S("10.0.0.1"), .peer = (struct sockaddr *)&in4, .status = 200},
    };
    char *out = access_lines(SP_ACCESS_COMMON, e, 4);
    const char *want[] = {"192.168.10.255 - - [", "2001:db8::1 - - [", "unix: - - [",
                          "10.0.0.1 - - ["};
    const char *line = out;
    for (int i = 0; i < 4; i++) {
        assert_memory_equal(line, want[i], strlen(want[i]));
        line = strchr(line, '\n') + 1;
    }
    free(out);
}

/* Quotes, backslashes, line breaks, control bytes, DEL, valid UTF-8 (2 and 4
 * bytes) and invalid UTF-8: a lone continuation byte, an overlong '/', an
 * encoded surrogate, a 0xff, a sequence cut by the end of the field. */
#define NASTY                                                                                      \
    "a\"b\\c\nd\re\x01\x7f"                                                                        \
    "caf\xc3\xa9 \xf0\x9f\x98\x80 \x80 \xc0\xaf \xed\xa0\x80 \xff \xe2\x82"

static void test_common_format_escapes_nasty_bytes_as_nginx(void **state) {
    (void)state;
    sp_access_entry e = {.remote = S("1.2.3.4\n"),
                         .method = S("G\"T"),
                         .target = S(NASTY),
                         .proto = S("HTTP/1.1"),
                         .status = 200,
                         .user_agent = S(NASTY)};
    char *out = access_lines(SP_ACCESS_COMMON, &e, 1);
    const char *esc = "a\\x22b\\x5Cc\\x0Ad\\x0De\\x01\\x7Fcaf\\xC3\\xA9 \\xF0\\x9F\\x98\\x80 \\x80 "
                      "\\xC0\\xAF \\xED\\xA0\\x80 \\xFF \\xE2\\x82";
    char want[1024];
    snprintf(want, sizeof(want),
             "1.2.3.4\\x0A - - [27/Nov/2026:23:40:01 +0000] \"G\\x22T %s HTTP/1.1\" 200 0 "
             "\"-\" \"%s\" 0.000\n",
             esc, esc);
    assert_string_equal(out, want);
    free(out);
}

static void test_json_format_escapes_nasty_bytes_into_valid_json(void **state) {
    (void)state;
    sp_access_entry e = {.target = S(NASTY), .status = 200, .referer = S("")};
    char *out = access_lines(SP_ACCESS_JSON, &e, 1);
    assert_int_equal(count_lines(out), 1);
    assert_true(json_line_valid(out));
    assert_non_null(strstr(out, "\"target\":\"a\\\"b\\\\c\\u000ad\\u000de\\u0001\\u007f"
                                "caf\xc3\xa9 \xf0\x9f\x98\x80 \\ufffd \\ufffd\\ufffd "
                                "\\ufffd\\ufffd\\ufffd \\ufffd \\ufffd\\ufffd\","));
    assert_non_null(strstr(out, "\"referer\":\"\","));
    free(out);
}

static void test_random_bytes_always_give_one_valid_line_each(void **state) {
    (void)state;
    enum { N = 2000 };
    static sp_access_entry e[N];
    static unsigned char bytes[N][3][40];
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        for (int f = 0; f < 3; f++)
            for (int j = 0; j < 40; j++) {
                seed = seed * 1103515245 + 12345;
                /* Mostly the bytes that matter: controls, quotes, high bytes. */
                unsigned r = seed >> 16;
                bytes[i][f][j] =
                    (unsigned char)(r % 3 == 0
                                        ? (unsigned char)"\"\\\n\r\x80\xc3\xed\xf0\xff"[r % 9]
                                        : r & 0xff);
            }
        e[i] = (sp_access_entry){.method = {(char *)bytes[i][0], 7},
                                 .target = {(char *)bytes[i][1], 40},
                                 .user_agent = {(char *)bytes[i][2], (size_t)(i % 41)},
                                 .status = 200};
    }
    char *out = access_lines(SP_ACCESS_JSON, e, N);
    assert_int_equal(count_lines(out), N);
    for (char *line = out; *line; line = strchr(line, '\n') + 1)
        if (!json_line_valid(line))
            fail_msg("invalid JSON line: %.*s", (int)(strchr(line, '\n') - line), line);
    free(out);
    sp_log_shutdown();
    out = access_lines(SP_ACCESS_COMMON, e, N);
    assert_int_equal(count_lines(out), N);
    for (const unsigned char *p = (const unsigned char *)out; *p; p++)
        assert_true(*p == '\n' || (*p >= 0x20 && *p < 0x7f));
    free(out);
}

static void test_long_fields_are_cut_with_a_marker(void **state) {
    (void)state;
    char *big = malloc(10000);
    memset(big, 'a', 10000);
    sp_access_entry e = {.target = {big, 10000}, .user_agent = {big, 1500}, .status = 200};
    char *out = access_lines(SP_ACCESS_JSON, &e, 1);
    assert_true(json_line_valid(out));
    char *t = strstr(out, "\"target\":\"") + 10;
    assert_int_equal(strspn(t, "a"), 4096);
    assert_memory_equal(t + 4096, "...\"", 4);
    char *ua = strstr(out, "\"user_agent\":\"") + 14;
    assert_int_equal(strspn(ua, "a"), 1024);
    free(out);
    free(big);
}

static int log_disabled_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_access_entry e = curl_entry();
    for (int i = 0; i < 1000; i++)
        sp_log_access(&e);
    return 0;
}

static void test_disabled_access_log_writes_nothing(void **state) {
    (void)state;
    const char *path = tmp_path(1);
    assert_int_equal(sp_log_open_access(path), 0);
    assert_true(sp_log_access_enabled());
    assert_int_equal(sp_log_open_access(NULL), 0);
    assert_false(sp_log_access_enabled());
    uint64_t dropped = sp_log_dropped();
    run_main(log_disabled_main, NULL);
    assert_int_equal(sp_log_flush(), 0);
    char *out = slurp(path);
    assert_string_equal(out, "");
    assert_int_equal(sp_log_dropped(), dropped);
    free(out);
}

/* ---- Threads ---- */

enum { NTHREADS = 8, PER_THREAD = 10000 };

static int worker_main(void *arg, void **result) {
    (void)result;
    int id = (int)(intptr_t)arg;
    char tag[16], target[64];
    snprintf(tag, sizeof(tag), "worker %d", id);
    assert_int_equal(sp_log_set_tag(tag), 0);
    sp_access_entry e = curl_entry();
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(target, sizeof(target), "/w%d/%d", id, i);
        e.target = str_of(target);
        sp_log_access(&e);
        if (i % 1000 == 0) {
            sp_log(SP_LOG_INFO, "progress %d", i);
            sp_yield();
        }
    }
    return 0;
}

static void *worker_thread(void *arg) {
    assert_int_equal(sp_run(worker_main, arg, NULL), 0);
    return NULL;
}

static void test_8_threads_x_10000_lines_arrive_intact_and_in_order(void **state) {
    (void)state;
    const char *acc = tmp_path(1), *err = tmp_path(0);
    assert_int_equal(sp_log_open_access(acc), 0);
    assert_int_equal(sp_log_open_error(err), 0);
    assert_int_equal(sp_log_set_access_format(SP_ACCESS_JSON), 0);
    uint64_t dropped = sp_log_dropped();
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    /* The threads are gone: their last lines were handed over at exit. A
     * writer that falls 16 MiB behind (a disk shared with other work) drops
     * whole buffers and counts their lines: every line is either written,
     * intact and in its thread's order, or counted. */
    assert_int_equal(sp_log_flush(), 0);
    uint64_t lost = sp_log_dropped() - dropped;
    char *out = slurp(acc);
    char *errs = slurp(err);
    size_t written = count_lines(out), err_written = count_lines(errs);
    /* Drops are reported in the error log, one line per report. */
    for (const char *p = errs; (p = strstr(p, " log lines dropped\n")) != NULL; p++)
        err_written--;
    assert_int_equal(written + err_written + lost,
                     NTHREADS * PER_THREAD + NTHREADS * PER_THREAD / 1000);
    int next[NTHREADS] = {0};
    /* Each line is cut out first: sscanf, and strstr under ASan, would scan
     * the whole rest of the buffer on every call. */
    for (char *line = out, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        *nl = '\0';
        if (!json_line_valid(line))
            fail_msg("broken line: %s", line);
        char *t = strstr(line, "\"target\":\"/w"), *end;
        assert_non_null(t);
        long id = strtol(t + 12, &end, 10);
        assert_true(*end == '/');
        long seq = strtol(end + 1, &end, 10);
        assert_true(*end == '"');
        assert_true(id >= 0 && id < NTHREADS);
        if (lost == 0)
            assert_int_equal(seq, next[id]);
        else
            assert_true(seq >= next[id]);
        next[id] = (int)seq + 1;
    }
    free(out);
    for (int i = 0; i < NTHREADS && lost == 0; i++) {
        char want[64];
        snprintf(want, sizeof(want), "[info] worker %d: progress 9000\n", i);
        assert_non_null(strstr(errs, want));
    }
    free(errs);
}

/* ---- A writer stuck on a full pipe ---- */

enum { STUCK_LINES = 100000 };

typedef struct stuck {
    int rfd;
    bool flushed;
    size_t lines_read;
    double log_secs;
} stuck;

static int pipe_reader(void *arg, void **result) {
    (void)result;
    stuck *s = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(s->rfd, buf, sizeof(buf));
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                s->lines_read += buf[i] == '\n';
            continue;
        }
        assert_true(n < 0 && errno == EAGAIN);
        if (s->flushed)
            return 0;
        int rc = sp_io_wait(s->rfd, SP_IO_READ, 0.01);
        assert_true(rc == 0 || rc == -ETIMEDOUT);
    }
}

static int stuck_main(void *arg, void **result) {
    (void)result;
    stuck *s = arg;
    char ua[400];
    memset(ua, 'u', sizeof(ua));
    sp_access_entry e = curl_entry();
    e.user_agent = (sp_str){ua, sizeof(ua)};
    double t0 = sp_time();
    for (int i = 0; i < STUCK_LINES; i++)
        sp_log_access(&e);
    s->log_secs = sp_time() - t0;
    /* Now read the pipe while a pool thread waits for the writer to drain. */
    sp_task *reader;
    assert_int_equal(sp_spawn(&reader, "reader", pipe_reader, s), 0);
    flush_from_task();
    s->flushed = true;
    assert_int_equal(sp_task_await(reader, NULL), 0);
    sp_task_release(reader);
    return 0;
}

static void test_writer_stuck_on_full_pipe_drops_lines_without_blocking(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(sp_fd_set_nonblocking(p[0]), 0);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", p[1]);
    const char *err = tmp_path(0);
    assert_int_equal(sp_log_open_error(err), 0);
    assert_int_equal(sp_log_open_access(path), 0);
    uint64_t dropped = sp_log_dropped();
    stuck s = {.rfd = p[0]};
    run_main(stuck_main, &s);
    uint64_t lost = sp_log_dropped() - dropped;
    print_message("logged %d lines in %.3f s, %zu read, %llu dropped\n", STUCK_LINES, s.log_secs,
                  s.lines_read, (unsigned long long)lost);
    assert_true(s.log_secs < 3.0);
    assert_true(lost > 0);
    assert_int_equal(s.lines_read + lost, STUCK_LINES);
    /* Every drop was reported in the error log. */
    char *errs = slurp(err);
    uint64_t reported = 0;
    for (char *m = errs; (m = strstr(m, "[warn] spindle: ")) != NULL; m++) {
        unsigned long long n;
        assert_int_equal(sscanf(m, "[warn] spindle: %llu log lines dropped", &n), 1);
        reported += n;
    }
    assert_int_equal(reported, lost);
    free(errs);
    assert_int_equal(sp_log_open_access(NULL), 0);
    close(p[0]);
    close(p[1]);
}

/* ---- Flushing, shutdown, timing ---- */

static void *short_lived_thread(void *arg) {
    (void)arg;
    sp_access_entry e = curl_entry();
    e.target = S("/from-exited-thread");
    sp_log_access(&e);
    return NULL;
}

static void test_shutdown_writes_everything_and_resets_configuration(void **state) {
    (void)state;
    const char *acc = tmp_path(1), *err = tmp_path(0);
    assert_int_equal(sp_log_open_access(acc), 0);
    assert_int_equal(sp_log_open_error(err), 0);
    assert_int_equal(sp_log_set_level(SP_LOG_DEBUG), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, short_lived_thread, NULL), 0);
    pthread_join(th, NULL);
    sp_access_entry e = curl_entry();
    for (int i = 0; i < 5000; i++)
        sp_log_access(&e);
    sp_log(SP_LOG_DEBUG, "last words");
    sp_log_shutdown();
    char *out = slurp(acc);
    assert_int_equal(count_lines(out), 5001);
    assert_non_null(strstr(out, "/from-exited-thread"));
    free(out);
    out = slurp(err);
    assert_non_null(strstr(out, "[debug] last words\n"));
    free(out);
    /* Back to the start: access off, info and up to stderr. */
    assert_false(sp_log_access_enabled());
    sp_log_access(&e);
    assert_int_equal(sp_log_flush(), 0);
    out = slurp(acc);
    assert_int_equal(count_lines(out), 5001);
    free(out);
    /* Logging works again after shutdown, with a new writer. */
    assert_int_equal(sp_log_open_access(acc), 0);
    sp_log_access(&e);
    assert_int_equal(sp_log_flush(), 0);
    out = slurp(acc);
    assert_int_equal(count_lines(out), 5002);
    free(out);
}

/* Polls the file from a task until it holds `lines` lines; returns the
 * seconds it took, or a negative number after `limit` seconds. */
static double wait_for_lines(const char *path, size_t lines, double limit) {
    double t0 = sp_time();
    for (;;) {
        char *out = slurp(path);
        size_t n = count_lines(out);
        free(out);
        if (n >= lines)
            return sp_time() - t0;
        if (sp_time() - t0 > limit)
            return -1;
        assert_int_equal(sp_sleep(0.002), 0);
    }
}

static int idle_main(void *arg, void **result) {
    (void)arg, (void)result;
    const char *acc = tmp_paths[1], *err = tmp_paths[0];
    /* An idle thread's lines go out within a tick, without a flush. */
    sp_access_entry e = curl_entry();
    sp_log_access(&e);
    double t = wait_for_lines(acc, 1, 2.0);
    assert_true(t >= 0);
    sp_log_access(&e);
    sp_log_access(&e);
    t = wait_for_lines(acc, 3, 2.0);
    assert_true(t >= 0);
    /* An error line goes out at once, while a warning waits for the tick. */
    sp_log(SP_LOG_WARN, "warning");
    sp_log(SP_LOG_ERROR, "failure");
    t = wait_for_lines(err, 2, 2.0);
    assert_true(t >= 0 && t < 0.05);
    return 0;
}

static void test_idle_lines_go_out_within_a_tick_and_errors_at_once(void **state) {
    (void)state;
    assert_int_equal(sp_log_open_access(tmp_path(1)), 0);
    assert_int_equal(sp_log_open_error(tmp_path(0)), 0);
    run_main(idle_main, NULL);
}

static void test_reopen_after_rename_writes_to_a_new_file(void **state) {
    (void)state;
    const char *acc = tmp_path(1);
    char rotated[128];
    snprintf(rotated, sizeof(rotated), "%s.1", acc);
    assert_int_equal(sp_log_open_access(acc), 0);
    sp_access_entry e = curl_entry();
    e.target = S("/before");
    sp_log_access(&e);
    assert_int_equal(sp_log_flush(), 0);
    assert_int_equal(rename(acc, rotated), 0);
    e.target = S("/during");
    sp_log_access(&e);
    assert_int_equal(sp_log_reopen(), 0);
    e.target = S("/after");
    sp_log_access(&e);
    assert_int_equal(sp_log_flush(), 0);
    char *old = slurp(rotated), *cur = slurp(acc);
    assert_non_null(strstr(old, "/before"));
    assert_null(strstr(old, "/after"));
    assert_non_null(strstr(cur, "/after"));
    assert_null(strstr(cur, "/before"));
    /* A line logged around the rotation lands in exactly one of the files. */
    assert_true((strstr(old, "/during") != NULL) != (strstr(cur, "/during") != NULL));
    assert_int_equal(count_lines(old) + count_lines(cur), 3);
    free(old);
    free(cur);
}

static void test_reopen_failure_keeps_the_open_file(void **state) {
    (void)state;
    char dir[64], path[96];
    snprintf(dir, sizeof(dir), "/tmp/sp-log-dir-%d", (int)getpid());
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/access.log", dir);
    assert_int_equal(sp_log_open_access(path), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(sp_log_reopen(), -ENOENT);
    uint64_t dropped = sp_log_dropped();
    sp_access_entry e = curl_entry();
    sp_log_access(&e);
    assert_int_equal(sp_log_flush(), 0);
    assert_int_equal(sp_log_dropped(), dropped);
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "\"GET / HTTP/1.1\" 200 13"));
    close(fd);
}

static void test_forked_child_logs_without_repeating_parent_lines(void **state) {
    (void)state;
    const char *acc = tmp_path(1);
    assert_int_equal(sp_log_open_access(acc), 0);
    sp_access_entry e = curl_entry();
    e.target = S("/parent");
    sp_log_access(&e);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        e.target = S("/child");
        sp_log_access(&e);
        _exit(sp_log_flush() == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(sp_log_flush(), 0);
    char *out = slurp(acc);
    assert_int_equal(count_lines(out), 2);
    assert_non_null(strstr(out, "/parent"));
    assert_non_null(strstr(out, "/child"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_error_log_filters_levels_below_minimum, teardown),
        cmocka_unit_test_teardown(test_error_line_format_with_fixed_clock_and_tag, teardown),
        cmocka_unit_test_teardown(test_long_error_message_is_cut_at_4_kib, teardown),
        cmocka_unit_test_teardown(test_open_failures_return_errno_and_keep_destination, teardown),
        cmocka_unit_test_teardown(test_access_common_format_matches_nginx_combined, teardown),
        cmocka_unit_test_teardown(test_access_json_format_exact_line, teardown),
        cmocka_unit_test_teardown(test_peer_sockaddr_is_spelled_when_remote_is_absent, teardown),
        cmocka_unit_test_teardown(test_common_format_escapes_nasty_bytes_as_nginx, teardown),
        cmocka_unit_test_teardown(test_json_format_escapes_nasty_bytes_into_valid_json, teardown),
        cmocka_unit_test_teardown(test_random_bytes_always_give_one_valid_line_each, teardown),
        cmocka_unit_test_teardown(test_long_fields_are_cut_with_a_marker, teardown),
        cmocka_unit_test_teardown(test_disabled_access_log_writes_nothing, teardown),
        cmocka_unit_test_teardown(test_8_threads_x_10000_lines_arrive_intact_and_in_order,
                                  teardown),
        cmocka_unit_test_teardown(test_writer_stuck_on_full_pipe_drops_lines_without_blocking,
                                  teardown),
        cmocka_unit_test_teardown(test_shutdown_writes_everything_and_resets_configuration,
                                  teardown),
        cmocka_unit_test_teardown(test_idle_lines_go_out_within_a_tick_and_errors_at_once,
                                  teardown),
        cmocka_unit_test_teardown(test_reopen_after_rename_writes_to_a_new_file, teardown),
        cmocka_unit_test_teardown(test_reopen_failure_keeps_the_open_file, teardown),
        cmocka_unit_test_teardown(test_forked_child_logs_without_repeating_parent_lines, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
