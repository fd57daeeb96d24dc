/* Token buckets: try_acquire counts and retry_after, acquire waiting the
 * right time, FIFO order among waiters, timeouts (at once when hopeless,
 * else at the deadline), cancellation consuming nothing (also after being
 * served, as asyncio's Semaphore), the accepted rate over 3 s within 2% of
 * burst + rate * elapsed, the header query, and the keyed map: bounded
 * memory, LRU eviction, expiry of idle buckets, header info. */
#include <errno.h>
#include <math.h>
#include <unistd.h>

#include "sp_test.h"
#include "task_impl.h"

#define assert_near(x, want, tol)                                                                  \
    do {                                                                                           \
        double x_ = (x), w_ = (want);                                                              \
        if (fabs(x_ - w_) > (tol))                                                                 \
            fail_msg("%s = %.6f, want %.6f +- %.6f", #x, x_, w_, (double)(tol));                   \
    } while (0)

/* ---- try_acquire ---- */

static void test_try_acquire_takes_the_burst_then_reports_retry_after(void **state) {
    (void)state;
    sp_ratelimit rl;
    assert_int_equal(sp_ratelimit_init(&rl, 0, 5), -EINVAL);
    assert_int_equal(sp_ratelimit_init(&rl, 10, NAN), -EINVAL);
    assert_int_equal(sp_ratelimit_init(&rl, 10, 5), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(sp_ratelimit_try_acquire(&rl, 1, NULL), 0);
    double retry = -1;
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 1, &retry), -EAGAIN);
    assert_true(retry > 0.09 && retry <= 0.1);
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 3, &retry), -EAGAIN);
    assert_true(retry > 0.29 && retry <= 0.3);
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 6, &retry), -EINVAL);
    assert_int_equal(sp_ratelimit_try_acquire(&rl, -1, &retry), -EINVAL);
    /* Waiting what retry_after said is enough, and not much less is. */
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 1.5, &retry), -EAGAIN);
    usleep((useconds_t)(retry * 0.8 * 1e6));
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 1.5, NULL), -EAGAIN);
    usleep((useconds_t)(retry * 0.25 * 1e6));
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 1.5, NULL), 0);
    assert_int_equal(sp_ratelimit_fini(&rl), 0);
}

/* ---- acquire ---- */

static int s_acquire_waits(void *arg, void **result) {
    (void)arg, (void)result;
    sp_ratelimit rl;
    sp_ratelimit_init(&rl, 20, 1);
    double t0 = sp_time();
    assert_int_equal(sp_ratelimit_acquire(&rl, 1, -1), 0);
    assert_true(sp_time() - t0 < 0.005);
    assert_int_equal(sp_ratelimit_acquire(&rl, 1, -1), 0);
    double waited = sp_time() - t0;
    assert_true(waited >= 0.05 && waited < 0.07);
    assert_int_equal(sp_ratelimit_acquire(&rl, 2, -1), -EINVAL);
    assert_int_equal(sp_ratelimit_acquire(&rl, 0, -1), 0);
    return 0;
}

static void test_acquire_waits_until_the_tokens_are_there(void **state) {
    (void)state;
    run_main(s_acquire_waits, NULL);
}

typedef struct acq {
    sp_ratelimit *rl;
    const char *name;
    double n, timeout, t0, at;
    int rc;
} acq;

static int acquirer(void *arg, void **result) {
    (void)result;
    acq *a = arg;
    a->rc = sp_ratelimit_acquire(a->rl, a->n, a->timeout);
    a->at = sp_time() - a->t0;
    logf_("%s %s", a->name,
          a->rc == 0            ? "got"
          : a->rc == -ETIMEDOUT ? "timed out"
          : a->rc == -ECANCELED ? "cancelled"
                                : "error");
    return 0;
}

static void spawn_all(acq *a, int n, sp_task **t) {
    for (int i = 0; i < n; i++)
        sp_spawn(&t[i], a[i].name, acquirer, &a[i]);
}

static void await_all(int n, sp_task **t) {
    for (int i = 0; i < n; i++) {
        sp_task_await(t[i], NULL);
        sp_task_release(t[i]);
    }
}

static int s_fifo(void *arg, void **result) {
    (void)arg, (void)result;
    sp_ratelimit rl;
    sp_ratelimit_init(&rl, 100, 10);
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 10, NULL), 0);
    double t0 = sp_time();
    acq a[3] = {{&rl, "big", 8, -1, t0, 0, 0},
                {&rl, "small", 1, -1, t0, 0, 0},
                {&rl, "medium", 2, -1, t0, 0, 0}};
    sp_task *t[3];
    spawn_all(a, 3, t);
    sp_sleep(0.01);
    /* Tokens are back for "small" long before "big", but it waits its turn,
     * and so does a newcomer. */
    double retry;
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 1, &retry), -EAGAIN);
    assert_near(retry, 0.12 - (sp_time() - t0), 0.005);
    await_all(3, t);
    assert_near(a[0].at, 0.08, 0.015);
    assert_near(a[1].at, 0.09, 0.015);
    assert_near(a[2].at, 0.11, 0.015);
    assert_int_equal(sp_ratelimit_fini(&rl), 0);
    return 0;
}

static void test_waiters_are_served_in_fifo_order(void **state) {
    (void)state;
    run_main(s_fifo, NULL);
    expect_log("big got", "small got", "medium got");
}

static int s_timeout(void *arg, void **result) {
    (void)arg, (void)result;
    sp_ratelimit rl;
    sp_ratelimit_init(&rl, 10, 5);
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 5, NULL), 0);
    /* 0.1 s is needed for one token: a 0.05 s timeout can't be met. */
    double t0 = sp_time();
    assert_int_equal(sp_ratelimit_acquire(&rl, 1, 0.05), -ETIMEDOUT);
    assert_true(sp_time() - t0 < 0.005);
    /* Behind a waiter for 5 tokens (0.5 s), one token within 0.2 s could come
     * only if that waiter left: wait, then fail at the deadline. */
    t0 = sp_time();
    acq a[2] = {{&rl, "five", 5, -1, t0, 0, 0}, {&rl, "one", 1, 0.2, t0, 0, 0}};
    sp_task *t[2];
    spawn_all(a, 2, t);
    await_all(2, t);
    assert_int_equal(a[1].rc, -ETIMEDOUT);
    assert_near(a[1].at, 0.2, 0.02);
    assert_int_equal(a[0].rc, 0);
    assert_near(a[0].at, 0.5, 0.02);
    return 0;
}

static void test_acquire_times_out_at_once_when_hopeless_else_at_deadline(void **state) {
    (void)state;
    run_main(s_timeout, NULL);
    expect_log("one timed out", "five got");
}

static int s_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_ratelimit rl;
    sp_ratelimit_init(&rl, 10, 5);
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 5, NULL), 0);
    double t0 = sp_time();
    acq a[2] = {{&rl, "five", 5, -1, t0, 0, 0}, {&rl, "one", 1, -1, t0, 0, 0}};
    sp_task *t[2];
    spawn_all(a, 2, t);
    sp_sleep(0.15);
    sp_task_cancel(t[0]);
    /* "one" moves up: its token has been there since 0.1 s. */
    await_all(2, t);
    assert_int_equal(a[0].rc, -ECANCELED);
    assert_near(a[1].at, 0.15, 0.01);
    /* The cancelled waiter took nothing: 1.5 tokens came in, 1 was taken. */
    sp_ratelimit_info info;
    sp_ratelimit_query(&rl, &info);
    assert_int_equal(info.remaining, 0);
    assert_near(info.reset, (5 - 0.5) / 10, 0.01);
    return 0;
}

static void test_cancelled_waiter_consumes_nothing_and_the_next_moves_up(void **state) {
    (void)state;
    run_main(s_cancel, NULL);
    expect_log("five cancelled", "one got");
}

/* Served, then cancelled before resuming: the tokens go back. */
typedef struct late {
    sp_task *waiter;
} late;

static int cancel_once_served(void *arg, void **result) {
    (void)result;
    late *l = arg;
    /* Our step precedes the waiter's in the iteration that serves it. */
    while (!(l->waiter->fut_waiter && sp_future_done(l->waiter->fut_waiter)))
        sp_yield();
    sp_task_cancel(l->waiter);
    return 0;
}

static int s_cancel_after_served(void *arg, void **result) {
    (void)arg, (void)result;
    sp_ratelimit rl;
    sp_ratelimit_init(&rl, 100, 4);
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 4, NULL), 0);
    acq a = {&rl, "four", 4, -1, sp_time(), 0, 0};
    late l;
    sp_task *helper;
    sp_spawn(&l.waiter, NULL, acquirer, &a);
    sp_yield();
    sp_spawn(&helper, NULL, cancel_once_served, &l);
    sp_task_await(l.waiter, NULL);
    sp_task_await(helper, NULL);
    assert_int_equal(a.rc, -ECANCELED);
    /* All 4 tokens are back: taking them now succeeds at once. */
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 4, NULL), 0);
    sp_task_release(l.waiter);
    sp_task_release(helper);
    return 0;
}

static void test_waiter_cancelled_after_being_served_gives_tokens_back(void **state) {
    (void)state;
    run_main(s_cancel_after_served, NULL);
    expect_log("four cancelled");
}

/* ---- The rate over time ---- */

static int s_rate(void *arg, void **result) {
    (void)arg, (void)result;
    sp_ratelimit rl;
    sp_ratelimit_init(&rl, 100, 10);
    double t0 = sp_time(), elapsed = 0;
    long accepted = 0;
    while (elapsed < 3.0) {
        while (sp_ratelimit_try_acquire(&rl, 1, NULL) == 0)
            accepted++;
        elapsed = sp_time() - t0;
        sp_sleep(0.01);
    }
    double ideal = 10 + 100 * elapsed;
    print_message("accepted %ld in %.3f s, ideal %.1f\n", accepted, elapsed, ideal);
    assert_true(fabs((double)accepted - ideal) <= 0.02 * ideal);
    return 0;
}

static void test_accepted_count_over_3_seconds_is_within_2_percent_of_ideal(void **state) {
    (void)state;
    run_main(s_rate, NULL);
}

static void test_query_reports_remaining_and_seconds_until_full(void **state) {
    (void)state;
    sp_ratelimit rl;
    sp_ratelimit_init(&rl, 2, 10);
    sp_ratelimit_info info;
    sp_ratelimit_query(&rl, &info);
    assert_near(info.limit, 10, 0);
    assert_near(info.remaining, 10, 0);
    assert_near(info.reset, 0, 0);
    assert_int_equal(sp_ratelimit_try_acquire(&rl, 3.5, NULL), 0);
    sp_ratelimit_query(&rl, &info);
    assert_near(info.remaining, 6, 0);
    assert_near(info.reset, 1.75, 0.001);
}

/* ---- The keyed map ---- */

static void test_map_keeps_at_most_max_keys(void **state) {
    (void)state;
    sp_ratelimit_map *m;
    assert_int_equal(sp_ratelimit_map_create(&m, 1, 5, 0), -EINVAL);
    assert_int_equal(sp_ratelimit_map_create(&m, 1, 5, 1000), 0);
    for (uint32_t i = 0; i < 100000; i++) {
        assert_int_equal(sp_ratelimit_map_try_acquire(m, &i, sizeof(i), 1, NULL, NULL), 0);
        assert_true(sp_ratelimit_map_count(m) <= 1000);
    }
    assert_int_equal(sp_ratelimit_map_count(m), 1000);
    /* The newest keys are held (4 tokens left), the oldest were evicted. */
    sp_ratelimit_info info;
    uint32_t k = 99999;
    sp_ratelimit_map_try_acquire(m, &k, sizeof(k), 1, NULL, &info);
    assert_near(info.remaining, 3, 0);
    k = 0;
    sp_ratelimit_map_try_acquire(m, &k, sizeof(k), 1, NULL, &info);
    assert_near(info.remaining, 4, 0);
    assert_int_equal(sp_ratelimit_map_try_acquire(m, "", 0, 1, NULL, NULL), -EINVAL);
    char big[SP_RATELIMIT_KEY_MAX + 1] = {0};
    assert_int_equal(sp_ratelimit_map_try_acquire(m, big, sizeof(big), 1, NULL, NULL), -EINVAL);
    assert_int_equal(sp_ratelimit_map_try_acquire(m, "a", 1, 6, NULL, NULL), -EINVAL);
    sp_ratelimit_map_destroy(m);
}

static int take(sp_ratelimit_map *m, const char *key) {
    return sp_ratelimit_map_try_acquire(m, key, strlen(key), 1, NULL, NULL);
}

static void test_map_evicts_the_least_recently_used_key(void **state) {
    (void)state;
    sp_ratelimit_map *m;
    /* One token per key, refilled only after 1000 s: a held key is empty. */
    assert_int_equal(sp_ratelimit_map_create(&m, 0.001, 1, 3), 0);
    assert_int_equal(take(m, "a"), 0);
    assert_int_equal(take(m, "b"), 0);
    assert_int_equal(take(m, "c"), 0);
    assert_int_equal(take(m, "a"), -EAGAIN); /* a is now the most recent */
    assert_int_equal(take(m, "d"), 0);       /* evicts b */
    assert_int_equal(sp_ratelimit_map_count(m), 3);
    assert_int_equal(take(m, "b"), 0); /* fresh again; evicts c */
    assert_int_equal(take(m, "a"), -EAGAIN);
    assert_int_equal(take(m, "d"), -EAGAIN);
    assert_int_equal(take(m, "c"), 0); /* was evicted; evicts b */
    assert_int_equal(sp_ratelimit_map_count(m), 3);
    sp_ratelimit_map_destroy(m);
}

static void test_map_drops_buckets_idle_long_enough_to_be_full(void **state) {
    (void)state;
    sp_ratelimit_map *m;
    /* Full again 2 ms after last use. */
    assert_int_equal(sp_ratelimit_map_create(&m, 1000, 2, 100), 0);
    for (int i = 0; i < 10; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(take(m, key), 0);
    }
    assert_int_equal(sp_ratelimit_map_count(m), 10);
    usleep(10000);
    assert_int_equal(take(m, "new"), 0);
    assert_int_equal(sp_ratelimit_map_count(m), 1);
    sp_ratelimit_map_destroy(m);
}

static void test_map_reports_retry_after_and_header_info(void **state) {
    (void)state;
    sp_ratelimit_map *m;
    assert_int_equal(sp_ratelimit_map_create(&m, 10, 3, 10), 0);
    const char ip[4] = {10, 0, 0, 1};
    sp_ratelimit_info info;
    double retry = -1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sp_ratelimit_map_try_acquire(m, ip, 4, 1, &retry, &info), 0);
        assert_near(info.remaining, 2 - i, 0);
    }
    assert_near(retry, -1, 0);
    assert_int_equal(sp_ratelimit_map_try_acquire(m, ip, 4, 1, &retry, &info), -EAGAIN);
    assert_true(retry > 0.09 && retry <= 0.1);
    assert_near(info.limit, 3, 0);
    assert_near(info.remaining, 0, 0);
    assert_true(info.reset > 0.29 && info.reset <= 0.3);
    /* Another client is unaffected. */
    const char other[4] = {10, 0, 0, 2};
    assert_int_equal(sp_ratelimit_map_try_acquire(m, other, 4, 1, NULL, &info), 0);
    assert_near(info.remaining, 2, 0);
    sp_ratelimit_map_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_try_acquire_takes_the_burst_then_reports_retry_after),
        cmocka_unit_test(test_acquire_waits_until_the_tokens_are_there),
        cmocka_unit_test(test_waiters_are_served_in_fifo_order),
        cmocka_unit_test(test_acquire_times_out_at_once_when_hopeless_else_at_deadline),
        cmocka_unit_test(test_cancelled_waiter_consumes_nothing_and_the_next_moves_up),
        cmocka_unit_test(test_waiter_cancelled_after_being_served_gives_tokens_back),
        cmocka_unit_test(test_accepted_count_over_3_seconds_is_within_2_percent_of_ideal),
        cmocka_unit_test(test_query_reports_remaining_and_seconds_until_full),
        cmocka_unit_test(test_map_keeps_at_most_max_keys),
        cmocka_unit_test(test_map_evicts_the_least_recently_used_key),
        cmocka_unit_test(test_map_drops_buckets_idle_long_enough_to_be_full),
        cmocka_unit_test(test_map_reports_retry_after_and_header_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
