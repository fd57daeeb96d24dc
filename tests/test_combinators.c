/* gather, wait_for, wait, as_completed, shield, TaskGroup and the timeout
 * scope. Each scenario mirrors a Python program run under CPython 3.11; the
 * expected logs are what asyncio printed. */
#include <errno.h>

#include "sp_test.h"

typedef struct work_arg {
    const char *name;
    double delay;
    bool fail;          /* fail with -EIO after the delay */
    bool swallow;       /* return a result when cancelled */
    double slow_cancel; /* seconds of cleanup after a cancellation */
} work_arg;

static int work(void *arg, void **result) {
    work_arg *w = arg;
    logf_("%s start", w->name);
    int rc = sp_sleep(w->delay);
    if (rc == -ECANCELED) {
        logf_("%s cancelled", w->name);
        if (w->slow_cancel > 0) {
            if (sp_sleep(w->slow_cancel) != 0)
                return -ECANCELED;
            logf_("%s finished cancelling", w->name);
        }
        if (w->swallow) {
            *result = (void *)w->name;
            return 0;
        }
        return rc;
    }
    if (w->fail) {
        logf_("%s fails", w->name);
        return sp_fail(-EIO, "%s failed", w->name);
    }
    logf_("%s end", w->name);
    *result = (void *)w->name;
    return 0;
}

static sp_task *spawn_work(work_arg *w) {
    sp_task *t;
    assert_int_equal(sp_spawn(&t, w->name, work, w), 0);
    return t;
}

static int s_gather_first_error(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.02}, wb = {"b", 0.01, .fail = true}, wc = {"c", 0.03};
    sp_task *ts[] = {spawn_work(&wa), spawn_work(&wb), spawn_work(&wc)};
    void *res[3];
    int rc = sp_gather(ts, 3, 0, res, NULL);
    if (rc == -EIO)
        logf_("gather raised b");
    logf_("a done=%s c done=%s", sp_task_done(ts[0]) ? "True" : "False",
          sp_task_done(ts[2]) ? "True" : "False");
    sp_sleep(0.05);
    void *ra, *rc_;
    sp_task_result(ts[0], &ra);
    sp_task_result(ts[2], &rc_);
    logf_("a=%s c=%s", (char *)ra, (char *)rc_);
    const char *msg;
    assert_int_equal(sp_task_error(ts[1], &msg), -EIO);
    assert_string_equal(msg, "b failed");
    release_all(ts, 3);
    return 0;
}

static void test_gather_returns_first_error_and_leaves_others_running(void **state) {
    (void)state;
    run_main(s_gather_first_error, NULL);
    expect_log("a start", "b start", "c start", "b fails", "gather raised b",
               "a done=False c done=False", "a end", "c end", "a=a c=c");
}

static int s_gather_return_exc(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.02}, wb = {"b", 0.01, .fail = true}, wc = {"c", 0.03}, wd = {"d", 1};
    sp_task *ts[] = {spawn_work(&wa), spawn_work(&wb), spawn_work(&wc), spawn_work(&wd)};
    sp_sleep(0);
    sp_task_cancel(ts[3]);
    void *res[4];
    int errs[4];
    assert_int_equal(sp_gather(ts, 4, SP_GATHER_RETURN_EXCEPTIONS, res, errs), 0);
    logf_("results ['%s', '%s', '%s', '%s']", (char *)res[0], errs[1] == -EIO ? "ValueError" : "?",
          (char *)res[2], errs[3] == -ECANCELED ? "CancelledError" : "?");
    release_all(ts, 4);
    return 0;
}

static void test_gather_return_exceptions_reports_each_outcome(void **state) {
    (void)state;
    run_main(s_gather_return_exc, NULL);
    expect_log("a start", "b start", "c start", "d start", "d cancelled", "b fails", "a end",
               "c end", "results ['a', 'ValueError', 'c', 'CancelledError']");
}

static int s_gather_cancelled_child(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.02}, wb = {"b", 1};
    sp_task *ts[] = {spawn_work(&wa), spawn_work(&wb)};
    sp_sleep(0.005);
    sp_task_cancel(ts[1]);
    if (sp_gather(ts, 2, 0, NULL, NULL) == -ECANCELED)
        logf_("gather cancelled");
    logf_("a done=%s cancelling=%d", sp_task_done(ts[0]) ? "True" : "False",
          sp_task_cancelling(sp_task_current()));
    sp_task_await(ts[0], NULL);
    release_all(ts, 2);
    return 0;
}

static void test_gather_with_a_cancelled_child_returns_ecanceled(void **state) {
    (void)state;
    run_main(s_gather_cancelled_child, NULL);
    expect_log("a start", "b start", "b cancelled", "gather cancelled", "a done=False cancelling=0",
               "a end");
}

static int gather_outer(void *arg, void **result) {
    (void)result;
    int rc = sp_gather(arg, 2, 0, NULL, NULL);
    if (rc == -ECANCELED)
        logf_("outer cancelled");
    return rc;
}

static int s_gather_outer_cancelled(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 1}, wb = {"b", 1, .slow_cancel = 0.01};
    sp_task *ts[] = {spawn_work(&wa), spawn_work(&wb)};
    sp_task *o;
    sp_spawn(&o, NULL, gather_outer, ts);
    sp_sleep(0.005);
    sp_task_cancel(o);
    sp_wait(&o, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("a=%s b=%s o=%s", sp_task_cancelled(ts[0]) ? "True" : "False",
          sp_task_cancelled(ts[1]) ? "True" : "False", sp_task_cancelled(o) ? "True" : "False");
    release_all(ts, 2);
    sp_task_release(o);
    return 0;
}

static void test_cancelling_a_gathering_task_cancels_every_child(void **state) {
    (void)state;
    run_main(s_gather_outer_cancelled, NULL);
    expect_log("a start", "b start", "a cancelled", "b cancelled", "outer cancelled",
               "a=True b=False o=True");
}

static int s_wait_for_timeout(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 1, .slow_cancel = 0.02};
    sp_task *t = spawn_work(&wa);
    double t0 = sp_time();
    if (sp_wait_for(t, 0.01, NULL) == -ETIMEDOUT)
        logf_("timeout");
    logf_("elapsed>=0.03 %s cancelled=%s", sp_time() - t0 >= 0.029 ? "True" : "False",
          sp_task_cancelled(t) ? "True" : "False");
    sp_task_release(t);
    return 0;
}

static void test_wait_for_waits_for_a_slow_canceller_then_times_out(void **state) {
    (void)state;
    run_main(s_wait_for_timeout, NULL);
    expect_log("a start", "a cancelled", "a finished cancelling", "timeout",
               "elapsed>=0.03 True cancelled=True");
}

static int s_wait_for_swallow(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 1, .swallow = true};
    sp_task *t = spawn_work(&wa);
    void *r = NULL;
    assert_int_equal(sp_wait_for(t, 0.01, &r), 0);
    logf_("r=%s", (char *)r);
    sp_task_release(t);
    return 0;
}

static void test_wait_for_returns_the_result_of_a_task_that_ignores_cancel(void **state) {
    (void)state;
    run_main(s_wait_for_swallow, NULL);
    expect_log("a start", "a cancelled", "r=a");
}

static int s_wait_for_zero(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 1}, wb = {"b", 0};
    sp_task *t = spawn_work(&wa);
    if (sp_wait_for(t, 0, NULL) == -ETIMEDOUT)
        logf_("timeout");
    sp_task *t2 = spawn_work(&wb);
    sp_sleep(0.01);
    void *r = NULL;
    assert_int_equal(sp_wait_for(t2, 0, &r), 0);
    logf_("r=%s", (char *)r);
    sp_task_release(t);
    sp_task_release(t2);
    return 0;
}

static void test_wait_for_zero_timeout_cancels_unless_already_done(void **state) {
    (void)state;
    run_main(s_wait_for_zero, NULL);
    expect_log("timeout", "b start", "b end", "r=b");
}

static int s_wait_first_completed(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.01}, wb = {"b", 0.05};
    sp_task *ts[] = {spawn_work(&wa), spawn_work(&wb)};
    bool done[2];
    size_t ndone;
    assert_int_equal(sp_wait(ts, 2, SP_FIRST_COMPLETED, -1, done, &ndone), 0);
    logf_("done=%zu a=%s pending=%zu", ndone, done[0] ? "True" : "False", 2 - ndone);
    sp_task_cancel(ts[1]);
    sp_wait(&ts[1], 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("b cancelled=%s", sp_task_cancelled(ts[1]) ? "True" : "False");
    release_all(ts, 2);
    return 0;
}

static void test_wait_first_completed_then_cancel_the_rest(void **state) {
    (void)state;
    run_main(s_wait_first_completed, NULL);
    expect_log("a start", "b start", "a end", "done=1 a=True pending=1", "b cancelled",
               "b cancelled=True");
}

static int s_wait_first_exception(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.01}, wb = {"b", 0.05, .fail = true}, wc = {"c", 1};
    sp_task *ts[] = {spawn_work(&wa), spawn_work(&wb), spawn_work(&wc)};
    size_t ndone;
    assert_int_equal(sp_wait(ts, 3, SP_FIRST_EXCEPTION, 0.1, NULL, &ndone), 0);
    logf_("done=%zu pending=%zu", ndone, 3 - ndone);
    sp_task_cancel(ts[2]);
    sp_wait(&ts[2], 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    release_all(ts, 3);
    return 0;
}

static void test_wait_first_exception_returns_at_the_first_failure(void **state) {
    (void)state;
    run_main(s_wait_first_exception, NULL);
    expect_log("a start", "b start", "c start", "a end", "b fails", "done=2 pending=1",
               "c cancelled");
}

static int s_wait_edges(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 1};
    sp_task *t = spawn_work(&wa);
    assert_int_equal(sp_wait(&t, 0, SP_ALL_COMPLETED, -1, NULL, NULL), -EINVAL);
    assert_int_equal(sp_wait(&t, 1, 7, -1, NULL, NULL), -EINVAL);
    size_t ndone = 9;
    double t0 = sp_time();
    assert_int_equal(sp_wait(&t, 1, SP_ALL_COMPLETED, 0.02, NULL, &ndone), 0);
    assert_int_equal(ndone, 0);
    assert_true(sp_time() - t0 >= 0.019);
    assert_false(sp_task_done(t));
    sp_task_cancel(t);
    assert_int_equal(sp_task_await(t, NULL), -ECANCELED);
    sp_task_release(t);
    return 0;
}

static void test_wait_rejects_empty_sets_and_times_out_without_cancelling(void **state) {
    (void)state;
    run_main(s_wait_edges, NULL);
    expect_log("a start", "a cancelled");
}

static int s_as_completed(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg w[] = {{"a", 0.03}, {"b", 0.01}, {"c", 0.02}, {"d", 1}};
    sp_task *ts[] = {spawn_work(&w[0]), spawn_work(&w[1]), spawn_work(&w[2]), spawn_work(&w[3])};
    sp_as_completed *ac;
    assert_int_equal(sp_as_completed_begin(&ac, ts, 4, 0.05), 0);
    for (;;) {
        void *r;
        int rc = sp_as_completed_next(ac, NULL, &r);
        if (rc == -ETIMEDOUT) {
            logf_("as_completed timeout");
            break;
        }
        if (rc != 0)
            break;
        logf_("got %s", (char *)r);
    }
    sp_as_completed_end(ac);
    sp_task_cancel(ts[3]);
    sp_wait(&ts[3], 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    release_all(ts, 4);
    return 0;
}

static void test_as_completed_yields_in_completion_order_then_times_out(void **state) {
    (void)state;
    run_main(s_as_completed, NULL);
    expect_log("a start", "b start", "c start", "d start", "b end", "got b", "c end", "got c",
               "a end", "got a", "as_completed timeout", "d cancelled");
}

static int s_as_completed_all(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg w[] = {{"a", 0.02}, {"b", 0.01, .fail = true}};
    sp_task *ts[] = {spawn_work(&w[0]), spawn_work(&w[1]), NULL};
    ts[2] = ts[0]; /* duplicates count once */
    sp_as_completed *ac;
    assert_int_equal(sp_as_completed_begin(&ac, ts, 3, -1), 0);
    sp_task *which;
    assert_int_equal(sp_as_completed_next(ac, &which, NULL), -EIO);
    assert_ptr_equal(which, ts[1]);
    assert_int_equal(sp_as_completed_next(ac, &which, NULL), 0);
    assert_ptr_equal(which, ts[0]);
    assert_int_equal(sp_as_completed_next(ac, &which, NULL), -ENOENT);
    sp_as_completed_end(ac);
    release_all(ts, 2);
    return 0;
}

static void test_as_completed_reports_errors_and_ends_with_enoent(void **state) {
    (void)state;
    run_main(s_as_completed_all, NULL);
    expect_log("a start", "b start", "b fails", "a end");
}

/* Waits in sp_wait or sp_as_completed_next (arg selects) until cancelled. */
static int waits_on_one(void *arg, void **result) {
    (void)result;
    sp_task **t = arg;
    int rc;
    if (t[1]) {
        rc = sp_wait(t, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    } else {
        sp_as_completed *ac;
        assert_int_equal(sp_as_completed_begin(&ac, t, 1, -1), 0);
        rc = sp_as_completed_next(ac, NULL, NULL);
        sp_as_completed_end(ac);
    }
    logf_("waiter rc=%s", rc == -ECANCELED ? "ECANCELED" : "?");
    return rc;
}

static int s_cancel_waiters(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.03};
    sp_task *a = spawn_work(&wa);
    for (int mode = 0; mode < 2; mode++) {
        sp_task *args[2] = {a, mode ? a : NULL};
        sp_task *w;
        sp_spawn(&w, NULL, waits_on_one, args);
        sp_sleep(0.001);
        sp_task_cancel(w);
        assert_int_equal(sp_task_await(w, NULL), -ECANCELED);
        sp_task_release(w);
    }
    /* Neither wait cancels what it watches. */
    assert_false(sp_task_done(a));
    void *r;
    assert_int_equal(sp_task_await(a, &r), 0);
    sp_task_release(a);
    return 0;
}

static void test_cancelling_wait_or_as_completed_leaves_the_tasks_running(void **state) {
    (void)state;
    run_main(s_cancel_waiters, NULL);
    expect_log("a start", "waiter rc=ECANCELED", "waiter rc=ECANCELED", "a end");
}

static int shielded(void *arg, void **result) {
    int rc = sp_shield(arg, result);
    if (rc == -ECANCELED)
        logf_("shield caller cancelled");
    return rc;
}

static int s_shield(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.02};
    sp_task *t = spawn_work(&wa);
    sp_task *o;
    sp_spawn(&o, NULL, shielded, t);
    sp_sleep(0.005);
    sp_task_cancel(o);
    sp_wait(&o, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("o cancelled=%s t done=%s", sp_task_cancelled(o) ? "True" : "False",
          sp_task_done(t) ? "True" : "False");
    void *r;
    sp_task_await(t, &r);
    logf_("t=%s", (char *)r);
    sp_task_release(t);
    sp_task_release(o);
    return 0;
}

static void test_shield_keeps_the_task_running_when_the_caller_is_cancelled(void **state) {
    (void)state;
    run_main(s_shield, NULL);
    expect_log("a start", "shield caller cancelled", "o cancelled=True t done=False", "a end",
               "t=a");
}

static int s_taskgroup_fail(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.05}, wb = {"b", 0.01, .fail = true}, wc = {"c", 0.05};
    sp_taskgroup g;
    assert_int_equal(sp_taskgroup_init(&g), 0);
    sp_taskgroup_spawn(&g, NULL, "a", work, &wa);
    sp_taskgroup_spawn(&g, NULL, "b", work, &wb);
    sp_taskgroup_spawn(&g, NULL, "c", work, &wc);
    int rc = sp_sleep(1);
    if (rc == 0)
        logf_("body not reached");
    rc = sp_taskgroup_wait(&g, rc);
    size_t nerr;
    const sp_tg_error *errs = sp_taskgroup_errors(&g, &nerr);
    if (rc == -EIO)
        logf_("group failed %zu", nerr);
    assert_string_equal(errs[0].task_name, "b");
    assert_string_equal(errs[0].msg, "b failed");
    sp_taskgroup_fini(&g);
    logf_("cancelling=%d", sp_task_cancelling(sp_task_current()));
    assert_int_equal(sp_sleep(0.001), 0);
    logf_("after");
    return 0;
}

static void test_taskgroup_first_failure_cancels_siblings_and_body(void **state) {
    (void)state;
    run_main(s_taskgroup_fail, NULL);
    /* asyncio cancels the siblings in set order (c, a here); ours is spawn order. */
    expect_log("a start", "b start", "c start", "b fails", "a cancelled", "c cancelled",
               "group failed 1", "cancelling=0", "after");
}

static int tg_parent(void *arg, void **result) {
    (void)arg, (void)result;
    static work_arg wa = {"a", 1}, wb = {"b", 1};
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, work, &wa);
    sp_taskgroup_spawn(&g, NULL, NULL, work, &wb);
    int rc = sp_sleep(1);
    rc = sp_taskgroup_wait(&g, rc);
    sp_taskgroup_fini(&g);
    if (rc == -ECANCELED)
        logf_("parent cancelled");
    return rc;
}

static int s_taskgroup_parent_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *p;
    sp_spawn(&p, NULL, tg_parent, NULL);
    sp_sleep(0.01);
    sp_task_cancel(p);
    sp_wait(&p, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("p cancelled=%s", sp_task_cancelled(p) ? "True" : "False");
    sp_task_release(p);
    return 0;
}

static void test_cancelling_the_taskgroup_owner_cancels_its_children(void **state) {
    (void)state;
    run_main(s_taskgroup_parent_cancel, NULL);
    expect_log("a start", "b start", "a cancelled", "b cancelled", "parent cancelled",
               "p cancelled=True");
}

static int nested_inner(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wx = {"x", 1}, wy = {"y", 0.01, .fail = true};
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, work, &wx);
    sp_taskgroup_spawn(&g, NULL, NULL, work, &wy);
    int rc = sp_taskgroup_wait(&g, 0);
    sp_taskgroup_fini(&g);
    return rc;
}

static int s_taskgroup_nested(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wo = {"o", 1};
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, work, &wo);
    sp_taskgroup_spawn(&g, NULL, "inner", nested_inner, NULL);
    int rc = sp_taskgroup_wait(&g, 0);
    size_t n;
    const sp_tg_error *e = sp_taskgroup_errors(&g, &n);
    logf_("rc=%d n=%zu from=%s", rc, n, e[0].task_name);
    sp_taskgroup_fini(&g);
    return 0;
}

static void test_nested_taskgroup_failure_propagates_to_the_outer_group(void **state) {
    (void)state;
    run_main(s_taskgroup_nested, NULL);
    expect_log("o start", "x start", "y start", "y fails", "x cancelled", "o cancelled",
               "rc=-5 n=1 from=inner");
}

static int fail_soon(void *arg, void **result) {
    (void)arg, (void)result;
    int rc = sp_sleep(0.01);
    return rc ? rc : sp_fail(-EINVAL, "x");
}

static int s_taskgroup_body_survives(void *arg, void **result) {
    (void)arg, (void)result;
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, fail_soon, NULL);
    if (sp_sleep(1) == -ECANCELED)
        logf_("body saw cancel, finishes normally");
    int rc = sp_taskgroup_wait(&g, 0);
    size_t n;
    sp_taskgroup_errors(&g, &n);
    if (rc == -EINVAL)
        logf_("group failed %zu", n);
    sp_taskgroup_fini(&g);
    logf_("cancelling=%d", sp_task_cancelling(sp_task_current()));
    return 0;
}

static void test_taskgroup_undoes_its_cancel_even_if_the_body_ends_normally(void **state) {
    (void)state;
    run_main(s_taskgroup_body_survives, NULL);
    expect_log("body saw cancel, finishes normally", "group failed 1", "cancelling=0");
}

static int fail_after_yield(void *arg, void **result) {
    (void)arg, (void)result;
    int rc = sp_yield();
    return rc ? rc : sp_fail(-EINVAL, "x");
}

/* Steps counted with yields, not timers, so the child fails in the very
 * iteration where the outside cancel lands, as in the Python run. */
static int tg_inner_parent(void *arg, void **result) {
    (void)arg, (void)result;
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, fail_after_yield, NULL);
    int rc = sp_taskgroup_wait(&g, sp_sleep(1));
    sp_taskgroup_fini(&g);
    if (rc == -EINVAL)
        logf_("errors win over cancellation");
    return 0;
}

static int s_taskgroup_errors_beat_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t;
    sp_spawn(&t, NULL, tg_inner_parent, NULL);
    sp_yield();
    sp_yield();
    sp_task_cancel(t);
    if (sp_task_await(t, NULL) == -ECANCELED)
        logf_("t cancelled");
    logf_("t cancelled=%s", sp_task_cancelled(t) ? "True" : "False");
    sp_task_release(t);
    return 0;
}

static void test_taskgroup_child_errors_win_over_an_outside_cancel(void **state) {
    (void)state;
    run_main(s_taskgroup_errors_beat_cancel, NULL);
    expect_log("errors win over cancellation", "t cancelled=False");
}

static int s_timeout_scope(void *arg, void **result) {
    (void)arg, (void)result;
    sp_timeout tm;
    sp_timeout_enter(&tm, 0.01);
    int rc = sp_timeout_exit(&tm, sp_sleep(1));
    if (rc == -ETIMEDOUT)
        logf_("timed out");
    logf_("cancelling=%d", sp_task_cancelling(sp_task_current()));
    assert_true(sp_timeout_expired(&tm));
    sp_timeout_enter(&tm, 1);
    assert_int_equal(sp_timeout_exit(&tm, sp_sleep(0.001)), 0);
    assert_false(sp_timeout_expired(&tm));
    return 0;
}

static void test_timeout_scope_turns_its_cancellation_into_etimedout(void **state) {
    (void)state;
    run_main(s_timeout_scope, NULL);
    expect_log("timed out", "cancelling=0");
}

static int timeout_then_cancelled(void *arg, void **result) {
    (void)arg, (void)result;
    sp_timeout tm;
    sp_timeout_enter(&tm, 0);
    /* A second cancellation is outstanding when the timeout fires: the scope
     * must let it through instead of reporting a timeout. */
    sp_task_cancel(sp_task_current());
    int rc = sp_timeout_exit(&tm, sp_sleep(1));
    logf_("%s %d",
          rc == -ECANCELED   ? "cancelled"
          : rc == -ETIMEDOUT ? "timeout"
                             : "?",
          sp_task_cancelling(sp_task_current()));
    return rc;
}

static int s_timeout_outer_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t;
    sp_spawn(&t, NULL, timeout_then_cancelled, NULL);
    if (sp_task_await(t, NULL) == -ECANCELED)
        logf_("x cancelled %s", sp_task_cancelled(t) ? "True" : "False");
    sp_task_release(t);
    return 0;
}

static void test_timeout_scope_lets_an_outside_cancellation_through(void **state) {
    (void)state;
    run_main(s_timeout_outer_cancel, NULL);
    expect_log("cancelled 1", "x cancelled True");
}

static int empty_task(void *arg, void **result) {
    *result = arg;
    return 0;
}

static int s_gather_10k(void *arg, void **result) {
    (void)arg, (void)result;
    enum { N = 10000 };
    sp_task **ts = calloc(N, sizeof(*ts));
    void **res = calloc(N, sizeof(*res));
    for (intptr_t i = 0; i < N; i++)
        assert_int_equal(sp_spawn(&ts[i], NULL, empty_task, (void *)i), 0);
    assert_int_equal(sp_gather(ts, N, 0, res, NULL), 0);
    for (intptr_t i = 0; i < N; i++)
        assert_ptr_equal(res[i], (void *)i);
    release_all(ts, N);
    assert_int_equal(sp_gather(ts, 0, 0, NULL, NULL), 0);
    free(ts);
    free(res);
    return 0;
}

static void test_gather_of_10000_tasks_keeps_argument_order(void **state) {
    (void)state;
    run_main(s_gather_10k, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_returns_first_error_and_leaves_others_running),
        cmocka_unit_test(test_gather_return_exceptions_reports_each_outcome),
        cmocka_unit_test(test_gather_with_a_cancelled_child_returns_ecanceled),
        cmocka_unit_test(test_cancelling_a_gathering_task_cancels_every_child),
        cmocka_unit_test(test_gather_of_10000_tasks_keeps_argument_order),
        cmocka_unit_test(test_wait_for_waits_for_a_slow_canceller_then_times_out),
        cmocka_unit_test(test_wait_for_returns_the_result_of_a_task_that_ignores_cancel),
        cmocka_unit_test(test_wait_for_zero_timeout_cancels_unless_already_done),
        cmocka_unit_test(test_wait_first_completed_then_cancel_the_rest),
        cmocka_unit_test(test_wait_first_exception_returns_at_the_first_failure),
        cmocka_unit_test(test_wait_rejects_empty_sets_and_times_out_without_cancelling),
        cmocka_unit_test(test_as_completed_yields_in_completion_order_then_times_out),
        cmocka_unit_test(test_as_completed_reports_errors_and_ends_with_enoent),
        cmocka_unit_test(test_shield_keeps_the_task_running_when_the_caller_is_cancelled),
        cmocka_unit_test(test_cancelling_wait_or_as_completed_leaves_the_tasks_running),
        cmocka_unit_test(test_taskgroup_first_failure_cancels_siblings_and_body),
        cmocka_unit_test(test_cancelling_the_taskgroup_owner_cancels_its_children),
        cmocka_unit_test(test_nested_taskgroup_failure_propagates_to_the_outer_group),
        cmocka_unit_test(test_taskgroup_undoes_its_cancel_even_if_the_body_ends_normally),
        cmocka_unit_test(test_taskgroup_child_errors_win_over_an_outside_cancel),
        cmocka_unit_test(test_timeout_scope_turns_its_cancellation_into_etimedout),
        cmocka_unit_test(test_timeout_scope_lets_an_outside_cancellation_through),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
