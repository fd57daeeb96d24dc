/* Helpers shared by the four tutorial programs (apps/0N_async_*.c): the time
 * scale, elapsed time in unscaled seconds, flushed output, and the runner
 * that turns a failure into a message on stderr and a non-zero exit. The
 * Python versions in apps/python/ define the same helpers in a few lines. */
#ifndef SP_APPS_TUTORIAL_H
#define SP_APPS_TUTORIAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spindle/spindle.h>

/* SP_TIME_SCALE multiplies every delay (default 1.0): the tests run the
 * programs at 0.05, twenty times faster, and still print the same lines. */
static double tut_scale = 1.0;

/* Program time `seconds` as real seconds. */
static inline double scaled(double seconds) {
    return seconds * tut_scale;
}

/* Program seconds since `start` (an sp_time() reading), so printed times
 * read the same at any scale. */
static inline double elapsed(double start) {
    return (sp_time() - start) / tut_scale;
}

/* Prints one line and flushes it, so the order of lines survives a pipe. */
__attribute__((format(printf, 1, 2))) static inline void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* Python's spelling of a bool, so both versions print the same text. */
static inline const char *py_bool(bool b) {
    return b ? "True" : "False";
}

/* Reports an unexpected error (a negative errno from a Spindle call) on
 * stderr and hands it back, for `return report(rc, "sp_spawn");`. */
static inline int report(int rc, const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, strerror(-rc));
    return rc;
}

/* The exit of a scope that spawned tasks: cancels those still running (after
 * an error, say), waits until each has finished, so that none outlives the
 * data it borrows from the scope, and releases every handle. Finished tasks
 * are only released; NULL entries are skipped. */
static inline void cancel_all(sp_task **tasks, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!tasks[i])
            continue;
        sp_task_cancel(tasks[i]);
        /* Returns once tasks[i] has finished, even if we are cancelled too. */
        (void)sp_task_await(tasks[i], NULL);
        sp_task_release(tasks[i]);
        tasks[i] = NULL;
    }
}

/* main() of every tutorial: reads SP_TIME_SCALE, runs amain as the main task
 * (asyncio.run), and exits 0, or 1 with the error on stderr. */
static inline int tut_main(const char *prog, sp_task_fn *amain) {
    const char *s = getenv("SP_TIME_SCALE");
    if (s) {
        char *end;
        tut_scale = strtod(s, &end);
        if (end == s || *end != '\0' || !(tut_scale > 0)) {
            fprintf(stderr, "%s: SP_TIME_SCALE must be a positive number\n", prog);
            return 2;
        }
    }
    int rc = sp_run(amain, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "%s: failed: %s\n", prog, strerror(-rc));
        return 1;
    }
    return 0;
}

#endif
