/* sp_to_thread: results and errors, 4-way parallelism on a pool of 4 while
 * the loop keeps ticking, cancellation of a queued call (never runs) and of a
 * running one (returns at once, its result goes to discard later), the
 * result that arrives just before a cancellation, loop teardown with calls
 * in flight, thread-count settings, and the deadlock detector around the
 * pool's eventfd. The cancellation orders match CPython 3.11's to_thread. */
#include <errno.h>
#include <stdatomic.h>
#include <unistd.h>

#include "sp_test.h"
#include "task_impl.h"

/* ---- Results and errors ---- */

static int add_one(void *arg, void **result) {
    *result = (void *)((intptr_t)arg + 1);
    return 0;
}

static int fail_eio(void *arg, void **result) {
    (void)arg, (void)result;
    return -EIO;
}

static int s_result_and_error(void *arg, void **result) {
    (void)arg, (void)result;
    void *r = NULL;
    assert_int_equal(sp_to_thread(add_one, (void *)41, NULL, &r), 0);
    assert_int_equal((intptr_t)r, 42);
    assert_int_equal(sp_to_thread(add_one, (void *)1, NULL, NULL), 0);
    r = (void *)7;
    assert_int_equal(sp_to_thread(fail_eio, NULL, NULL, &r), -EIO);
    assert_ptr_equal(r, (void *)7);
    assert_int_equal(sp_to_thread(NULL, NULL, NULL, &r), -EINVAL);
    return 0;
}

static void test_to_thread_returns_fn_result_and_error(void **state) {
    (void)state;
    run_main(s_result_and_error, NULL);
    void *r;
    assert_int_equal(sp_to_thread(add_one, NULL, NULL, &r), -EPERM);
}

/* ---- Parallelism without blocking the loop ---- */

static atomic_int running_now, running_max;

static int sleep_20ms(void *arg, void **result) {
    int now = atomic_fetch_add(&running_now, 1) + 1;
    int max = atomic_load(&running_max);
    while (now > max && !atomic_compare_exchange_weak(&running_max, &max, now))
        ;
    usleep(20000);
    atomic_fetch_sub(&running_now, 1);
    *result = (void *)((intptr_t)arg * 2);
    return 0;
}

typedef struct par_state {
    bool stop;
    double max_gap;
    int ticks;
    long sum;
} par_state;

static int ticker(void *arg, void **result) {
    (void)result;
    par_state *st = arg;
    double prev = sp_time();
    while (!st->stop) {
        sp_sleep(0.005);
        double now = sp_time();
        if (now - prev > st->max_gap)
            st->max_gap = now - prev;
        prev = now;
        st->ticks++;
    }
    return 0;
}

static int caller(void *arg, void **result) {
    return sp_to_thread(sleep_20ms, arg, NULL, result);
}

static int s_parallel(void *arg, void **result) {
    (void)result;
    par_state *st = arg;
    assert_int_equal(sp_offload_set_threads(4), 0);
    sp_task *tick, *tasks[100];
    sp_spawn(&tick, "ticker", ticker, st);
    double t0 = sp_time();
    for (intptr_t i = 0; i < 100; i++)
        assert_int_equal(sp_spawn(&tasks[i], NULL, caller, (void *)i), 0);
    for (int i = 0; i < 100; i++) {
        void *r = NULL;
        assert_int_equal(sp_task_await(tasks[i], &r), 0);
        st->sum += (intptr_t)r;
        sp_task_release(tasks[i]);
    }
    double elapsed = sp_time() - t0;
    st->stop = true;
    sp_task_await(tick, NULL);
    sp_task_release(tick);
    /* 25 rounds of 20 ms: 0.5 s with 4 threads, 2 s with one. */
    print_message("100 calls on 4 threads: %.3f s, longest loop gap %.1f ms, %d ticks\n", elapsed,
                  st->max_gap * 1e3, st->ticks);
    assert_true(elapsed >= 0.5 * 0.95);
    assert_true(elapsed < 0.5 * 1.5);
    return 0;
}

static void test_100_calls_on_4_threads_run_4_way_parallel_while_loop_ticks(void **state) {
    (void)state;
    par_state st = {0};
    atomic_store(&running_max, 0);
    run_main(s_parallel, &st);
    assert_int_equal(st.sum, 99 * 100); /* sum of 2*i */
    assert_int_equal(atomic_load(&running_max), 4);
    assert_true(st.max_gap < 0.050);
    assert_true(st.ticks > 50);
}

/* ---- Cancellation ---- */

typedef struct job_arg {
    int id;
    useconds_t sleep_us;
    atomic_bool started, finished;
    int *discarded; /* counts discard calls, for the job's caller to check */
    void *discarded_result;
} job_arg;

static int slow_job(void *arg, void **result) {
    job_arg *a = arg;
    atomic_store(&a->started, true);
    usleep(a->sleep_us);
    atomic_store(&a->finished, true);
    int *r = malloc(sizeof(*r));
    *r = a->id;
    *result = r;
    return 0;
}

/* Frees the result, as a real discard would, and records the call. */
static void discard_job(void *arg, void *result) {
    job_arg *a = arg;
    (*a->discarded)++;
    a->discarded_result = result;
    if (result)
        assert_int_equal(*(int *)result, a->id);
    free(result);
}

static int run_job(void *arg, void **result) {
    (void)result;
    int rc = sp_to_thread(slow_job, arg, discard_job, result);
    logf_("job %d: %s", ((job_arg *)arg)->id, rc == -ECANCELED ? "cancelled" : "ok");
    if (rc == 0)
        free(*result);
    return rc;
}

static int s_cancel_queued(void *arg, void **result) {
    (void)arg, (void)result;
    int discarded = 0;
    assert_int_equal(sp_offload_set_threads(1), 0);
    job_arg a = {.id = 1, .sleep_us = 60000, .discarded = &discarded};
    job_arg b = {.id = 2, .sleep_us = 1000, .discarded = &discarded};
    sp_task *ta, *tb;
    sp_spawn(&ta, NULL, run_job, &a);
    sp_spawn(&tb, NULL, run_job, &b);
    sp_sleep(0.02);
    assert_true(atomic_load(&a.started));
    sp_task_cancel(tb);
    assert_int_equal(sp_task_await(tb, NULL), -ECANCELED);
    /* Removed from the queue: discard got the arg back with no result. */
    assert_int_equal(discarded, 1);
    assert_null(b.discarded_result);
    assert_int_equal(sp_task_await(ta, NULL), 0);
    sp_sleep(0.02);
    assert_false(atomic_load(&b.started));
    assert_int_equal(discarded, 1);
    sp_task_release(ta);
    sp_task_release(tb);
    return 0;
}

static void test_cancel_queued_call_never_runs_it(void **state) {
    (void)state;
    run_main(s_cancel_queued, NULL);
    expect_log("job 2: cancelled", "job 1: ok");
}

static int s_cancel_running(void *arg, void **result) {
    (void)arg, (void)result;
    int discarded = 0;
    job_arg *a = calloc(1, sizeof(*a));
    a->id = 7;
    a->sleep_us = 150000;
    a->discarded = &discarded;
    sp_task *t;
    sp_spawn(&t, NULL, run_job, a);
    sp_sleep(0.03);
    assert_true(atomic_load(&a->started));
    double t0 = sp_time();
    sp_task_cancel(t);
    assert_int_equal(sp_task_await(t, NULL), -ECANCELED);
    double took = sp_time() - t0;
    assert_true(took < 0.02);
    assert_false(atomic_load(&a->finished));
    assert_int_equal(discarded, 0);
    /* fn runs on; its result reaches discard when it is done. */
    while (discarded == 0)
        sp_sleep(0.01);
    assert_true(atomic_load(&a->finished));
    assert_non_null(a->discarded_result);
    sp_task_release(t);
    free(a);
    return 0;
}

static void test_cancel_running_call_returns_at_once_and_discards_result_later(void **state) {
    (void)state;
    run_main(s_cancel_running, NULL);
    expect_log("job 7: cancelled");
}

/* The result is delivered, then the task is cancelled before it resumes:
 * the call returns -ECANCELED and the result goes to discard. */
typedef struct late_cancel {
    sp_task *waiter;
    int discarded;
} late_cancel;

static int cancel_once_delivered(void *arg, void **result) {
    (void)result;
    late_cancel *lc = arg;
    /* The waiter's step is queued behind ours in the iteration that
     * delivers the result, so we cancel it between delivery and resumption. */
    while (!(lc->waiter->fut_waiter && sp_future_done(lc->waiter->fut_waiter)))
        sp_yield();
    assert_int_equal(sp_task_cancel(lc->waiter), 0);
    return 0;
}

static int s_cancel_after_delivery(void *arg, void **result) {
    (void)arg, (void)result;
    late_cancel lc = {0};
    job_arg a = {.id = 3, .sleep_us = 20000, .discarded = &lc.discarded};
    sp_task *helper;
    sp_spawn(&lc.waiter, NULL, run_job, &a);
    sp_yield();
    sp_spawn(&helper, NULL, cancel_once_delivered, &lc);
    assert_int_equal(sp_task_await(lc.waiter, NULL), -ECANCELED);
    assert_int_equal(sp_task_await(helper, NULL), 0);
    assert_int_equal(lc.discarded, 1);
    assert_non_null(a.discarded_result);
    sp_task_release(lc.waiter);
    sp_task_release(helper);
    return 0;
}

static void test_result_delivered_then_cancelled_goes_to_discard(void **state) {
    (void)state;
    run_main(s_cancel_after_delivery, NULL);
    expect_log("job 3: cancelled");
}

/* ---- Teardown ---- */

typedef struct teardown {
    job_arg cancelled, orphaned;
    int discarded;
} teardown;

static int s_teardown(void *arg, void **result) {
    (void)result;
    teardown *td = arg;
    sp_task *t;
    /* One call cancelled by hand, one left to sp_run's final cancellation. */
    sp_spawn(&t, NULL, run_job, &td->cancelled);
    sp_spawn(NULL, NULL, run_job, &td->orphaned);
    sp_sleep(0.02);
    sp_task_cancel(t);
    assert_int_equal(sp_task_await(t, NULL), -ECANCELED);
    sp_task_release(t);
    return 0;
}

static void test_loop_teardown_waits_for_running_calls_and_discards_results(void **state) {
    (void)state;
    teardown td = {0};
    td.cancelled = (job_arg){.id = 1, .sleep_us = 100000, .discarded = &td.discarded};
    td.orphaned = (job_arg){.id = 2, .sleep_us = 120000, .discarded = &td.discarded};
    double t0 = sp_time();
    run_main(s_teardown, &td);
    assert_true(sp_time() - t0 >= 0.11);
    assert_true(atomic_load(&td.cancelled.finished));
    assert_true(atomic_load(&td.orphaned.finished));
    assert_int_equal(td.discarded, 2);
    expect_log("job 1: cancelled", "job 2: cancelled");
}

/* ---- Settings ---- */

static int s_set_threads(void *arg, void **result) {
    (void)arg, (void)result;
    assert_int_equal(sp_offload_set_threads(0), -EINVAL);
    assert_int_equal(sp_offload_set_threads(2), 0);
    job_arg a = {.id = 1, .sleep_us = 30000};
    job_arg b = {.id = 2, .sleep_us = 30000};
    sp_task *ta, *tb;
    sp_spawn(&ta, NULL, run_job, &a);
    sp_spawn(&tb, NULL, run_job, &b);
    sp_sleep(0.01);
    /* Two threads run: the pool can't shrink below that, but can grow. */
    assert_int_equal(sp_offload_set_threads(1), -EBUSY);
    assert_int_equal(sp_offload_set_threads(8), 0);
    assert_int_equal(sp_task_await(ta, NULL), 0);
    assert_int_equal(sp_task_await(tb, NULL), 0);
    sp_task_release(ta);
    sp_task_release(tb);
    return 0;
}

static void test_set_threads_validates_and_refuses_to_shrink_below_running(void **state) {
    (void)state;
    assert_int_equal(sp_offload_set_threads(4), -EPERM);
    run_main(s_set_threads, NULL);
    sp_log_n = 0;
}

/* ---- The deadlock detector ---- */

static int s_deadlock_after_offload(void *arg, void **result) {
    (void)arg, (void)result;
    assert_int_equal(sp_to_thread(add_one, NULL, NULL, NULL), 0);
    /* The pool's eventfd stays armed, but can't wake this. */
    sp_future never;
    sp_future_init(&never);
    int rc = sp_future_await(&never, NULL);
    logf_("woken: %s", rc == -ECANCELED ? "cancelled" : "other");
    return rc;
}

static void test_idle_pool_does_not_hide_a_deadlock(void **state) {
    (void)state;
    sp_log_n = 0;
    assert_int_equal(sp_run(s_deadlock_after_offload, NULL, NULL), -ECANCELED);
    expect_log("woken: cancelled");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_to_thread_returns_fn_result_and_error),
        cmocka_unit_test(test_100_calls_on_4_threads_run_4_way_parallel_while_loop_ticks),
        cmocka_unit_test(test_cancel_queued_call_never_runs_it),
        cmocka_unit_test(test_cancel_running_call_returns_at_once_and_discards_result_later),
        cmocka_unit_test(test_result_delivered_then_cancelled_goes_to_discard),
        cmocka_unit_test(test_loop_teardown_waits_for_running_calls_and_discards_results),
        cmocka_unit_test(test_set_threads_validates_and_refuses_to_shrink_below_running),
        cmocka_unit_test(test_idle_pool_does_not_hide_a_deadlock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
