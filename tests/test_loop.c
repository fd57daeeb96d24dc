/* The loop itself: sp_run's outcome and shutdown, timers, fd waits, the
 * deadlock guard, debug-mode warnings, and 100,000 tasks at once. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "sp_test.h"
#include "stderr_capture.h"

static int returns_error(void *arg, void **result) {
    (void)arg, (void)result;
    return sp_fail(-ENOENT, "no such thing");
}

static int returns_value(void *arg, void **result) {
    *result = arg;
    return 0;
}

static int nested_run(void *arg, void **result) {
    (void)arg, (void)result;
    assert_int_equal(sp_run(returns_value, NULL, NULL), -EBUSY);
    return 0;
}

static void test_run_returns_the_main_tasks_outcome(void **state) {
    (void)state;
    void *r = NULL;
    assert_int_equal(sp_run(returns_value, (void *)42, &r), 0);
    assert_ptr_equal(r, (void *)42);
    assert_int_equal(sp_run(returns_error, NULL, NULL), -ENOENT);
    assert_int_equal(sp_run(nested_run, NULL, NULL), 0);
}

static void test_calls_outside_a_task_fail_cleanly(void **state) {
    (void)state;
    assert_int_equal(sp_sleep(0.1), -EPERM);
    assert_int_equal(sp_yield(), -EPERM);
    assert_int_equal(sp_spawn(NULL, NULL, returns_value, NULL), -EPERM);
    assert_null(sp_task_current());
}

static int cleanup_on_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    int rc = sp_sleep(10);
    logf_("pending task woke with %s", rc == -ECANCELED ? "ECANCELED" : "?");
    sp_sleep(0.001); /* cleanup may suspend */
    logf_("pending task cleaned up");
    return rc;
}

static int leaves_a_task_behind(void *arg, void **result) {
    (void)arg, (void)result;
    sp_spawn(NULL, "left-behind", cleanup_on_cancel, NULL);
    sp_sleep(0);
    logf_("main returns");
    return 0;
}

static void test_run_cancels_pending_tasks_and_lets_them_clean_up(void **state) {
    (void)state;
    run_main(leaves_a_task_behind, NULL);
    expect_log("main returns", "pending task woke with ECANCELED", "pending task cleaned up");
}

static int late_task(void *arg, void **result) {
    (void)arg, (void)result;
    logf_("late runs");
    int rc = sp_sleep(10);
    logf_("late woke with %s", rc == -ECANCELED ? "ECANCELED" : "?");
    return rc;
}

static int spawns_while_cancelled(void *arg, void **result) {
    (void)arg, (void)result;
    int rc = sp_sleep(10);
    logf_("cleanup spawns");
    sp_spawn(NULL, "late", late_task, NULL);
    sp_yield();
    logf_("cleanup done");
    return rc;
}

static int leaves_a_spawner_behind(void *arg, void **result) {
    (void)arg, (void)result;
    sp_spawn(NULL, "spawner", spawns_while_cancelled, NULL);
    sp_yield();
    logf_("main returns");
    return 0;
}

/* asyncio.run lets a task spawned during the shutdown drain run a little,
 * then destroys it pending with "Task was destroyed but it is pending!"
 * (Python 3.11: main returns / cleanup spawns / late runs 1 / cleanup done).
 * Spindle prints the same, then cancels and drains it with a warning, so
 * that its memory is freed (the ASan build checks for leaks). */
static void test_task_spawned_during_shutdown_is_cancelled_with_a_warning(void **state) {
    (void)state;
    stderr_capture cap;
    capture_begin(&cap);
    run_main(leaves_a_spawner_behind, NULL);
    char *log = capture_end(&cap);
    expect_log("main returns", "cleanup spawns", "late runs", "cleanup done",
               "late woke with ECANCELED");
    assert_non_null(strstr(log, "task 'late' was spawned during sp_run() shutdown and is still "
                                "pending: cancelling it"));
    free(log);
}

static int sleeper(void *arg, void **result) {
    (void)result;
    double d = *(double *)arg;
    sp_sleep(d);
    logf_("%.3f", d);
    return 0;
}

static int s_timer_order(void *arg, void **result) {
    (void)arg, (void)result;
    static double delays[] = {0.03, 0.01, 0.02, 0.01, 0};
    sp_task *ts[5];
    for (int i = 0; i < 5; i++)
        sp_spawn(&ts[i], NULL, sleeper, &delays[i]);
    double t0 = sp_time();
    sp_gather(ts, 5, 0, NULL, NULL);
    double dt = sp_time() - t0;
    assert_true(dt >= 0.03 && dt < 0.2);
    for (int i = 0; i < 5; i++)
        sp_task_release(ts[i]);
    return 0;
}

static void test_sleepers_wake_in_deadline_order_then_arming_order(void **state) {
    (void)state;
    run_main(s_timer_order, NULL);
    expect_log("0.000", "0.010", "0.010", "0.020", "0.030");
}

static int reader(void *arg, void **result) {
    (void)result;
    int fd = *(int *)arg;
    int rc = sp_io_wait(fd, SP_IO_READ, 1.0);
    char c = 0;
    if (rc == 0 && read(fd, &c, 1) == 1)
        logf_("read %c", c);
    else
        logf_("wait rc=%d", rc);
    return rc;
}

static int s_io(void *arg, void **result) {
    (void)arg, (void)result;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(sp_fd_set_nonblocking(p[0]), 0);
    sp_task *t;
    sp_spawn(&t, NULL, reader, &p[0]);
    sp_sleep(0.01);
    logf_("writing");
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(sp_task_await(t, NULL), 0);
    sp_task_release(t);

    /* timeout */
    double t0 = sp_time();
    assert_int_equal(sp_io_wait(p[0], SP_IO_READ, 0.02), -ETIMEDOUT);
    assert_true(sp_time() - t0 >= 0.019);
    /* cancel during the wait */
    sp_spawn(&t, NULL, reader, &p[0]);
    sp_sleep(0.005);
    sp_task_cancel(t);
    assert_int_equal(sp_task_await(t, NULL), -ECANCELED);
    sp_task_release(t);
    /* writable at once; bad arguments */
    assert_int_equal(sp_io_wait(p[1], SP_IO_WRITE, -1), 0);
    assert_int_equal(sp_io_wait(-1, SP_IO_READ, -1), -EINVAL);
    assert_int_equal(sp_io_wait(p[0], 0, -1), -EINVAL);
    close(p[0]);
    close(p[1]);
    return 0;
}

static void test_io_wait_wakes_on_data_times_out_and_cancels(void **state) {
    (void)state;
    run_main(s_io, NULL);
    expect_log("writing", "read x", "wait rc=-125");
}

static int waits_forever(void *arg, void **result) {
    (void)arg, (void)result;
    sp_future f;
    sp_future_init(&f);
    int rc = sp_future_await(&f, NULL);
    logf_("main woke with %d", rc);
    return rc;
}

static void test_deadlock_is_reported_and_cancels_main_instead_of_hanging(void **state) {
    (void)state;
    stderr_capture c;
    capture_begin(&c);
    int rc = sp_run(waits_forever, NULL, NULL);
    char *err = capture_end(&c);
    assert_int_equal(rc, -ECANCELED);
    assert_non_null(strstr(err, "deadlock"));
    free(err);
    expect_log("main woke with -125");
}

static int fails_quietly(void *arg, void **result) {
    (void)arg, (void)result;
    return sp_fail(-EIO, "disk on fire");
}

static int s_unretrieved(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t, *u;
    sp_spawn(&t, "careless", fails_quietly, NULL);
    sp_spawn(&u, "careful", fails_quietly, NULL);
    sp_sleep(0.001);
    assert_int_equal(sp_task_error(u, NULL), -EIO);
    sp_task_release(t);
    sp_task_release(u);
    return 0;
}

static void test_an_error_nobody_retrieved_is_logged_when_released(void **state) {
    (void)state;
    stderr_capture c;
    capture_begin(&c);
    run_main(s_unretrieved, NULL);
    char *err = capture_end(&c);
    assert_non_null(strstr(err, "task 'careless' failed and its error was never retrieved"));
    assert_non_null(strstr(err, "disk on fire"));
    assert_null(strstr(err, "careful"));
    free(err);
}

static int hog(void *arg, void **result) {
    (void)arg, (void)result;
    usleep(30000); /* blocks the loop: what debug mode is for */
    return 0;
}

static int s_slow(void *arg, void **result) {
    (void)arg, (void)result;
    sp_spawn(NULL, "hog", hog, NULL);
    sp_spawn(NULL, "forgotten", cleanup_on_cancel, NULL);
    sp_sleep(0.05);
    return 0;
}

static void test_debug_mode_names_slow_tasks_and_tasks_pending_at_exit(void **state) {
    (void)state;
    sp_config cfg = {.debug = true, .slow_task_secs = 0.01};
    stderr_capture c;
    capture_begin(&c);
    sp_log_n = 0;
    assert_int_equal(sp_run_config(&cfg, s_slow, NULL, NULL), 0);
    char *err = capture_end(&c);
    assert_non_null(strstr(err, "task 'hog' ran"));
    assert_non_null(strstr(err, "without suspending"));
    assert_non_null(strstr(err, "task 'forgotten' still pending when the loop exits"));
    free(err);
}

static int parked(void *arg, void **result) {
    (void)result;
    (*(long *)arg)++;
    return sp_sleep(0.2);
}

static int s_many(void *arg, void **result) {
    (void)arg, (void)result;
    enum { N = 100000 };
    static long started;
    started = 0;
    sp_task **ts = calloc(N, sizeof(*ts));
    for (long i = 0; i < N; i++)
        assert_int_equal(sp_spawn(&ts[i], NULL, parked, &started), 0);
    sp_sleep(0.05);
    assert_int_equal(started, N); /* all alive and parked at once */
    int *errs = calloc(N, sizeof(*errs));
    assert_int_equal(sp_gather(ts, N, SP_GATHER_RETURN_EXCEPTIONS, NULL, errs), 0);
    for (long i = 0; i < N; i++) {
        assert_int_equal(errs[i], 0);
        sp_task_release(ts[i]);
    }
    free(errs);
    free(ts);
    return 0;
}

static void test_100000_tasks_sleep_at_once_on_a_stock_kernel(void **state) {
    (void)state;
    run_main(s_many, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_returns_the_main_tasks_outcome),
        cmocka_unit_test(test_calls_outside_a_task_fail_cleanly),
        cmocka_unit_test(test_run_cancels_pending_tasks_and_lets_them_clean_up),
        cmocka_unit_test(test_task_spawned_during_shutdown_is_cancelled_with_a_warning),
        cmocka_unit_test(test_sleepers_wake_in_deadline_order_then_arming_order),
        cmocka_unit_test(test_io_wait_wakes_on_data_times_out_and_cancels),
        cmocka_unit_test(test_deadlock_is_reported_and_cancels_main_instead_of_hanging),
        cmocka_unit_test(test_an_error_nobody_retrieved_is_logged_when_released),
        cmocka_unit_test(test_debug_mode_names_slow_tasks_and_tasks_pending_at_exit),
        cmocka_unit_test(test_100000_tasks_sleep_at_once_on_a_stock_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
