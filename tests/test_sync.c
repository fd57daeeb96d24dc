/* Lock, Event, Semaphore, BoundedSemaphore and Condition. Order-sensitive
 * scenarios log what happens; each expected log is the output of the same
 * program run under CPython 3.11's asyncio. */
#include <errno.h>

#include "sp_test.h"

/* ---- Lock ---- */

typedef struct lock_actor {
    sp_lock *lock;
    const char *name;
} lock_actor;

/* Python: acquire (log "<name>:acq"), sleep(0), release; on cancellation log
 * "<name>:cancelled:locked=<lock.locked()>". */
static int locker(void *arg, void **result) {
    (void)result;
    lock_actor *a = arg;
    if (sp_lock_acquire(a->lock) == -ECANCELED) {
        logf_("%s:cancelled:locked=%d", a->name, sp_lock_locked(a->lock));
        return 0;
    }
    logf_("%s:acq", a->name);
    sp_yield();
    assert_int_equal(sp_lock_release(a->lock), 0);
    return 0;
}

static void test_lock_acquire_release_and_release_unlocked_returns_eperm(void **state) {
    (void)state;
    sp_lock l;
    sp_lock_init(&l);
    assert_false(sp_lock_locked(&l));
    assert_int_equal(sp_lock_release(&l), -EPERM);
    assert_int_equal(sp_lock_acquire(&l), 0);
    assert_true(sp_lock_locked(&l));
    /* Outside a task a held lock cannot be waited for. */
    assert_int_equal(sp_lock_acquire(&l), -EPERM);
    assert_int_equal(sp_lock_release(&l), 0);
    assert_false(sp_lock_locked(&l));
    assert_int_equal(sp_lock_fini(&l), 0);
}

/* Python: main holds the lock; t0..t4 queue; main releases and at once a
 * latecomer calls acquire (the lock is free, t0 woken but not yet run).
 * Log: t0:acq t1:acq t2:acq t3:acq t4:acq late:acq */
static int s_lock_fairness(void *arg, void **result) {
    (void)arg, (void)result;
    sp_lock l;
    sp_lock_init(&l);
    assert_int_equal(sp_lock_acquire(&l), 0);
    lock_actor a[5] = {{&l, "t0"}, {&l, "t1"}, {&l, "t2"}, {&l, "t3"}, {&l, "t4"}};
    lock_actor late = {&l, "late"};
    sp_task *t[5];
    for (int i = 0; i < 5; i++)
        t[i] = spawn(locker, &a[i]);
    sp_yield();
    sp_lock_release(&l);
    sp_task *lt = spawn(locker, &late);
    for (int i = 0; i < 5; i++)
        await_release(t[i]);
    await_release(lt);
    assert_false(sp_lock_locked(&l));
    assert_int_equal(sp_lock_fini(&l), 0);
    return 0;
}

static void test_lock_is_taken_in_arrival_order_even_by_latecomers(void **state) {
    (void)state;
    run_main(s_lock_fairness, NULL);
    expect_log("t0:acq", "t1:acq", "t2:acq", "t3:acq", "t4:acq", "late:acq");
}

/* Python: main holds the lock; t0, t1, t2 queue; t1 is cancelled; release.
 * Log: t1:cancelled:locked=True release t0:acq t2:acq */
static int s_lock_cancel_waiter(void *arg, void **result) {
    (void)arg, (void)result;
    sp_lock l;
    sp_lock_init(&l);
    sp_lock_acquire(&l);
    lock_actor a[3] = {{&l, "t0"}, {&l, "t1"}, {&l, "t2"}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(locker, &a[i]);
    sp_yield();
    assert_int_equal(sp_lock_fini(&l), -EBUSY);
    sp_task_cancel(t[1]);
    sp_yield();
    logf_("release");
    sp_lock_release(&l);
    for (int i = 0; i < 3; i++)
        await_release(t[i]);
    assert_int_equal(sp_lock_fini(&l), 0);
    return 0;
}

static void test_cancelled_lock_waiter_returns_ecanceled_and_leaves_the_queue(void **state) {
    (void)state;
    run_main(s_lock_cancel_waiter, NULL);
    expect_log("t1:cancelled:locked=1", "release", "t0:acq", "t2:acq");
}

/* Python: main holds the lock; t0, t1, t2 queue; release wakes t0, which is
 * cancelled before it runs. Log: t0:cancelled:locked=False t1:acq t2:acq */
static int s_lock_cancel_after_wakeup(void *arg, void **result) {
    (void)arg, (void)result;
    sp_lock l;
    sp_lock_init(&l);
    sp_lock_acquire(&l);
    lock_actor a[3] = {{&l, "t0"}, {&l, "t1"}, {&l, "t2"}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(locker, &a[i]);
    sp_yield();
    sp_lock_release(&l);
    sp_task_cancel(t[0]);
    for (int i = 0; i < 3; i++)
        await_release(t[i]);
    assert_int_equal(sp_lock_fini(&l), 0);
    return 0;
}

static void test_lock_waiter_cancelled_after_wakeup_hands_lock_to_next(void **state) {
    (void)state;
    run_main(s_lock_cancel_after_wakeup, NULL);
    expect_log("t0:cancelled:locked=0", "t1:acq", "t2:acq");
}

/* Python: main holds the lock; t0 queues and is cancelled; main releases and
 * acquires again without waiting (only cancelled waiters are queued).
 * Log: main:acq t0:cancelled:locked=True */
static int s_lock_only_cancelled(void *arg, void **result) {
    (void)arg, (void)result;
    sp_lock l;
    sp_lock_init(&l);
    sp_lock_acquire(&l);
    lock_actor a = {&l, "t0"};
    sp_task *t = spawn(locker, &a);
    sp_yield();
    sp_task_cancel(t);
    sp_lock_release(&l);
    assert_int_equal(sp_lock_acquire(&l), 0);
    logf_("main:acq");
    await_release(t);
    sp_lock_release(&l);
    return 0;
}

static void test_lock_acquire_skips_a_queue_of_only_cancelled_waiters(void **state) {
    (void)state;
    run_main(s_lock_only_cancelled, NULL);
    expect_log("main:acq", "t0:cancelled:locked=1");
}

/* ---- Event ---- */

typedef struct ev_actor {
    sp_event *ev;
    const char *name;
    int rc;
} ev_actor;

static int ev_waiter(void *arg, void **result) {
    (void)result;
    ev_actor *a = arg;
    a->rc = sp_event_wait(a->ev);
    logf_("%s:%s", a->name, a->rc == 0 ? "set" : a->rc == -ECANCELED ? "cancelled" : "error");
    return 0;
}

/* Python: e0..e4 wait; set() then clear() at once.
 * Log: e0:set e1:set e2:set e3:set e4:set is_set=False */
static int s_event_many(void *arg, void **result) {
    (void)arg, (void)result;
    sp_event ev;
    sp_event_init(&ev);
    static const char *names[] = {"e0", "e1", "e2", "e3", "e4"};
    ev_actor a[5];
    sp_task *t[5];
    for (int i = 0; i < 5; i++) {
        a[i] = (ev_actor){&ev, names[i], 1};
        t[i] = spawn(ev_waiter, &a[i]);
    }
    sp_yield();
    assert_int_equal(sp_event_fini(&ev), -EBUSY);
    sp_event_set(&ev);
    sp_event_clear(&ev);
    for (int i = 0; i < 5; i++)
        await_release(t[i]);
    logf_("is_set=%d", sp_event_is_set(&ev));
    assert_int_equal(sp_event_fini(&ev), 0);
    return 0;
}

static void test_event_set_releases_every_waiter_even_if_cleared_at_once(void **state) {
    (void)state;
    run_main(s_event_many, NULL);
    expect_log("e0:set", "e1:set", "e2:set", "e3:set", "e4:set", "is_set=0");
}

static int s_event_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_event ev;
    sp_event_init(&ev);
    ev_actor a = {&ev, "e0", 1}, b = {&ev, "e1", 1};
    sp_task *ta = spawn(ev_waiter, &a), *tb = spawn(ev_waiter, &b);
    sp_yield();
    sp_task_cancel(ta);
    await_release(ta);
    assert_int_equal(a.rc, -ECANCELED);
    assert_false(sp_task_done(tb));
    sp_event_set(&ev);
    await_release(tb);
    /* Set: waits return at once. */
    assert_int_equal(sp_event_wait(&ev), 0);
    assert_int_equal(sp_event_fini(&ev), 0);
    return 0;
}

static void test_cancelled_event_wait_returns_ecanceled_others_keep_waiting(void **state) {
    (void)state;
    run_main(s_event_cancel, NULL);
    expect_log("e0:cancelled", "e1:set");
}

/* ---- Semaphore ---- */

typedef struct sem_actor {
    sp_sem *sem;
    const char *name;
} sem_actor;

static int sem_waiter(void *arg, void **result) {
    (void)result;
    sem_actor *a = arg;
    if (sp_sem_acquire(a->sem) == -ECANCELED)
        logf_("%s:cancelled:value=%u", a->name, sp_sem_value(a->sem));
    else
        logf_("%s:acq:value=%u", a->name, sp_sem_value(a->sem));
    return 0;
}

static void test_semaphore_counts_units_and_may_exceed_its_initial_value(void **state) {
    (void)state;
    sp_sem s;
    sp_sem_init(&s, 2);
    assert_false(sp_sem_locked(&s));
    assert_int_equal(sp_sem_acquire(&s), 0);
    assert_int_equal(sp_sem_acquire(&s), 0);
    assert_true(sp_sem_locked(&s));
    assert_int_equal(sp_sem_value(&s), 0);
    assert_int_equal(sp_sem_acquire(&s), -EPERM); /* would wait: not a task */
    for (int i = 0; i < 3; i++)
        assert_int_equal(sp_sem_release(&s), 0);
    assert_int_equal(sp_sem_value(&s), 3);
    assert_int_equal(sp_sem_fini(&s), 0);
}

static void test_bounded_semaphore_release_beyond_initial_value_returns_eoverflow(void **state) {
    (void)state;
    sp_sem s;
    sp_sem_init_bounded(&s, 2);
    assert_int_equal(sp_sem_release(&s), -EOVERFLOW);
    assert_int_equal(sp_sem_acquire(&s), 0);
    assert_int_equal(sp_sem_release(&s), 0);
    assert_int_equal(sp_sem_release(&s), -EOVERFLOW);
    assert_int_equal(sp_sem_value(&s), 2);
    sp_sem_init_bounded(&s, 0);
    assert_int_equal(sp_sem_release(&s), -EOVERFLOW);
    assert_int_equal(sp_sem_fini(&s), 0);
}

/* Python: Semaphore(0); w0, w1, w2 wait; release() wakes w0, which is
 * cancelled before it runs; two sleep(0); release().
 * Log: released:value=0 w0:cancelled:value=0 w1:acq:value=0 w2:acq:value=0
 *      end:value=0:locked=True */
static int s_sem_cancel_after_wakeup(void *arg, void **result) {
    (void)arg, (void)result;
    sp_sem s;
    sp_sem_init(&s, 0);
    sem_actor a[3] = {{&s, "w0"}, {&s, "w1"}, {&s, "w2"}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(sem_waiter, &a[i]);
    sp_yield();
    assert_int_equal(sp_sem_fini(&s), -EBUSY);
    sp_sem_release(&s);
    logf_("released:value=%u", sp_sem_value(&s));
    sp_task_cancel(t[0]);
    sp_yield();
    sp_yield();
    sp_sem_release(&s);
    for (int i = 0; i < 3; i++)
        await_release(t[i]);
    logf_("end:value=%u:locked=%d", sp_sem_value(&s), sp_sem_locked(&s));
    assert_int_equal(sp_sem_fini(&s), 0);
    return 0;
}

static void test_semaphore_waiter_cancelled_after_wakeup_hands_unit_to_next(void **state) {
    (void)state;
    run_main(s_sem_cancel_after_wakeup, NULL);
    expect_log("released:value=0", "w0:cancelled:value=0", "w1:acq:value=0", "w2:acq:value=0",
               "end:value=0:locked=1");
}

/* Python: Semaphore(0); w0, w1, w2 wait; four release() in a row.
 * Log: released:value=1 w0:acq:value=1 w1:acq:value=1 w2:acq:value=1 end:value=1 */
static int s_sem_release_many(void *arg, void **result) {
    (void)arg, (void)result;
    sp_sem s;
    sp_sem_init(&s, 0);
    sem_actor a[3] = {{&s, "w0"}, {&s, "w1"}, {&s, "w2"}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(sem_waiter, &a[i]);
    sp_yield();
    for (int i = 0; i < 4; i++)
        sp_sem_release(&s);
    logf_("released:value=%u", sp_sem_value(&s));
    for (int i = 0; i < 3; i++)
        await_release(t[i]);
    logf_("end:value=%u", sp_sem_value(&s));
    return 0;
}

static void test_semaphore_releases_hand_units_to_waiters_in_order(void **state) {
    (void)state;
    run_main(s_sem_release_many, NULL);
    expect_log("released:value=1", "w0:acq:value=1", "w1:acq:value=1", "w2:acq:value=1",
               "end:value=1");
}

/* Python: Semaphore(0); w0 waits; two release() (w0 woken, one unit spare);
 * main's acquire queues behind w0, which hands the spare unit on once it runs.
 * Log: released:value=1:locked=True w0:acq:value=0 main:acq:value=0 */
static int s_sem_newcomer(void *arg, void **result) {
    (void)arg, (void)result;
    sp_sem s;
    sp_sem_init(&s, 0);
    sem_actor a = {&s, "w0"};
    sp_task *t = spawn(sem_waiter, &a);
    sp_yield();
    sp_sem_release(&s);
    sp_sem_release(&s);
    logf_("released:value=%u:locked=%d", sp_sem_value(&s), sp_sem_locked(&s));
    assert_int_equal(sp_sem_acquire(&s), 0);
    logf_("main:acq:value=%u", sp_sem_value(&s));
    await_release(t);
    assert_int_equal(sp_sem_fini(&s), 0);
    return 0;
}

static void
test_semaphore_newcomer_queues_behind_woken_waiter_which_passes_spare_unit(void **state) {
    (void)state;
    run_main(s_sem_newcomer, NULL);
    expect_log("released:value=1:locked=1", "w0:acq:value=0", "main:acq:value=0");
}

/* ---- Condition ---- */

typedef struct cond_actor {
    sp_cond *cond;
    const char *name;
} cond_actor;

/* Python: async with cond: await cond.wait(); log woke or cancelled, with
 * whether the lock is held. */
static int cond_waiter(void *arg, void **result) {
    (void)result;
    cond_actor *a = arg;
    assert_int_equal(sp_cond_acquire(a->cond), 0);
    int rc = sp_cond_wait(a->cond);
    logf_("%s:%s:locked=%d", a->name,
          rc == 0            ? "woke"
          : rc == -ECANCELED ? "cancelled"
                             : "error",
          sp_cond_locked(a->cond));
    assert_int_equal(sp_cond_release(a->cond), 0);
    return 0;
}

static void test_condition_wait_and_notify_without_the_lock_return_eperm(void **state) {
    (void)state;
    sp_cond c;
    sp_cond_init(&c, NULL);
    assert_int_equal(sp_cond_wait(&c), -EPERM);
    assert_int_equal(sp_cond_notify(&c, 1), -EPERM);
    assert_int_equal(sp_cond_notify_all(&c), -EPERM);
    assert_int_equal(sp_cond_acquire(&c), 0);
    assert_int_equal(sp_cond_notify(&c, 1), 0);
    /* Held, but not from a task: it cannot wait, and keeps the lock. */
    assert_int_equal(sp_cond_wait(&c), -EPERM);
    assert_true(sp_cond_locked(&c));
    assert_int_equal(sp_cond_release(&c), 0);
    assert_int_equal(sp_cond_fini(&c), 0);
}

/* Python: c0..c3 wait; notify(1); notify(2); notify_all(), each under the lock
 * with two sleep(0) between. Log: notify1 c0:woke:locked=True notify2
 * c1:woke:locked=True c2:woke:locked=True notify_all c3:woke:locked=True */
static int s_cond_notify_order(void *arg, void **result) {
    (void)arg, (void)result;
    sp_cond c;
    sp_cond_init(&c, NULL);
    cond_actor a[4] = {{&c, "c0"}, {&c, "c1"}, {&c, "c2"}, {&c, "c3"}};
    sp_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn(cond_waiter, &a[i]);
    sp_yield();
    assert_int_equal(sp_cond_fini(&c), -EBUSY);
    sp_cond_acquire(&c);
    sp_cond_notify(&c, 1);
    logf_("notify1");
    sp_cond_release(&c);
    sp_yield();
    sp_yield();
    sp_cond_acquire(&c);
    sp_cond_notify(&c, 2);
    logf_("notify2");
    sp_cond_release(&c);
    sp_yield();
    sp_yield();
    sp_cond_acquire(&c);
    sp_cond_notify_all(&c);
    logf_("notify_all");
    sp_cond_release(&c);
    for (int i = 0; i < 4; i++)
        await_release(t[i]);
    assert_int_equal(sp_cond_fini(&c), 0);
    return 0;
}

static void test_condition_notify_wakes_waiters_in_wait_order(void **state) {
    (void)state;
    run_main(s_cond_notify_order, NULL);
    expect_log("notify1", "c0:woke:locked=1", "notify2", "c1:woke:locked=1", "c2:woke:locked=1",
               "notify_all", "c3:woke:locked=1");
}

/* Python: c0 waits; main takes the lock, cancels c0, two sleep(0), releases.
 * Log: main:release:task_done=False c0:cancelled:locked=True */
static int s_cond_cancel_wait(void *arg, void **result) {
    (void)arg, (void)result;
    sp_cond c;
    sp_cond_init(&c, NULL);
    cond_actor a = {&c, "c0"};
    sp_task *t = spawn(cond_waiter, &a);
    sp_yield();
    sp_cond_acquire(&c);
    sp_task_cancel(t);
    sp_yield();
    sp_yield();
    logf_("main:release:task_done=%d", sp_task_done(t));
    sp_cond_release(&c);
    await_release(t);
    assert_false(sp_cond_locked(&c));
    assert_int_equal(sp_cond_fini(&c), 0);
    return 0;
}

static void test_cancelled_condition_wait_reacquires_lock_before_returning(void **state) {
    (void)state;
    run_main(s_cond_cancel_wait, NULL);
    expect_log("main:release:task_done=0", "c0:cancelled:locked=1");
}

/* A waiter cancelled again while it waits to re-acquire the lock still ends
 * holding it. */
static int s_cond_cancel_twice(void *arg, void **result) {
    (void)arg, (void)result;
    sp_cond c;
    sp_cond_init(&c, NULL);
    cond_actor a = {&c, "c0"};
    sp_task *t = spawn(cond_waiter, &a);
    sp_yield();
    sp_cond_acquire(&c);
    sp_task_cancel(t);
    sp_yield();
    sp_yield();
    sp_task_cancel(t);
    sp_yield();
    sp_yield();
    logf_("main:release:task_done=%d", sp_task_done(t));
    sp_cond_release(&c);
    await_release(t);
    assert_int_equal(sp_cond_fini(&c), 0);
    return 0;
}

static void test_condition_wait_cancelled_during_reacquire_still_returns_with_lock(void **state) {
    (void)state;
    run_main(s_cond_cancel_twice, NULL);
    expect_log("main:release:task_done=0", "c0:cancelled:locked=1");
}

/* Python: c0, c1 wait; under the lock notify(1) then cancel c0 (the
 * notification is lost, as in 3.11); two sleep(0); notify(1) again.
 * Log: c0:cancelled:locked=True c1 done=False c1:woke:locked=True */
static int s_cond_cancel_after_notify(void *arg, void **result) {
    (void)arg, (void)result;
    sp_cond c;
    sp_cond_init(&c, NULL);
    cond_actor a[2] = {{&c, "c0"}, {&c, "c1"}};
    sp_task *t[2] = {spawn(cond_waiter, &a[0]), spawn(cond_waiter, &a[1])};
    sp_yield();
    sp_cond_acquire(&c);
    sp_cond_notify(&c, 1);
    sp_task_cancel(t[0]);
    sp_cond_release(&c);
    sp_yield();
    sp_yield();
    logf_("c1 done=%d", sp_task_done(t[1]));
    sp_cond_acquire(&c);
    sp_cond_notify(&c, 1);
    sp_cond_release(&c);
    await_release(t[0]);
    await_release(t[1]);
    assert_int_equal(sp_cond_fini(&c), 0);
    return 0;
}

static void test_condition_waiter_cancelled_after_notify_consumes_the_notification(void **state) {
    (void)state;
    run_main(s_cond_cancel_after_notify, NULL);
    expect_log("c0:cancelled:locked=1", "c1 done=0", "c1:woke:locked=1");
}

typedef struct counter {
    sp_cond *cond;
    int value;
} counter;

static bool reached_three(void *arg) {
    return ((counter *)arg)->value >= 3;
}

static int wait_for_three(void *arg, void **result) {
    (void)result;
    counter *k = arg;
    sp_cond_acquire(k->cond);
    assert_int_equal(sp_cond_wait_for(k->cond, reached_three, k), 0);
    logf_("saw %d locked=%d", k->value, sp_cond_locked(k->cond));
    sp_cond_release(k->cond);
    return 0;
}

/* A condition bound to a caller's lock; the waiter re-checks on every notify
 * and returns only once the predicate holds. */
static int s_cond_wait_for(void *arg, void **result) {
    (void)arg, (void)result;
    sp_lock l;
    sp_lock_init(&l);
    sp_cond c;
    sp_cond_init(&c, &l);
    assert_ptr_equal(sp_cond_lock(&c), &l);
    counter k = {&c, 0};
    sp_task *t = spawn(wait_for_three, &k);
    for (int i = 0; i < 3; i++) {
        sp_yield();
        sp_lock_acquire(&l);
        k.value++;
        logf_("value %d", k.value);
        sp_cond_notify_all(&c);
        sp_lock_release(&l);
    }
    await_release(t);
    /* Already true: returns at once, lock held. */
    sp_lock_acquire(&l);
    assert_int_equal(sp_cond_wait_for(&c, reached_three, &k), 0);
    assert_true(sp_lock_locked(&l));
    sp_lock_release(&l);
    assert_int_equal(sp_cond_fini(&c), 0);
    assert_int_equal(sp_lock_fini(&l), 0);
    return 0;
}

static void test_condition_wait_for_returns_once_predicate_holds(void **state) {
    (void)state;
    run_main(s_cond_wait_for, NULL);
    expect_log("value 1", "value 2", "value 3", "saw 3 locked=1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_acquire_release_and_release_unlocked_returns_eperm),
        cmocka_unit_test(test_lock_is_taken_in_arrival_order_even_by_latecomers),
        cmocka_unit_test(test_cancelled_lock_waiter_returns_ecanceled_and_leaves_the_queue),
        cmocka_unit_test(test_lock_waiter_cancelled_after_wakeup_hands_lock_to_next),
        cmocka_unit_test(test_lock_acquire_skips_a_queue_of_only_cancelled_waiters),
        cmocka_unit_test(test_event_set_releases_every_waiter_even_if_cleared_at_once),
        cmocka_unit_test(test_cancelled_event_wait_returns_ecanceled_others_keep_waiting),
        cmocka_unit_test(test_semaphore_counts_units_and_may_exceed_its_initial_value),
        cmocka_unit_test(test_bounded_semaphore_release_beyond_initial_value_returns_eoverflow),
        cmocka_unit_test(test_semaphore_waiter_cancelled_after_wakeup_hands_unit_to_next),
        cmocka_unit_test(test_semaphore_releases_hand_units_to_waiters_in_order),
        cmocka_unit_test(
            test_semaphore_newcomer_queues_behind_woken_waiter_which_passes_spare_unit),
        cmocka_unit_test(test_condition_wait_and_notify_without_the_lock_return_eperm),
        cmocka_unit_test(test_condition_notify_wakes_waiters_in_wait_order),
        cmocka_unit_test(test_cancelled_condition_wait_reacquires_lock_before_returning),
        cmocka_unit_test(test_condition_wait_cancelled_during_reacquire_still_returns_with_lock),
        cmocka_unit_test(test_condition_waiter_cancelled_after_notify_consumes_the_notification),
        cmocka_unit_test(test_condition_wait_for_returns_once_predicate_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
