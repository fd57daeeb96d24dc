/* Tasks and the loop: create_task, await, cancel, sleep, yield, run. Each
 * scenario's expected log was produced by the same program under CPython
 * 3.11's asyncio. */
#include <errno.h>

#include "sp_test.h"

typedef struct child_arg {
    const char *name;
    double delay;
} child_arg;

/* Sleeps; on cancellation logs, cleans up with a further sleep, re-raises. */
static int child(void *arg, void **result) {
    child_arg *a = arg;
    logf_("%s start", a->name);
    int rc = sp_sleep(a->delay);
    if (rc == -ECANCELED) {
        logf_("%s cancelled", a->name);
        sp_sleep(0.01);
        logf_("%s cleaned", a->name);
        return rc;
    }
    logf_("%s end", a->name);
    *result = (void *)a->name;
    return 0;
}

static int s_lazy_start(void *arg, void **result) {
    (void)arg, (void)result;
    child_arg a = {"a", 0.01};
    sp_task *t;
    assert_int_equal(sp_spawn(&t, NULL, child, &a), 0);
    logf_("spawned");
    void *r = NULL;
    assert_int_equal(sp_task_await(t, &r), 0);
    logf_("got %s", (char *)r);
    sp_task_release(t);
    return 0;
}

static void test_spawn_starts_lazily_and_await_returns_result(void **state) {
    (void)state;
    run_main(s_lazy_start, NULL);
    expect_log("spawned", "a start", "a end", "got a");
}

static int s_cancel_before_run(void *arg, void **result) {
    (void)arg, (void)result;
    child_arg a = {"a", 0.01};
    sp_task *t;
    sp_spawn(&t, NULL, child, &a);
    assert_int_equal(sp_task_cancel(t), 0);
    if (sp_task_await(t, NULL) == -ECANCELED)
        logf_("cancelled");
    logf_("%s", sp_task_cancelled(t) ? "True" : "False");
    sp_task_release(t);
    return 0;
}

static void test_cancel_before_first_run_never_runs_the_body(void **state) {
    (void)state;
    run_main(s_cancel_before_run, NULL);
    expect_log("cancelled", "True");
}

static int s_cancel_sleep(void *arg, void **result) {
    (void)arg, (void)result;
    child_arg a = {"a", 1};
    sp_task *t;
    sp_spawn(&t, NULL, child, &a);
    sp_sleep(0);
    sp_task_cancel(t);
    sp_task_cancel(t);
    logf_("cancelling %d", sp_task_cancelling(t));
    if (sp_task_await(t, NULL) == -ECANCELED)
        logf_("main saw cancel");
    logf_("%s %s", sp_task_cancelled(t) ? "True" : "False",
          sp_task_cancel(t) == -EALREADY ? "False" : "True");
    sp_task_release(t);
    return 0;
}

static void test_cancel_during_sleep_twice_lets_task_clean_up(void **state) {
    (void)state;
    double t0 = sp_time();
    run_main(s_cancel_sleep, NULL);
    expect_log("a start", "cancelling 2", "a cancelled", "a cleaned", "main saw cancel",
               "True False");
    assert_true(sp_time() - t0 < 0.5);
}

static int self_cancel(void *arg, void **result) {
    (void)arg;
    sp_task_cancel(sp_task_current());
    *result = (void *)5;
    return 0;
}

static int s_self_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t;
    sp_spawn(&t, NULL, self_cancel, NULL);
    sp_sleep(0);
    sp_sleep(0);
    logf_("%d %d", sp_task_done(t), sp_task_cancelled(t));
    sp_task_release(t);
    return 0;
}

static void test_task_cancelled_right_before_return_ends_cancelled(void **state) {
    (void)state;
    run_main(s_self_cancel, NULL);
    expect_log("1 1");
}

static int swallow(void *arg, void **result) {
    (void)arg;
    if (sp_sleep(1) == -ECANCELED)
        logf_("swallowed");
    *result = (void *)7;
    return 0;
}

static int s_swallow(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t;
    sp_spawn(&t, NULL, swallow, NULL);
    sp_sleep(0);
    sp_task_cancel(t);
    void *r = NULL;
    assert_int_equal(sp_task_await(t, &r), 0);
    logf_("r=%d cancelled=%d cancelling=%d", (int)(intptr_t)r, sp_task_cancelled(t),
          sp_task_cancelling(t));
    sp_task_release(t);
    return 0;
}

static void test_task_may_swallow_cancellation_and_return_a_result(void **state) {
    (void)state;
    run_main(s_swallow, NULL);
    expect_log("swallowed", "r=7 cancelled=0 cancelling=1");
}

static int inner(void *arg, void **result) {
    (void)arg, (void)result;
    int rc = sp_sleep(1);
    if (rc == -ECANCELED)
        logf_("inner cancelled");
    return rc;
}

static int outer(void *arg, void **result) {
    (void)result;
    int rc = sp_task_await(arg, NULL);
    if (rc == -ECANCELED)
        logf_("outer cancelled");
    return rc;
}

static int s_propagate(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *i, *o;
    sp_spawn(&i, NULL, inner, NULL);
    sp_spawn(&o, NULL, outer, i);
    sp_sleep(0);
    sp_task_cancel(o);
    sp_gather(&o, 1, SP_GATHER_RETURN_EXCEPTIONS, NULL, NULL);
    logf_("i=%d o=%d", sp_task_cancelled(i), sp_task_cancelled(o));
    sp_task_release(i);
    sp_task_release(o);
    return 0;
}

static void test_cancelling_an_awaiting_task_cancels_the_awaited_one(void **state) {
    (void)state;
    run_main(s_propagate, NULL);
    expect_log("inner cancelled", "outer cancelled", "i=1 o=1");
}

static int ticker(void *arg, void **result) {
    (void)result;
    for (int i = 0; i < (int)(intptr_t)arg; i++) {
        logf_("tick%d", i);
        sp_sleep(0);
    }
    return 0;
}

static int s_interleave(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *a, *b;
    sp_spawn(&a, NULL, ticker, (void *)3);
    sp_spawn(&b, NULL, ticker, (void *)2);
    logf_("main");
    sp_sleep(0);
    logf_("main2");
    sp_task_await(a, NULL);
    sp_task_await(b, NULL);
    logf_("done");
    sp_task_release(a);
    sp_task_release(b);
    return 0;
}

static void test_yield_interleaves_ready_tasks_in_fifo_order(void **state) {
    (void)state;
    run_main(s_interleave, NULL);
    expect_log("main", "tick0", "tick0", "main2", "tick1", "tick1", "tick2", "done");
}

static void log_defer(void *arg) {
    logf_("defer %s", (char *)arg);
}

static int uses_arena(void *arg, void **result) {
    (void)result;
    char *buf = sp_task_alloc(100);
    assert_non_null(buf);
    strcpy(buf, "first");
    assert_int_equal(sp_task_defer(log_defer, buf), 0);
    for (int i = 0; i < 100; i++) /* spills over several arena chunks */
        assert_non_null(sp_task_alloc(1000));
    assert_int_equal(sp_task_defer(log_defer, "second"), 0);
    int mode = (int)(intptr_t)arg;
    if (mode == 1)
        return sp_fail(-EIO, "failing");
    if (mode == 2)
        return sp_sleep(1);
    return 0;
}

static int s_defer(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t[3];
    for (intptr_t i = 0; i < 3; i++)
        sp_spawn(&t[i], NULL, uses_arena, (void *)i);
    sp_sleep(0);
    sp_task_cancel(t[2]);
    int errs[3];
    sp_gather(t, 3, SP_GATHER_RETURN_EXCEPTIONS, NULL, errs);
    logf_("%d %d %d", errs[0], errs[1], errs[2]);
    for (int i = 0; i < 3; i++)
        sp_task_release(t[i]);
    assert_non_null(sp_task_alloc(1)); /* main is a task too */
    return 0;
}

static void test_deferred_calls_run_newest_first_on_every_way_out(void **state) {
    (void)state;
    run_main(s_defer, NULL);
    expect_log("defer second", "defer first", "defer second", "defer first", "defer second",
               "defer first", "0 -5 -125");
    assert_null(sp_task_alloc(1));
    assert_int_equal(sp_task_defer(log_defer, NULL), -EPERM);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_starts_lazily_and_await_returns_result),
        cmocka_unit_test(test_cancel_before_first_run_never_runs_the_body),
        cmocka_unit_test(test_cancel_during_sleep_twice_lets_task_clean_up),
        cmocka_unit_test(test_task_cancelled_right_before_return_ends_cancelled),
        cmocka_unit_test(test_task_may_swallow_cancellation_and_return_a_result),
        cmocka_unit_test(test_cancelling_an_awaiting_task_cancels_the_awaited_one),
        cmocka_unit_test(test_yield_interleaves_ready_tasks_in_fifo_order),
        cmocka_unit_test(test_deferred_calls_run_newest_first_on_every_way_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
