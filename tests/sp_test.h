/* Shared helpers for Spindle's cmocka tests: an event log that scenarios
 * append to and compare against the order CPython's asyncio produces, and a
 * runner that executes a scenario inside sp_run. */
#ifndef SP_TEST_H
#define SP_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <spindle/spindle.h>

#define SP_LOG_MAX 256

static char sp_log_lines[SP_LOG_MAX][96];
static size_t sp_log_n;

__attribute__((format(printf, 1, 2), unused)) static void logf_(const char *fmt, ...) {
    if (sp_log_n == SP_LOG_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sp_log_lines[sp_log_n++], sizeof(sp_log_lines[0]), fmt, ap);
    va_end(ap);
}

/* Asserts the log holds exactly the given lines, in order, then clears it. */
__attribute__((unused)) static void expect_log_(const char *const *want, size_t n) {
    for (size_t i = 0; i < n && i < sp_log_n; i++) {
        if (strcmp(sp_log_lines[i], want[i]) != 0)
            fail_msg("log line %zu: got '%s', want '%s'", i, sp_log_lines[i], want[i]);
    }
    if (sp_log_n != n) {
        for (size_t i = 0; i < sp_log_n; i++)
            print_message("  log[%zu] = %s\n", i, sp_log_lines[i]);
        fail_msg("log has %zu lines, want %zu", sp_log_n, n);
    }
    sp_log_n = 0;
}

#define expect_log(...)                                                                            \
    do {                                                                                           \
        const char *const want_[] = {__VA_ARGS__};                                                 \
        expect_log_(want_, sizeof(want_) / sizeof(want_[0]));                                      \
    } while (0)

/* Spawns an unnamed task and returns its handle. */
__attribute__((unused)) static sp_task *spawn(sp_task_fn *fn, void *arg) {
    sp_task *t = NULL;
    assert_int_equal(sp_spawn(&t, NULL, fn, arg), 0);
    return t;
}

/* Awaits a task that must succeed, then drops the handle. */
__attribute__((unused)) static void await_release(sp_task *t) {
    assert_int_equal(sp_task_await(t, NULL), 0);
    sp_task_release(t);
}

/* Drops n task handles. */
__attribute__((unused)) static void release_all(sp_task **ts, size_t n) {
    for (size_t i = 0; i < n; i++)
        sp_task_release(ts[i]);
}

/* Runs fn as the main task and asserts it returned 0. */
__attribute__((unused)) static void run_main(sp_task_fn *fn, void *arg) {
    sp_log_n = 0;
    int rc = sp_run(fn, arg, NULL);
    assert_int_equal(rc, 0);
}

#endif
