/* The tutorial programs (apps/0N_async_*.c) against their Python originals
 * (apps/python/): both run at SP_TIME_SCALE=0.05 and must print the same
 * lines once elapsed times are masked, with each time close to Python's, and
 * the C program must exit 0 and take about as long as its sleeps add up to.
 * Plus 01's headline figures (6 s in sequence, 2 s concurrently) at 0.1. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* Test runs use this scale: 20 times faster than the programs' own timing. */
#define SCALE     0.05
#define SCALE_STR "0.05"

/* How far a C time may be from Python's, in program (unscaled) seconds: a
 * fixed part for timer and scheduling noise (0.4 s is 20 ms of real time,
 * which a loaded machine can add to a wake-up), plus a part that grows with
 * the figure, since longer figures chain more sleeps that may each be late. */
#define TIME_ABS_TOLERANCE 0.4
#define TIME_REL_TOLERANCE 0.05

/* Runs of a program before its test fails (see check_program). */
#define ATTEMPTS 3

#define MAX_LINES   128
#define MAX_NUMBERS 8

typedef struct run_result {
    char *out;   /* stdout, NUL-terminated */
    char *err;   /* stderr, NUL-terminated */
    int status;  /* the exit code, or 128 + the signal that killed it */
    double wall; /* real seconds from start to exit */
} run_result;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *read_all(int fd) {
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Runs argv with SP_TIME_SCALE=scale (unset if scale is NULL), capturing its
 * output and timing it. */
static void run_program(char *const argv[], const char *scale, run_result *r) {
    int out[2];
    FILE *err = tmpfile();
    assert_non_null(err);
    assert_int_equal(pipe(out), 0);
    fflush(NULL);
    double start = now();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(fileno(err), STDERR_FILENO);
        close(out[0]);
        close(out[1]);
        if (scale)
            setenv("SP_TIME_SCALE", scale, 1);
        else
            unsetenv("SP_TIME_SCALE");
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out[1]);
    r->out = read_all(out[0]);
    close(out[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    r->wall = now() - start;
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    rewind(err);
    r->err = read_all(fileno(err));
    fclose(err);
}

/* The runs of the current test, freed by its teardown even when it fails. */
static run_result c_run, py_run;
static char *c_text, *py_text;

static void run_result_free(run_result *r) {
    free(r->out);
    free(r->err);
    *r = (run_result){0};
}

static int free_runs(void **state) {
    (void)state;
    run_result_free(&c_run);
    run_result_free(&py_run);
    free(c_text);
    free(py_text);
    c_text = py_text = NULL;
    return 0;
}

static const char *env_dir(const char *name) {
    const char *dir = getenv(name);
    if (!dir)
        fail_msg("%s is not set: run this test through ctest", name);
    return dir;
}

static void run_c(const char *prog, const char *scale, run_result *r) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", env_dir("SP_APPS_DIR"), prog);
    char *argv[] = {path, NULL};
    run_program(argv, scale, r);
}

static void run_python(const char *prog, const char *scale, run_result *r) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/apps/python/%s.py", env_dir("SP_SOURCE_DIR"), prog);
    char *argv[] = {"python3", path, NULL};
    run_program(argv, scale, r);
}

/* Splits text into lines in place; returns the count. */
static size_t split_lines(char *text, char *lines[MAX_LINES]) {
    size_t n = 0;
    char *p = text;
    while (*p) {
        if (n == MAX_LINES)
            fail_msg("more than %d lines of output", MAX_LINES);
        lines[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

/* Copies line to masked with every elapsed time ("<digits>.<digits> s")
 * replaced by "N s", and stores the times in nums. Returns their count. */
static size_t mask_times(const char *line, char *masked, size_t size, double nums[MAX_NUMBERS]) {
    size_t n = 0, o = 0;
    for (size_t i = 0; line[i] && o + 4 < size;) {
        bool starts = line[i] >= '0' && line[i] <= '9' &&
                      (i == 0 || ((line[i - 1] < '0' || line[i - 1] > '9') && line[i - 1] != '.'));
        if (starts) {
            size_t j = i;
            while (line[j] >= '0' && line[j] <= '9')
                j++;
            if (line[j] == '.' && line[j + 1] >= '0' && line[j + 1] <= '9') {
                size_t k = j + 1;
                while (line[k] >= '0' && line[k] <= '9')
                    k++;
                if (line[k] == ' ' && line[k + 1] == 's' &&
                    (line[k + 2] == '\0' || strchr(" ,;:)", line[k + 2]))) {
                    if (n < MAX_NUMBERS)
                        nums[n++] = strtod(line + i, NULL);
                    memcpy(masked + o, "N s", 3);
                    o += 3;
                    i = k + 2;
                    continue;
                }
            }
        }
        masked[o++] = line[i++];
    }
    masked[o] = '\0';
    return n;
}

/* Prints a program's output line by line: cmocka truncates long messages. */
static void print_text(const char *label, const char *text) {
    print_message("---- %s ----\n", label);
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        print_message("%.*s\n", len, p);
        p += len + (nl != NULL);
    }
}

static void print_outputs(void) {
    print_text("C output", c_run.out);
    print_text("C stderr", c_run.err);
    print_text("Python output", py_run.out);
    print_text("Python stderr", py_run.err);
    fflush(stdout); /* before cmocka's failure message on stderr */
}

/* Why the last attempt failed. */
static char why[768];

__attribute__((format(printf, 1, 2))) static bool failed(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return false;
}

/* Compares c_run with py_run as the file's header comment says; returns
 * false with the reason in `why` if they differ. expected_secs is the sum of
 * the program's sleeps, in program seconds. */
static bool outputs_agree(const char *prog, double expected_secs) {
    if (py_run.status != 0)
        return failed("python3 %s.py exited with %d", prog, py_run.status);
    if (c_run.status != 0)
        return failed("%s exited with %d", prog, c_run.status);

    char *c_lines[MAX_LINES], *py_lines[MAX_LINES];
    free(c_text);
    free(py_text);
    c_text = strdup(c_run.out);
    py_text = strdup(py_run.out);
    assert_non_null(c_text);
    assert_non_null(py_text);
    size_t nc = split_lines(c_text, c_lines), np = split_lines(py_text, py_lines);
    for (size_t i = 0; i < nc || i < np; i++) {
        if (i >= nc || i >= np)
            return failed("line %zu: C \"%s\", Python \"%s\"", i + 1,
                          i < nc ? c_lines[i] : "(none)", i < np ? py_lines[i] : "(none)");
        char cm[512], pm[512];
        double cn[MAX_NUMBERS], pn[MAX_NUMBERS];
        size_t ncn = mask_times(c_lines[i], cm, sizeof(cm), cn);
        size_t npn = mask_times(py_lines[i], pm, sizeof(pm), pn);
        if (strcmp(cm, pm) != 0 || ncn != npn)
            return failed("line %zu differs: C \"%s\", Python \"%s\"", i + 1, c_lines[i],
                          py_lines[i]);
        for (size_t k = 0; k < ncn; k++) {
            double tolerance = TIME_ABS_TOLERANCE + TIME_REL_TOLERANCE * pn[k];
            if (fabs(cn[k] - pn[k]) > tolerance)
                return failed("line %zu: C time %.1f s is more than %.2f s from Python's %.1f s",
                              i + 1, cn[k], tolerance, pn[k]);
        }
    }

    /* Sleeps never end early; the upper bound leaves room for process start
     * (ASan's included), the process pool, and a loaded machine. */
    double expected = expected_secs * SCALE;
    if (c_run.wall < expected * 0.95 || c_run.wall > expected * 1.3 + 0.5)
        return failed("%s ran %.3f s, expected about %.3f s", prog, c_run.wall, expected);
    return true;
}

/* Runs the C program and its Python original until they agree, at most
 * ATTEMPTS times: at this scale a loaded machine can stall either process
 * for longer than the 25 ms between two events and swap two lines, while a
 * real difference shows up every time. Fails with both outputs printed. */
static void check_program(const char *prog, double expected_secs) {
    for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
        free_runs(NULL);
        run_python(prog, SCALE_STR, &py_run);
        run_c(prog, SCALE_STR, &c_run);
        if (outputs_agree(prog, expected_secs))
            return;
        print_message("%s: attempt %d of %d failed: %s\n", prog, attempt, ATTEMPTS, why);
    }
    print_outputs();
    fail_msg("%s: %s", prog, why);
}

/* 1 (hello) + 6 (sequential) + 2 (concurrent) + 1 (chain). */
static void test_01_async_basics_prints_what_python_prints(void **state) {
    (void)state;
    check_program("01_async_basics", 10.0);
}

/* Connection: 1 + 1 + 1.2 (cancelled), iterator 1.5, wait_for 1.5, shield 1,
 * timeout scope 3 + 0.5. */
static void test_02_async_await_prints_what_python_prints(void **state) {
    (void)state;
    check_program("02_async_await", 10.7);
}

/* create_task 2, methods 1 + 0.5, cleanup 0.7, wait 0.5, as_completed 1.5,
 * queue 2.85. */
static void test_03_async_tasks_prints_what_python_prints(void **state) {
    (void)state;
    check_program("03_async_tasks", 9.05);
}

/* gather 1.5 + 1.5, TaskGroup 1, API calls 1.2 + 1.5, rate limit 2,
 * to_thread 2; the prime counts take milliseconds in C. */
static void test_04_async_gathering_prints_what_python_prints(void **state) {
    (void)state;
    check_program("04_async_gathering", 10.7);
}

/* The figure after `prefix` in c_run's output, in program seconds, or -1. */
static double figure_after(const char *prefix) {
    const char *p = strstr(c_run.out, prefix);
    return p ? strtod(p + strlen(prefix), NULL) : -1;
}

/* At 0.1, a little closer to real time, with the tolerance on each figure. */
static void test_01_three_2s_jobs_take_6s_in_sequence_and_2s_concurrently(void **state) {
    (void)state;
    for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
        free_runs(NULL);
        run_c("01_async_basics", "0.1", &c_run);
        double seq = figure_after("sequential: finished in ");
        double conc = figure_after("concurrent: finished in ");
        if (c_run.status == 0 && fabs(seq - 6.0) <= 0.5 && fabs(conc - 2.0) <= 0.5)
            return;
        failed("exit status %d, sequential %.1f s (want 6.0), concurrent %.1f s (want 2.0)",
               c_run.status, seq, conc);
        print_message("attempt %d of %d failed: %s\n", attempt, ATTEMPTS, why);
    }
    print_text("C output", c_run.out);
    print_text("C stderr", c_run.err);
    fail_msg("01_async_basics: %s", why);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_01_async_basics_prints_what_python_prints, free_runs),
        cmocka_unit_test_teardown(test_02_async_await_prints_what_python_prints, free_runs),
        cmocka_unit_test_teardown(test_03_async_tasks_prints_what_python_prints, free_runs),
        cmocka_unit_test_teardown(test_04_async_gathering_prints_what_python_prints, free_runs),
        cmocka_unit_test_teardown(test_01_three_2s_jobs_take_6s_in_sequence_and_2s_concurrently,
                                  free_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
