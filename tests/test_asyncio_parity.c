/* Parity with CPython 3.11's asyncio on the edges: cancellation, timeouts,
 * combinators, synchronisation, queues, callbacks, fd waits and the end of
 * sp_run. Each test quotes what the same program printed under CPython 3.11.7. */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "sp_test.h"
#include "stderr_capture.h"

static const char *tf(bool b) {
    return b ? "True" : "False";
}

/* ---- timeout scopes ---- */

static int logs_run(void *arg, void **result) {
    (void)result;
    logf_("%s", (const char *)arg);
    return 0;
}

/* Python:
 *     t = create_task(other())
 *     async with timeout(0): await sleep(0); print("body after sleep0")
 * prints "other runs", "timeout", "cancelling 0": a deadline already passed
 * fires with call_soon, ahead of the task's own wake-up. Nested zero
 * timeouts: the inner scope lets the cancellation through ("inner lets cancel
 * through True"), the outer one reports it ("outer timeout True"). A scope
 * rescheduled into the past fires the same way ("rescheduled timeout"). */
static int s_timeout_zero(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *self = sp_task_current();
    sp_task *t = spawn(logs_run, "other runs");
    sp_timeout tm;
    sp_timeout_enter(&tm, 0);
    int rc = sp_yield();
    if (rc == 0)
        logf_("body after sleep0");
    if (sp_timeout_exit(&tm, rc) == -ETIMEDOUT)
        logf_("timeout");
    logf_("cancelling %d", sp_task_cancelling(self));
    await_release(t);

    sp_timeout outer, inner;
    sp_timeout_enter(&outer, 0);
    sp_timeout_enter(&inner, 0);
    rc = sp_timeout_exit(&inner, sp_sleep(1));
    if (rc == -ETIMEDOUT)
        logf_("inner timeout");
    else if (rc == -ECANCELED)
        logf_("inner lets cancel through %s", tf(sp_timeout_expired(&inner)));
    if (sp_timeout_exit(&outer, rc) == -ETIMEDOUT)
        logf_("outer timeout %s", tf(sp_timeout_expired(&outer)));
    logf_("cancelling %d", sp_task_cancelling(self));

    sp_timeout_enter(&tm, 10);
    assert_int_equal(sp_timeout_reschedule(&tm, 0), 0);
    rc = sp_yield();
    if (rc == 0)
        logf_("not reached");
    if (sp_timeout_exit(&tm, rc) == -ETIMEDOUT)
        logf_("rescheduled timeout");
    return 0;
}

static void test_timeout_zero_fires_before_the_tasks_own_wakeup(void **state) {
    (void)state;
    run_main(s_timeout_zero, NULL);
    expect_log("other runs", "timeout", "cancelling 0", "inner lets cancel through True",
               "outer timeout True", "cancelling 0", "rescheduled timeout");
}

/* ---- wait_for ---- */

static int inner_42(void *arg, void **result) {
    (void)arg;
    logf_("inner start");
    sp_yield();
    logf_("inner returns");
    *result = (void *)42;
    return 0;
}

static int wait_for_caller(void *arg, void **result) {
    int rc = sp_wait_for(arg, 1, result);
    if (rc == 0)
        logf_("caller got %d", (int)(intptr_t)*result);
    else if (rc == -ECANCELED)
        logf_("caller cancelled");
    return rc;
}

/* Python 3.11's wait_for returns the inner result when the caller's
 * cancellation lands in the iteration where the inner task finishes:
 * inner start / cancel sent 1 / inner returns / caller got 42 /
 * caller done True cancelled False cancelling 1 / result 42 */
static int s_wait_for_cancel_races_result(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t = spawn(inner_42, NULL);
    sp_task *c = spawn(wait_for_caller, t);
    sp_yield();
    sp_task_cancel(c);
    logf_("cancel sent %d", sp_task_cancelling(c));
    for (int i = 0; i < 3; i++)
        sp_yield();
    logf_("caller done %s cancelled %s cancelling %d", tf(sp_task_done(c)),
          tf(sp_task_cancelled(c)), sp_task_cancelling(c));
    void *r = NULL;
    if (sp_task_result(c, &r) == 0)
        logf_("result %d", (int)(intptr_t)r);
    sp_task_release(t);
    sp_task_release(c);
    return 0;
}

static void test_wait_for_returns_the_result_when_cancel_and_completion_coincide(void **state) {
    (void)state;
    run_main(s_wait_for_cancel_races_result, NULL);
    expect_log("inner start", "cancel sent 1", "inner returns", "caller got 42",
               "caller done True cancelled False cancelling 1", "result 42");
}

/* ---- cancellation requests and counts ---- */

static int swallow_7(void *arg, void **result) {
    (void)arg;
    if (sp_sleep(1) == -ECANCELED)
        logf_("inner swallows");
    *result = (void *)7;
    return 0;
}

static int awaits_arg(void *arg, void **result) {
    void *r = NULL;
    assert_int_equal(sp_task_await(arg, &r), 0);
    logf_("awaiter got %d cancelling %d", (int)(intptr_t)r, sp_task_cancelling(sp_task_current()));
    sp_yield();
    logf_("awaiter continues");
    *result = r;
    return 0;
}

/* Python: o awaits i; o.cancel() twice forwards both requests to i, which
 * swallows them and returns 7, so o is never interrupted:
 * cancel o True again True / o cancelling 2 i cancelling 2 / inner swallows /
 * awaiter got 7 cancelling 2 / awaiter continues /
 * o result 7 cancelled False i cancelled False / cancel done False cancelling 2 /
 * uncancel 1 0 0 */
static int s_cancel_forwarded_to_a_swallowing_task(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *i = spawn(swallow_7, NULL);
    sp_task *o = spawn(awaits_arg, i);
    sp_yield();
    bool first = sp_task_cancel(o) == 0;
    bool again = sp_task_cancel(o) == 0;
    logf_("cancel o %s again %s", tf(first), tf(again));
    logf_("o cancelling %d i cancelling %d", sp_task_cancelling(o), sp_task_cancelling(i));
    void *r = NULL;
    assert_int_equal(sp_task_await(o, &r), 0);
    logf_("o result %d cancelled %s i cancelled %s", (int)(intptr_t)r, tf(sp_task_cancelled(o)),
          tf(sp_task_cancelled(i)));
    bool done_cancel = sp_task_cancel(o) == 0;
    logf_("cancel done %s cancelling %d", tf(done_cancel), sp_task_cancelling(o));
    int u1 = sp_task_uncancel(o);
    int u2 = sp_task_uncancel(o);
    int u3 = sp_task_uncancel(o);
    logf_("uncancel %d %d %d", u1, u2, u3);
    sp_task_release(i);
    sp_task_release(o);
    return 0;
}

static void test_cancel_of_a_task_awaiting_a_swallowing_task_never_interrupts_it(void **state) {
    (void)state;
    run_main(s_cancel_forwarded_to_a_swallowing_task, NULL);
    expect_log("cancel o True again True", "o cancelling 2 i cancelling 2", "inner swallows",
               "awaiter got 7 cancelling 2", "awaiter continues",
               "o result 7 cancelled False i cancelled False", "cancel done False cancelling 2",
               "uncancel 1 0 0");
}

static int catcher(void *arg, void **result) {
    (void)arg;
    logf_("catcher start");
    if (sp_sleep(1) == -ECANCELED) {
        sp_task *t = sp_task_current();
        int before = sp_task_cancelling(t);
        logf_("caught, cancelling %d uncancel -> %d", before, sp_task_uncancel(t));
    }
    assert_int_equal(sp_sleep(0.001), 0);
    logf_("catcher slept again");
    *result = "value";
    return 0;
}

static int never_runs(void *arg, void **result) {
    (void)arg, (void)result;
    logf_("never runs");
    return 0;
}

/* Python: a task catching its cancellation, uncancelling and returning a
 * value; a task cancelled before it ever ran; cancel() on finished tasks:
 * cancel n before start True 1 / catcher start / caught, cancelling 1 uncancel -> 0 /
 * catcher slept again / c -> value False 0 / n cancelled True cancel again False 1 */
static int s_catch_uncancel_return(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *c = spawn(catcher, NULL);
    sp_task *n = spawn(never_runs, NULL);
    bool ok = sp_task_cancel(n) == 0;
    logf_("cancel n before start %s %d", tf(ok), sp_task_cancelling(n));
    sp_yield();
    sp_task_cancel(c);
    void *r = NULL;
    assert_int_equal(sp_task_await(c, &r), 0);
    logf_("c -> %s %s %d", (char *)r, tf(sp_task_cancelled(c)), sp_task_cancelling(c));
    ok = sp_task_cancel(n) == 0;
    logf_("n cancelled %s cancel again %s %d", tf(sp_task_cancelled(n)), tf(ok),
          sp_task_cancelling(n));
    sp_task_release(c);
    sp_task_release(n);
    return 0;
}

static void test_task_catching_cancel_uncancels_and_returns_a_value(void **state) {
    (void)state;
    run_main(s_catch_uncancel_return, NULL);
    expect_log("cancel n before start True 1", "catcher start",
               "caught, cancelling 1 uncancel -> 0", "catcher slept again", "c -> value False 0",
               "n cancelled True cancel again False 1");
}

static int victim(void *arg, void **result) {
    (void)arg, (void)result;
    int rc = sp_sleep(1);
    if (rc == -ECANCELED)
        logf_("victim still cancelled, cancelling %d", sp_task_cancelling(sp_task_current()));
    return rc;
}

/* Python: uncancel() only lowers the count; a request that already reached
 * the awaited future (or a task not yet started) still cancels:
 * uncancel -> 0 / victim still cancelled, cancelling 0 / v cancelled True /
 * n cancelled True 0 */
static int s_uncancel_does_not_undo_delivery(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *v = spawn(victim, NULL);
    sp_yield();
    sp_task_cancel(v);
    logf_("uncancel -> %d", sp_task_uncancel(v));
    sp_wait(&v, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("v cancelled %s", tf(sp_task_cancelled(v)));
    sp_task *n = spawn(never_runs, NULL);
    sp_task_cancel(n);
    sp_task_uncancel(n);
    sp_wait(&n, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("n cancelled %s %d", tf(sp_task_cancelled(n)), sp_task_cancelling(n));
    sp_task_release(v);
    sp_task_release(n);
    return 0;
}

static void test_uncancel_lowers_the_count_but_a_delivered_cancel_still_lands(void **state) {
    (void)state;
    run_main(s_uncancel_does_not_undo_delivery, NULL);
    expect_log("uncancel -> 0", "victim still cancelled, cancelling 0", "v cancelled True",
               "n cancelled True 0");
}

static int raises_cancelled(void *arg, void **result) {
    (void)arg, (void)result;
    sp_yield();
    return -ECANCELED;
}

static int awaits_future(void *arg, void **result) {
    if (sp_future_await(arg, NULL) == -ECANCELED) {
        logf_("waiter: future cancelled under me, cancelling %d",
              sp_task_cancelling(sp_task_current()));
        *result = "handled";
    }
    return 0;
}

/* Python: a task raising CancelledError on its own ends cancelled with a
 * count of 0; a plain future cancelled under its waiter:
 * raiser cancelled True cancelling 0 / f.cancel True again False /
 * waiter: future cancelled under me, cancelling 0 / handled /
 * set_result on done: InvalidStateError */
static int s_cancelled_without_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *r = spawn(raises_cancelled, NULL);
    sp_wait(&r, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("raiser cancelled %s cancelling %d", tf(sp_task_cancelled(r)), sp_task_cancelling(r));
    sp_future f;
    sp_future_init(&f);
    sp_task *w = spawn(awaits_future, &f);
    sp_yield();
    bool first = sp_future_cancel(&f) == 0;
    bool again = sp_future_cancel(&f) == 0;
    logf_("f.cancel %s again %s", tf(first), tf(again));
    void *res = NULL;
    assert_int_equal(sp_task_await(w, &res), 0);
    logf_("%s", (char *)res);
    sp_future f2;
    sp_future_init(&f2);
    sp_future_set_result(&f2, (void *)1);
    if (sp_future_set_result(&f2, (void *)2) == -EINVAL)
        logf_("set_result on done: InvalidStateError");
    sp_future_fini(&f);
    sp_future_fini(&f2);
    sp_task_release(r);
    sp_task_release(w);
    return 0;
}

static void test_task_ending_with_ecanceled_unasked_is_cancelled_with_count_zero(void **state) {
    (void)state;
    run_main(s_cancelled_without_cancel, NULL);
    expect_log("raiser cancelled True cancelling 0", "f.cancel True again False",
               "waiter: future cancelled under me, cancelling 0", "handled",
               "set_result on done: InvalidStateError");
}

/* ---- Lock, Semaphore, Event, Condition ---- */

typedef struct sync_actor {
    void *prim; /* sp_lock, sp_sem, sp_event or sp_cond */
    const char *name;
} sync_actor;

/* Python: acquire; on CancelledError print "<name> cancelled, locked <locked>";
 * else print "<name> acquired", sleep(0), release, print "<name> released". */
static int lock_user(void *arg, void **result) {
    (void)result;
    sync_actor *a = arg;
    sp_lock *l = a->prim;
    if (sp_lock_acquire(l) == -ECANCELED) {
        logf_("%s cancelled, locked %s", a->name, tf(sp_lock_locked(l)));
        return 0;
    }
    logf_("%s acquired", a->name);
    sp_yield();
    sp_lock_release(l);
    logf_("%s released", a->name);
    return 0;
}

/* Python: main holds the lock, a b c queue; b is cancelled while queued, the
 * lock released (waking a), a cancelled before it runs, d arrives:
 * b cancelled, locked False / a cancelled, locked False / c acquired /
 * c released / d acquired / d released / locked False */
static int s_lock_cancelled_waiters(void *arg, void **result) {
    (void)arg, (void)result;
    sp_lock l;
    sp_lock_init(&l);
    assert_int_equal(sp_lock_acquire(&l), 0);
    sync_actor a[4] = {{&l, "a"}, {&l, "b"}, {&l, "c"}, {&l, "d"}};
    sp_task *t[4];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(lock_user, &a[i]);
    sp_yield();
    sp_task_cancel(t[1]);
    sp_lock_release(&l);
    sp_task_cancel(t[0]);
    t[3] = spawn(lock_user, &a[3]);
    assert_int_equal(sp_gather(t, 4, 0, NULL, NULL), 0);
    logf_("locked %s", tf(sp_lock_locked(&l)));
    release_all(t, 4);
    assert_int_equal(sp_lock_fini(&l), 0);
    return 0;
}

static void test_lock_passes_over_cancelled_waiters_in_arrival_order(void **state) {
    (void)state;
    run_main(s_lock_cancelled_waiters, NULL);
    expect_log("b cancelled, locked False", "a cancelled, locked False", "c acquired", "c released",
               "d acquired", "d released", "locked False");
}

static int sem_user(void *arg, void **result) {
    (void)result;
    sync_actor *a = arg;
    sp_sem *s = a->prim;
    if (sp_sem_acquire(s) == -ECANCELED) {
        logf_("%s cancelled, value %u locked %s", a->name, sp_sem_value(s), tf(sp_sem_locked(s)));
        return 0;
    }
    logf_("%s acquired, value %u", a->name, sp_sem_value(s));
    sp_yield();
    sp_sem_release(s);
    logf_("%s released", a->name);
    return 0;
}

/* Python: Semaphore(0), waiters a b c d; b cancelled while queued; two
 * releases wake a and c; a is cancelled after its wake-up and hands its unit
 * on to d: value 0 locked True / b cancelled, value 0 locked True /
 * a cancelled, value 0 locked True / c acquired, value 0 / d acquired, value 0 /
 * c released / d released / final value 2 locked False */
static int s_sem_wakeup_chain(void *arg, void **result) {
    (void)arg, (void)result;
    sp_sem s;
    sp_sem_init(&s, 0);
    sync_actor a[4] = {{&s, "a"}, {&s, "b"}, {&s, "c"}, {&s, "d"}};
    sp_task *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn(sem_user, &a[i]);
    sp_yield();
    sp_task_cancel(t[1]);
    sp_sem_release(&s);
    sp_sem_release(&s);
    sp_task_cancel(t[0]);
    logf_("value %u locked %s", sp_sem_value(&s), tf(sp_sem_locked(&s)));
    assert_int_equal(sp_gather(t, 4, 0, NULL, NULL), 0);
    logf_("final value %u locked %s", sp_sem_value(&s), tf(sp_sem_locked(&s)));
    release_all(t, 4);
    assert_int_equal(sp_sem_fini(&s), 0);
    return 0;
}

static void test_semaphore_cancelled_waiters_hand_units_down_the_line(void **state) {
    (void)state;
    run_main(s_sem_wakeup_chain, NULL);
    expect_log("value 0 locked True", "b cancelled, value 0 locked True",
               "a cancelled, value 0 locked True", "c acquired, value 0", "d acquired, value 0",
               "c released", "d released", "final value 2 locked False");
}

static int event_user(void *arg, void **result) {
    (void)result;
    sync_actor *a = arg;
    sp_event *e = a->prim;
    if (sp_event_wait(e) == 0)
        logf_("%s woke, is_set %s", a->name, tf(sp_event_is_set(e)));
    else
        logf_("%s cancelled", a->name);
    return 0;
}

/* Python: set() then, in the same iteration, b.cancel() and clear(): the
 * cancellation wins for b, the others still wake:
 * a woke, is_set False / b cancelled / c woke, is_set False / is_set False /
 * wait on set event returns at once */
static int s_event_set_then_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_event e;
    sp_event_init(&e);
    sync_actor a[3] = {{&e, "a"}, {&e, "b"}, {&e, "c"}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(event_user, &a[i]);
    sp_yield();
    sp_event_set(&e);
    sp_task_cancel(t[1]);
    sp_event_clear(&e);
    assert_int_equal(sp_gather(t, 3, 0, NULL, NULL), 0);
    logf_("is_set %s", tf(sp_event_is_set(&e)));
    sp_event_set(&e);
    sp_task_cancel(sp_task_current());
    /* A set event returns without suspending, so the pending cancel waits. */
    if (sp_event_wait(&e) == 0)
        logf_("wait on set event returns at once");
    assert_int_equal(sp_yield(), -ECANCELED);
    sp_task_uncancel(sp_task_current());
    release_all(t, 3);
    assert_int_equal(sp_event_fini(&e), 0);
    return 0;
}

static void test_event_waiter_cancelled_in_the_iteration_of_set_reports_cancel(void **state) {
    (void)state;
    run_main(s_event_set_then_cancel, NULL);
    expect_log("a woke, is_set False", "b cancelled", "c woke, is_set False", "is_set False",
               "wait on set event returns at once");
}

static int cond_user(void *arg, void **result) {
    (void)result;
    sync_actor *a = arg;
    sp_cond *c = a->prim;
    assert_int_equal(sp_cond_acquire(c), 0);
    int rc = sp_cond_wait(c);
    if (rc == 0)
        logf_("%s notified, locked %s", a->name, tf(sp_cond_locked(c)));
    else
        logf_("%s cancelled, holds lock %s", a->name, tf(sp_cond_locked(c)));
    sp_cond_release(c);
    return rc;
}

/* Python 3.11: notify(1) wakes a, which is cancelled before it runs; the
 * notification is lost with it, b and c keep waiting until notify_all:
 * a cancelled, holds lock True / b, c still waiting: True True /
 * b notified, locked True / c notified, locked True /
 * ['CancelledError', 'NoneType', 'NoneType'] */
static int s_cond_notified_then_cancelled(void *arg, void **result) {
    (void)arg, (void)result;
    sp_cond c;
    sp_cond_init(&c, NULL);
    sync_actor a[3] = {{&c, "a"}, {&c, "b"}, {&c, "c"}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(cond_user, &a[i]);
    sp_yield();
    assert_int_equal(sp_cond_acquire(&c), 0);
    sp_cond_notify(&c, 1);
    sp_task_cancel(t[0]);
    sp_cond_release(&c);
    sp_sleep(0.01);
    logf_("b, c still waiting: %s %s", tf(!sp_task_done(t[1])), tf(!sp_task_done(t[2])));
    assert_int_equal(sp_cond_acquire(&c), 0);
    sp_cond_notify_all(&c);
    sp_cond_release(&c);
    int errs[3];
    assert_int_equal(sp_gather(t, 3, SP_GATHER_RETURN_EXCEPTIONS, NULL, errs), 0);
    logf_("['%s', '%s', '%s']", errs[0] == -ECANCELED ? "CancelledError" : "NoneType",
          errs[1] == -ECANCELED ? "CancelledError" : "NoneType",
          errs[2] == -ECANCELED ? "CancelledError" : "NoneType");
    release_all(t, 3);
    assert_int_equal(sp_cond_fini(&c), 0);
    return 0;
}

static void
test_condition_notification_is_lost_with_a_waiter_cancelled_before_it_runs(void **state) {
    (void)state;
    run_main(s_cond_notified_then_cancelled, NULL);
    expect_log("a cancelled, holds lock True", "b, c still waiting: True True",
               "b notified, locked True", "c notified, locked True",
               "['CancelledError', 'NoneType', 'NoneType']");
}

/* ---- queues ---- */

static char none_item[] = "None";

static int producer_3(void *arg, void **result) {
    (void)result;
    sp_queue *q = arg;
    for (intptr_t i = 0; i < 3; i++) {
        logf_("put %d", (int)i);
        assert_int_equal(sp_queue_put(q, (void *)(i + 1)), 0);
        logf_("put done %d", (int)i);
    }
    return sp_queue_put(q, none_item);
}

static int consumer_all(void *arg, void **result) {
    (void)result;
    sp_queue *q = arg;
    for (;;) {
        void *x;
        assert_int_equal(sp_queue_get(q, &x), 0);
        if (x == none_item)
            logf_("got None");
        else
            logf_("got %d", (int)(intptr_t)x - 1);
        sp_queue_task_done(q);
        if (x == none_item)
            return 0;
    }
}

/* Python: Queue(maxsize=1), a producer and a consumer:
 * put 0 / put done 0 / put 1 / got 0 / put done 1 / put 2 / got 1 /
 * put done 2 / got 2 / got None / QueueEmpty / QueueFull 1 True */
static int s_queue_ping_pong(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 1);
    sp_task *t[2] = {spawn(producer_3, &q), spawn(consumer_all, &q)};
    assert_int_equal(sp_gather(t, 2, 0, NULL, NULL), 0);
    void *x;
    if (sp_queue_get_nowait(&q, &x) == -EAGAIN)
        logf_("QueueEmpty");
    assert_int_equal(sp_queue_put_nowait(&q, "x"), 0);
    if (sp_queue_put_nowait(&q, "y") == -EAGAIN)
        logf_("QueueFull %zu %s", sp_queue_qsize(&q), tf(sp_queue_full(&q)));
    release_all(t, 2);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_queue_of_one_alternates_producer_and_consumer(void **state) {
    (void)state;
    run_main(s_queue_ping_pong, NULL);
    expect_log("put 0", "put done 0", "put 1", "got 0", "put done 1", "put 2", "got 1",
               "put done 2", "got 2", "got None", "QueueEmpty", "QueueFull 1 True");
}

typedef struct queue_actor {
    sp_queue *q;
    const char *name;
} queue_actor;

static int put_name(void *arg, void **result) {
    (void)result;
    queue_actor *a = arg;
    if (sp_queue_put(a->q, (void *)a->name) == 0)
        logf_("put %s", a->name);
    else
        logf_("put cancelled %s", a->name);
    return 0;
}

static int get_logged(void *arg, void **result) {
    (void)result;
    queue_actor *a = arg;
    void *x;
    if (sp_queue_get(a->q, &x) == 0)
        logf_("%s got %d", a->name, (int)(intptr_t)x);
    else
        logf_("%s get cancelled", a->name);
    return 0;
}

/* Python: Queue(maxsize=1) holding "first", putters A B C waiting; a get
 * wakes A, which is cancelled before it runs and hands the slot to B; then
 * getters g1 g2 g3 with g1 cancelled while queued:
 * got first / put cancelled A / put B / qsize 1 items B / put C /
 * qsize 1 items C / g1 get cancelled / g2 got 1 / g3 got 2 */
static int s_queue_cancelled_putters_and_getters(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 1);
    assert_int_equal(sp_queue_put_nowait(&q, "first"), 0);
    queue_actor p[3] = {{&q, "A"}, {&q, "B"}, {&q, "C"}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(put_name, &p[i]);
    sp_yield();
    void *x;
    size_t n;
    assert_int_equal(sp_queue_get_nowait(&q, &x), 0);
    logf_("got %s", (char *)x);
    sp_task_cancel(t[0]);
    sp_yield();
    sp_yield();
    n = sp_queue_qsize(&q);
    assert_int_equal(sp_queue_get_nowait(&q, &x), 0);
    logf_("qsize %zu items %s", n, (char *)x);
    sp_yield();
    sp_yield();
    n = sp_queue_qsize(&q);
    assert_int_equal(sp_queue_get_nowait(&q, &x), 0);
    logf_("qsize %zu items %s", n, (char *)x);
    assert_int_equal(sp_gather(t, 3, 0, NULL, NULL), 0);
    release_all(t, 3);

    queue_actor g[3] = {{&q, "g1"}, {&q, "g2"}, {&q, "g3"}};
    for (int i = 0; i < 3; i++)
        t[i] = spawn(get_logged, &g[i]);
    sp_yield();
    sp_task_cancel(t[0]);
    sp_queue_put_nowait(&q, (void *)1);
    sp_yield();
    sp_queue_put_nowait(&q, (void *)2);
    assert_int_equal(sp_gather(t, 3, 0, NULL, NULL), 0);
    release_all(t, 3);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_queue_cancelled_waiters_pass_their_turn_on(void **state) {
    (void)state;
    run_main(s_queue_cancelled_putters_and_getters, NULL);
    expect_log("got first", "put cancelled A", "put B", "qsize 1 items B", "put C",
               "qsize 1 items C", "g1 get cancelled", "g2 got 1", "g3 got 2");
}

static int join_logged(void *arg, void **result) {
    (void)result;
    queue_actor *a = arg;
    assert_int_equal(sp_queue_join(a->q), 0);
    logf_("%s joined", a->name);
    return 0;
}

/* Python: two joiners; work put before the last task_done keeps them waiting:
 * one done / still waiting True / all done / j1 joined / j2 joined /
 * ValueError / join on idle queue returns at once */
static int s_queue_join_two_joiners(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 0);
    for (intptr_t i = 0; i < 2; i++)
        sp_queue_put_nowait(&q, (void *)i);
    queue_actor j[2] = {{&q, "j1"}, {&q, "j2"}};
    sp_task *t[2] = {spawn(join_logged, &j[0]), spawn(join_logged, &j[1])};
    sp_yield();
    void *x;
    sp_queue_get_nowait(&q, &x);
    sp_queue_task_done(&q);
    logf_("one done");
    sp_yield();
    sp_queue_get_nowait(&q, &x);
    sp_queue_put_nowait(&q, (void *)9);
    sp_queue_task_done(&q);
    sp_yield();
    logf_("still waiting %s", tf(!sp_task_done(t[0])));
    sp_queue_get_nowait(&q, &x);
    sp_queue_task_done(&q);
    logf_("all done");
    assert_int_equal(sp_gather(t, 2, 0, NULL, NULL), 0);
    if (sp_queue_task_done(&q) == -EINVAL)
        logf_("ValueError");
    assert_int_equal(sp_queue_join(&q), 0);
    logf_("join on idle queue returns at once");
    release_all(t, 2);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_queue_join_releases_every_joiner_only_when_all_work_is_done(void **state) {
    (void)state;
    run_main(s_queue_join_two_joiners, NULL);
    expect_log("one done", "still waiting True", "all done", "j1 joined", "j2 joined", "ValueError",
               "join on idle queue returns at once");
}

static int int_cmp(const void *a, const void *b, void *ctx) {
    (void)ctx;
    intptr_t x = (intptr_t)a, y = (intptr_t)b;
    return (x > y) - (x < y);
}

/* Python: LifoQueue with two waiting getters and two puts in one iteration
 * (g1 pops the newest); PriorityQueue with three waiting getters:
 * g1 got 2 / g2 got 1 / p1 got 1 / p2 got 3 / p3 got 5 / [2, 2, 4, 9] */
static int s_lifo_priority_waiters(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init_lifo(&q, 0);
    queue_actor g[3] = {{&q, "g1"}, {&q, "g2"}};
    sp_task *t[3];
    for (int i = 0; i < 2; i++)
        t[i] = spawn(get_logged, &g[i]);
    sp_yield();
    sp_queue_put_nowait(&q, (void *)1);
    sp_queue_put_nowait(&q, (void *)2);
    assert_int_equal(sp_gather(t, 2, 0, NULL, NULL), 0);
    release_all(t, 2);
    assert_int_equal(sp_queue_fini(&q), 0);

    assert_int_equal(sp_queue_init_priority(&q, 0, int_cmp, NULL), 0);
    queue_actor p[3] = {{&q, "p1"}, {&q, "p2"}, {&q, "p3"}};
    for (int i = 0; i < 3; i++)
        t[i] = spawn(get_logged, &p[i]);
    sp_yield();
    sp_queue_put_nowait(&q, (void *)5);
    sp_queue_put_nowait(&q, (void *)1);
    sp_queue_put_nowait(&q, (void *)3);
    assert_int_equal(sp_gather(t, 3, 0, NULL, NULL), 0);
    release_all(t, 3);
    static const intptr_t more[] = {4, 2, 2, 9};
    for (int i = 0; i < 4; i++)
        sp_queue_put_nowait(&q, (void *)more[i]);
    int out[4];
    for (int i = 0; i < 4; i++) {
        void *x;
        sp_queue_get_nowait(&q, &x);
        out[i] = (int)(intptr_t)x;
    }
    logf_("[%d, %d, %d, %d]", out[0], out[1], out[2], out[3]);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_lifo_and_priority_queues_serve_woken_getters_by_their_order(void **state) {
    (void)state;
    run_main(s_lifo_priority_waiters, NULL);
    expect_log("g1 got 2", "g2 got 1", "p1 got 1", "p2 got 3", "p3 got 5", "[2, 2, 4, 9]");
}

/* ---- gather, wait, as_completed, shield ---- */

typedef struct work_arg {
    const char *name;
    double delay;
    bool announce;         /* log "<name> start" */
    bool report;           /* log "<name> end" / "<name> fails" */
    bool fail;             /* fail with -EIO after the delay */
    const char *on_cancel; /* if set, swallow a cancellation and return this */
} work_arg;

/* Python: print start; sleep(delay); on CancelledError print "<name>
 * cancelled" and re-raise (or return on_cancel); then fail or return name. */
static int work(void *arg, void **result) {
    work_arg *w = arg;
    if (w->announce)
        logf_("%s start", w->name);
    if (sp_sleep(w->delay) == -ECANCELED) {
        logf_("%s cancelled", w->name);
        if (!w->on_cancel)
            return -ECANCELED;
        *result = (void *)w->on_cancel;
        return 0;
    }
    if (w->fail) {
        if (w->report)
            logf_("%s fails", w->name);
        return sp_fail(-EIO, "%s", w->name);
    }
    if (w->report)
        logf_("%s end", w->name);
    *result = (void *)w->name;
    return 0;
}

static sp_task *spawn_work(work_arg *w) {
    sp_task *t;
    assert_int_equal(sp_spawn(&t, w->name, work, w), 0);
    return t;
}

typedef struct gather_arg {
    sp_task **tasks;
    int flags;
} gather_arg;

static int gatherer(void *arg, void **result) {
    (void)result;
    gather_arg *g = arg;
    int rc = sp_gather(g->tasks, 2, g->flags, NULL, NULL);
    if (rc == -ECANCELED)
        logf_("gather cancelled");
    return rc;
}

/* Python: gather(a, b) in a task that is cancelled; a swallows its
 * cancellation. With return_exceptions=True and False alike the gather
 * raises CancelledError. Then the same task twice (one already done) and an
 * empty gather:
 * a start / b start / a cancelled / b cancelled / gather cancelled /
 * g cancelled True a a-swallowed b cancelled True / a2 start / b2 start /
 * a2 cancelled / b2 cancelled / gather cancelled / g cancelled True /
 * d start / d end / e start / e end / ['d', 'e', 'd'] / [] */
static int s_gather_cancelled_caller(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 1, true, true, .on_cancel = "a-swallowed"}, wb = {"b", 1, true, true};
    sp_task *ts[2] = {spawn_work(&wa), spawn_work(&wb)};
    gather_arg ga = {ts, SP_GATHER_RETURN_EXCEPTIONS};
    sp_task *g = spawn(gatherer, &ga);
    sp_yield();
    sp_task_cancel(g);
    sp_wait(&g, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    void *ra = NULL;
    sp_task_result(ts[0], &ra);
    logf_("g cancelled %s a %s b cancelled %s", tf(sp_task_cancelled(g)), (char *)ra,
          tf(sp_task_cancelled(ts[1])));
    release_all(ts, 2);
    sp_task_release(g);

    work_arg wa2 = {"a2", 1, true, true, .on_cancel = "a2-swallowed"}, wb2 = {"b2", 1, true, true};
    ts[0] = spawn_work(&wa2);
    ts[1] = spawn_work(&wb2);
    ga.flags = 0;
    g = spawn(gatherer, &ga);
    sp_yield();
    sp_task_cancel(g);
    sp_wait(&g, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("g cancelled %s", tf(sp_task_cancelled(g)));
    release_all(ts, 2);
    sp_task_release(g);

    work_arg wd = {"d", 0, true, true}, we = {"e", 0.01, true, true};
    sp_task *d = spawn_work(&wd);
    sp_sleep(0.01);
    sp_task *e = spawn_work(&we);
    sp_task *three[3] = {d, e, d};
    void *res[3];
    assert_int_equal(sp_gather(three, 3, 0, res, NULL), 0);
    logf_("['%s', '%s', '%s']", (char *)res[0], (char *)res[1], (char *)res[2]);
    assert_int_equal(sp_gather(three, 0, 0, NULL, NULL), 0);
    logf_("[]");
    sp_task_release(d);
    sp_task_release(e);
    return 0;
}

static void test_gather_in_a_cancelled_task_raises_cancel_even_if_a_child_swallows(void **state) {
    (void)state;
    run_main(s_gather_cancelled_caller, NULL);
    expect_log("a start", "b start", "a cancelled", "b cancelled", "gather cancelled",
               "g cancelled True a a-swallowed b cancelled True", "a2 start", "b2 start",
               "a2 cancelled", "b2 cancelled", "gather cancelled", "g cancelled True", "d start",
               "d end", "e start", "e end", "['d', 'e', 'd']", "[]");
}

/* Python: return_exceptions=True with a failing, a cancelled and a
 * successful child, then the first error surfacing while the other child
 * keeps running:
 * a start / b start / c start / b cancelled / c end / a fails /
 * ['ValueError', 'CancelledError', 'c'] / main cancelling 0 / a2 start /
 * b2 start / a2 fails / gather raised a2 b2 done False / b2 end / b2 */
static int s_gather_mixed_outcomes(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 0.02, true, true, .fail = true}, wb = {"b", 1, true, true},
             wc = {"c", 0.01, true, true};
    sp_task *ts[3] = {spawn_work(&wa), spawn_work(&wb), spawn_work(&wc)};
    sp_yield();
    sp_task_cancel(ts[1]);
    void *res[3];
    int errs[3];
    assert_int_equal(sp_gather(ts, 3, SP_GATHER_RETURN_EXCEPTIONS, res, errs), 0);
    logf_("['%s', '%s', '%s']", errs[0] == -EIO ? "ValueError" : "?",
          errs[1] == -ECANCELED ? "CancelledError" : "?", errs[2] == 0 ? (char *)res[2] : "?");
    logf_("main cancelling %d", sp_task_cancelling(sp_task_current()));
    release_all(ts, 3);

    work_arg wa2 = {"a2", 0.01, true, true, .fail = true}, wb2 = {"b2", 0.02, true, true};
    ts[0] = spawn_work(&wa2);
    ts[1] = spawn_work(&wb2);
    if (sp_gather(ts, 2, 0, NULL, NULL) == -EIO) {
        const char *msg;
        sp_task_error(ts[0], &msg);
        logf_("gather raised %s b2 done %s", msg, tf(sp_task_done(ts[1])));
    }
    void *r;
    assert_int_equal(sp_task_await(ts[1], &r), 0);
    logf_("%s", (char *)r);
    release_all(ts, 2);
    return 0;
}

static void test_gather_reports_mixed_outcomes_and_first_error_leaves_others_running(void **state) {
    (void)state;
    run_main(s_gather_mixed_outcomes, NULL);
    expect_log("a start", "b start", "c start", "b cancelled", "c end", "a fails",
               "['ValueError', 'CancelledError', 'c']", "main cancelling 0", "a2 start", "b2 start",
               "a2 fails", "gather raised a2 b2 done False", "b2 end", "b2");
}

/* Python: asyncio.wait edge cases:
 * a cancelled / b end / done 2 pending 0 / c end / c done True d pending True /
 * done [True] pending 1 / d pending True cancelled False / d cancelled /
 * e fails / e done True f pending True / f cancelled */
static int s_wait_variants(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wa = {"a", 1, .report = true}, wb = {"b", 0.02, .report = true};
    sp_task *ab[2] = {spawn_work(&wa), spawn_work(&wb)};
    sp_yield();
    sp_task_cancel(ab[0]);
    size_t nd;
    assert_int_equal(sp_wait(ab, 2, SP_FIRST_EXCEPTION, -1, NULL, &nd), 0);
    logf_("done %zu pending %zu", nd, 2 - nd);
    release_all(ab, 2);

    work_arg wc = {"c", 0, .report = true}, wd = {"d", 1, .report = true};
    sp_task *cd[2] = {spawn_work(&wc), spawn_work(&wd)};
    bool done[2];
    assert_int_equal(sp_wait(cd, 2, SP_ALL_COMPLETED, 0, done, NULL), 0);
    logf_("c done %s d pending %s", tf(done[0]), tf(!done[1]));
    assert_int_equal(sp_wait(cd, 2, SP_FIRST_COMPLETED, -1, done, &nd), 0);
    logf_("done [%s] pending %zu", tf(done[0]), 2 - nd);
    assert_int_equal(sp_wait(&cd[1], 1, SP_ALL_COMPLETED, 0.01, done, NULL), 0);
    logf_("d pending %s cancelled %s", tf(!done[0]), tf(sp_task_cancelled(cd[1])));
    sp_task_cancel(cd[1]);

    work_arg we = {"e", 0.01, .report = true, .fail = true}, wf = {"f", 1, .report = true};
    sp_task *ef[2] = {spawn_work(&we), spawn_work(&wf)};
    assert_int_equal(sp_wait(ef, 2, SP_FIRST_EXCEPTION, -1, done, NULL), 0);
    logf_("e done %s f pending %s", tf(done[0]), tf(!done[1]));
    sp_task_cancel(ef[1]);
    sp_yield();
    assert_int_equal(sp_task_error(ef[0], NULL), -EIO);
    release_all(cd, 2);
    release_all(ef, 2);
    return 0;
}

static void test_wait_first_exception_ignores_cancelled_tasks_and_timeout_zero_polls(void **state) {
    (void)state;
    run_main(s_wait_variants, NULL);
    expect_log("a cancelled", "b end", "done 2 pending 0", "c end", "c done True d pending True",
               "done [True] pending 1", "d pending True cancelled False", "d cancelled", "e fails",
               "e done True f pending True", "f cancelled");
}

/* Python: as_completed over a finished task, a success, a failure and a
 * task outliving the timeout:
 * got x / error b / got a / timeout / n 4 c running True / c cancelled */
static int s_as_completed_mixed(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wx = {"x", 0}, wa = {"a", 0.02}, wb = {"b", 0.01, .fail = true}, wc = {"c", 1};
    sp_task *x = spawn_work(&wx);
    sp_sleep(0.001);
    sp_task *ts[4] = {spawn_work(&wa), spawn_work(&wb), spawn_work(&wc), x};
    sp_as_completed *ac;
    assert_int_equal(sp_as_completed_begin(&ac, ts, 4, 0.05), 0);
    int n = 0;
    for (;;) {
        void *r;
        sp_task *which;
        int rc = sp_as_completed_next(ac, &which, &r);
        if (rc == -ENOENT)
            break;
        if (rc == 0) {
            logf_("got %s", (char *)r);
        } else if (rc == -EIO) {
            const char *msg;
            sp_task_error(which, &msg);
            logf_("error %s", msg);
        } else if (rc == -ETIMEDOUT) {
            logf_("timeout");
        }
        n++;
    }
    sp_as_completed_end(ac);
    logf_("n %d c running %s", n, tf(!sp_task_done(ts[2])));
    sp_task_cancel(ts[2]);
    sp_yield();
    release_all(ts, 4);
    return 0;
}

static void test_as_completed_yields_done_tasks_first_then_errors_then_timeouts(void **state) {
    (void)state;
    run_main(s_as_completed_mixed, NULL);
    expect_log("got x", "error b", "got a", "timeout", "n 4 c running True", "c cancelled");
}

static int inner_job(void *arg, void **result) {
    bool fail = arg != NULL;
    logf_("inner start");
    int rc = sp_sleep(0.01);
    if (rc != 0)
        return rc;
    if (fail) {
        logf_("inner fails");
        return sp_fail(-EIO, "boom");
    }
    logf_("inner end");
    *result = "r";
    return 0;
}

static int shielded(void *arg, void **result) {
    sp_task *t = arg;
    int rc = sp_shield(t, result);
    if (rc == -ECANCELED)
        logf_("shield caller cancelled, inner done %s", tf(sp_task_done(t)));
    return rc;
}

/* Python: the shield's caller cancelled while the inner task goes on to
 * fail (its error retrieved later); shield of a finished task returns at once
 * even with a cancel pending; an inner task cancelled by someone else
 * cancels the shield's caller:
 * inner start / shield caller cancelled, inner done False / s cancelled True /
 * inner fails / inner error retrieved later: boom / inner start / inner end /
 * shield of done task -> r / pending cancel delivered at the next suspension /
 * inner start / shield caller cancelled, inner done True / s3 cancelled True */
static int s_shield_edges(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t = spawn(inner_job, "fail");
    sp_task *s = spawn(shielded, t);
    sp_yield();
    sp_task_cancel(s);
    sp_yield();
    logf_("s cancelled %s", tf(sp_task_cancelled(s)));
    if (sp_task_await(t, NULL) == -EIO) {
        const char *msg;
        sp_task_error(t, &msg);
        logf_("inner error retrieved later: %s", msg);
    }
    sp_task_release(t);
    sp_task_release(s);

    sp_task *me = sp_task_current();
    t = spawn(inner_job, NULL);
    assert_int_equal(sp_task_await(t, NULL), 0);
    sp_task_cancel(me);
    void *r = NULL;
    assert_int_equal(sp_shield(t, &r), 0);
    logf_("shield of done task -> %s", (char *)r);
    if (sp_yield() == -ECANCELED) {
        logf_("pending cancel delivered at the next suspension");
        sp_task_uncancel(me);
    }
    sp_task_release(t);

    t = spawn(inner_job, NULL);
    s = spawn(shielded, t);
    sp_yield();
    sp_task_cancel(t);
    sp_wait(&s, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("s3 cancelled %s", tf(sp_task_cancelled(s)));
    sp_task_release(t);
    sp_task_release(s);
    return 0;
}

static void test_shield_leaves_the_inner_outcome_to_be_retrieved_later(void **state) {
    (void)state;
    run_main(s_shield_edges, NULL);
    expect_log("inner start", "shield caller cancelled, inner done False", "s cancelled True",
               "inner fails", "inner error retrieved later: boom", "inner start", "inner end",
               "shield of done task -> r", "pending cancel delivered at the next suspension",
               "inner start", "shield caller cancelled, inner done True", "s3 cancelled True");
}

static int child_cancelled_once(void *arg, void **result) {
    (void)arg, (void)result;
    int rc = sp_sleep(1);
    if (rc == -ECANCELED)
        logf_("child cancelled once, cancelling %d", sp_task_cancelling(sp_task_current()));
    return rc;
}

static int gathers_twice(void *arg, void **result) {
    (void)result;
    sp_task *two[2] = {arg, arg};
    int rc = sp_gather(two, 2, 0, NULL, NULL);
    if (rc == -ECANCELED)
        logf_("gather cancelled");
    return rc;
}

/* Python: cancelling gather(t, t) cancels t once per argument (two
 * requests, one CancelledError):
 * child cancelled once, cancelling 2 / gather cancelled /
 * child cancelling 2 gatherer cancelling 1 */
static int s_gather_duplicate_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t = spawn(child_cancelled_once, NULL);
    sp_task *g = spawn(gathers_twice, t);
    sp_yield();
    sp_task_cancel(g);
    sp_wait(&g, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("child cancelling %d gatherer cancelling %d", sp_task_cancelling(t),
          sp_task_cancelling(g));
    sp_task_release(t);
    sp_task_release(g);
    return 0;
}

static void test_cancelling_gather_cancels_a_repeated_task_once_per_argument(void **state) {
    (void)state;
    run_main(s_gather_duplicate_cancel, NULL);
    expect_log("child cancelled once, cancelling 2", "gather cancelled",
               "child cancelling 2 gatherer cancelling 1");
}

static int fails_after_yield(void *arg, void **result) {
    (void)arg, (void)result;
    sp_yield();
    logf_("inner fails");
    return sp_fail(-EINVAL, "x");
}

static int shield_caller(void *arg, void **result) {
    int rc = sp_shield(arg, result);
    if (rc == -ECANCELED)
        logf_("caller cancelled");
    return rc;
}

/* Python: the shield's caller is cancelled, then the inner task fails in the
 * same iteration; the shield's callback still runs and marks the error
 * retrieved, so nothing is logged about it:
 * inner fails / caller cancelled / done True True */
static int s_shield_marks_late_error_retrieved(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t = spawn(fails_after_yield, NULL);
    sp_task *c = spawn(shield_caller, t);
    sp_yield();
    sp_task_cancel(c);
    sp_yield();
    sp_yield();
    logf_("done %s %s", tf(sp_task_done(t)), tf(sp_task_cancelled(c)));
    sp_task_release(t);
    sp_task_release(c);
    return 0;
}

static void test_shield_cancelled_as_the_inner_fails_leaves_no_unretrieved_error(void **state) {
    (void)state;
    stderr_capture cap;
    capture_begin(&cap);
    run_main(s_shield_marks_late_error_retrieved, NULL);
    char *err = capture_end(&cap);
    expect_log("inner fails", "caller cancelled", "done True True");
    assert_null(strstr(err, "never retrieved"));
    free(err);
}

/* ---- TaskGroup ---- */

/* Python exception types as Spindle error codes in these scenarios. */
static const char *py_exc(int err) {
    switch (err) {
    case -EINVAL:
        return "ValueError";
    case -ENOENT:
        return "KeyError";
    case -EIO:
        return "OSError";
    case -ECANCELED:
        return "CancelledError";
    default:
        return "?";
    }
}

static int fail_after(void *arg, void **result) {
    (void)result;
    work_arg *w = arg;
    int rc = sp_sleep(w->delay);
    if (rc != 0)
        return rc;
    if (w->fail) {
        logf_("%s fails", w->name);
        return sp_fail(-EINVAL, "%s", w->name);
    }
    logf_("%s done", w->name);
    return 0;
}

static int sleeps_until_cancelled(void *arg, void **result) {
    (void)result;
    int rc = sp_sleep(1);
    if (rc == -ECANCELED)
        logf_("%s cancelled", (const char *)arg);
    return rc;
}

/* Python 3.11.7: the body ends normally, a child fails while __aexit__
 * waits; the group cancels its owner to wake it but, having uncancelled
 * before the wait, leaves that request counted:
 * body done / x fails / sibling cancelled / group raised ['x'] / cancelling 1 /
 * still runs */
static int s_tg_failure_during_exit(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg wx = {"x", 0.01, .fail = true};
    sp_taskgroup g;
    assert_int_equal(sp_taskgroup_init(&g), 0);
    sp_taskgroup_spawn(&g, NULL, NULL, fail_after, &wx);
    sp_taskgroup_spawn(&g, NULL, NULL, sleeps_until_cancelled, "sibling");
    logf_("body done");
    int rc = sp_taskgroup_wait(&g, 0);
    size_t n;
    const sp_tg_error *e = sp_taskgroup_errors(&g, &n);
    if (rc == -EINVAL && n == 1)
        logf_("group raised ['%s']", e[0].msg);
    sp_taskgroup_fini(&g);
    logf_("cancelling %d", sp_task_cancelling(sp_task_current()));
    assert_int_equal(sp_yield(), 0);
    logf_("still runs");
    return 0;
}

static void test_taskgroup_failure_during_exit_leaves_the_owner_cancel_counted(void **state) {
    (void)state;
    run_main(s_tg_failure_during_exit, NULL);
    expect_log("body done", "x fails", "sibling cancelled", "group raised ['x']", "cancelling 1",
               "still runs");
}

static int spawner(void *arg, void **result) {
    (void)result;
    sp_taskgroup *g = arg;
    static work_arg late = {"late", 0.005};
    logf_("spawner runs");
    int rc = sp_sleep(0.005);
    if (rc != 0)
        return rc;
    assert_int_equal(sp_taskgroup_spawn(g, NULL, NULL, fail_after, &late), 0);
    logf_("spawner added late");
    return 0;
}

static int spawn_when_aborting(void *arg, void **result) {
    (void)result;
    static work_arg x = {"x", 0};
    int rc = sp_sleep(1);
    if (rc == -ECANCELED && sp_taskgroup_spawn(arg, NULL, NULL, fail_after, &x) == -ESHUTDOWN)
        logf_("RuntimeError: ['shutting', 'down']");
    return rc;
}

/* Python: a child adds a task to its own group while the owner already
 * waits in __aexit__; a child adding one while the group aborts is refused,
 * and so is a finished group:
 * spawner runs / early done / spawner added late / late done / group done /
 * f fails / RuntimeError: ['shutting', 'down'] / errors ['f'] /
 * finished: finished */
static int s_tg_children_spawn_children(void *arg, void **result) {
    (void)arg, (void)result;
    work_arg early = {"early", 0}, f = {"f", 0.005, .fail = true};
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, spawner, &g);
    sp_taskgroup_spawn(&g, NULL, NULL, fail_after, &early);
    assert_int_equal(sp_taskgroup_wait(&g, 0), 0);
    sp_taskgroup_fini(&g);
    logf_("group done");

    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, spawn_when_aborting, &g);
    sp_taskgroup_spawn(&g, NULL, NULL, fail_after, &f);
    int rc = sp_taskgroup_wait(&g, 0);
    size_t n;
    const sp_tg_error *e = sp_taskgroup_errors(&g, &n);
    if (rc == -EINVAL && n == 1)
        logf_("errors ['%s']", e[0].msg);
    if (sp_taskgroup_spawn(&g, NULL, NULL, fail_after, &early) == -EPERM)
        logf_("finished: finished");
    sp_taskgroup_fini(&g);
    return 0;
}

static void test_taskgroup_accepts_children_from_children_until_it_aborts(void **state) {
    (void)state;
    run_main(s_tg_children_spawn_children, NULL);
    expect_log("spawner runs", "early done", "spawner added late", "late done", "group done",
               "f fails", "RuntimeError: ['shutting', 'down']", "errors ['f']",
               "finished: finished");
}

static int fails_at_once(void *arg, void **result) {
    (void)result;
    logf_("%s fails", (const char *)arg);
    return sp_fail(-ENOENT, "'%s'", (const char *)arg);
}

static int slow_bad_canceller(void *arg, void **result) {
    (void)arg, (void)result;
    if (sp_sleep(1) != -ECANCELED)
        return 0;
    logf_("slow canceller cleaning up");
    sp_sleep(0.01);
    logf_("slow canceller fails during cleanup");
    return sp_fail(-EIO, "cleanup");
}

/* Python: a child fails, the body raises, a sibling fails while cancelling;
 * the ExceptionGroup lists the children's errors in the order they happened,
 * then the body's:
 * c1 fails / body raises / slow canceller cleaning up /
 * slow canceller fails during cleanup /
 * ["KeyError:'c1'", 'OSError:cleanup', 'ValueError:body'] / cancelling 0 */
static int s_tg_error_order(void *arg, void **result) {
    (void)arg, (void)result;
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, fails_at_once, "c1");
    sp_taskgroup_spawn(&g, NULL, NULL, slow_bad_canceller, NULL);
    int body = sp_yield();
    if (body == 0) {
        logf_("body raises");
        body = -EINVAL;
    }
    int rc = sp_taskgroup_wait(&g, body);
    size_t n;
    const sp_tg_error *e = sp_taskgroup_errors(&g, &n);
    assert_int_equal(rc, -ENOENT);
    assert_int_equal(n, 3);
    assert_null(e[2].task_name);
    logf_("[\"%s:%s\", '%s:%s', '%s:body']", py_exc(e[0].err), e[0].msg, py_exc(e[1].err), e[1].msg,
          py_exc(e[2].err));
    sp_taskgroup_fini(&g);
    logf_("cancelling %d", sp_task_cancelling(sp_task_current()));
    return 0;
}

static void test_taskgroup_lists_child_errors_in_order_then_the_body_error(void **state) {
    (void)state;
    run_main(s_tg_error_order, NULL);
    expect_log("c1 fails", "body raises", "slow canceller cleaning up",
               "slow canceller fails during cleanup",
               "[\"KeyError:'c1'\", 'OSError:cleanup', 'ValueError:body']", "cancelling 0");
}

static int bad_on_cancel(void *arg, void **result) {
    (void)arg, (void)result;
    if (sp_sleep(1) != -ECANCELED)
        return 0;
    logf_("bad child raises on cancel");
    return sp_fail(-EINVAL, "bad");
}

static int tg_owner(void *arg, void **result) {
    (void)arg;
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, sleeps_until_cancelled, "a");
    sp_taskgroup_spawn(&g, NULL, NULL, bad_on_cancel, NULL);
    int rc = sp_taskgroup_wait(&g, sp_sleep(1));
    size_t n;
    const sp_tg_error *e = sp_taskgroup_errors(&g, &n);
    if (rc == -EINVAL && n == 1) {
        logf_("owner got group ['%s']", e[0].msg);
        *result = "swallowed";
        rc = 0;
    } else if (rc == -ECANCELED) {
        logf_("owner cancelled");
    }
    sp_taskgroup_fini(&g);
    return rc;
}

/* Python: the owner is cancelled from outside and a child turns its
 * cancellation into an error: the error wins, the owner can swallow the
 * group and return, its cancel request still counted:
 * a cancelled / bad child raises on cancel / owner got group ['bad'] /
 * o -> ['swallowed'] cancelled False cancelling 1 */
static int s_tg_outside_cancel_child_error(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *o = spawn(tg_owner, NULL);
    sp_sleep(0.005);
    sp_task_cancel(o);
    void *r = NULL;
    int err;
    assert_int_equal(sp_gather(&o, 1, SP_GATHER_RETURN_EXCEPTIONS, &r, &err), 0);
    logf_("o -> ['%s'] cancelled %s cancelling %d", err == 0 ? (char *)r : py_exc(err),
          tf(sp_task_cancelled(o)), sp_task_cancelling(o));
    sp_task_release(o);
    return 0;
}

static void test_taskgroup_child_error_on_cancel_beats_the_owners_cancellation(void **state) {
    (void)state;
    run_main(s_tg_outside_cancel_child_error, NULL);
    expect_log("a cancelled", "bad child raises on cancel", "owner got group ['bad']",
               "o -> ['swallowed'] cancelled False cancelling 1");
}

static int cancels_itself(void *arg, void **result) {
    (void)arg, (void)result;
    sp_yield();
    logf_("child cancelled on its own");
    sp_task_cancel(sp_task_current());
    return sp_yield();
}

/* Python: asyncio.timeout(0.01) around a TaskGroup whose body sleeps; a
 * child that cancels itself is no error, the deadline cancels the rest:
 * child cancelled on its own / a cancelled / timeout around the group /
 * cancelling 0 */
static int s_timeout_around_taskgroup(void *arg, void **result) {
    (void)arg, (void)result;
    sp_timeout tm;
    sp_timeout_enter(&tm, 0.01);
    sp_taskgroup g;
    sp_taskgroup_init(&g);
    sp_taskgroup_spawn(&g, NULL, NULL, sleeps_until_cancelled, "a");
    sp_taskgroup_spawn(&g, NULL, NULL, cancels_itself, NULL);
    int rc = sp_taskgroup_wait(&g, sp_sleep(1));
    sp_taskgroup_fini(&g);
    if (sp_timeout_exit(&tm, rc) == -ETIMEDOUT)
        logf_("timeout around the group");
    logf_("cancelling %d", sp_task_cancelling(sp_task_current()));
    return 0;
}

static void test_timeout_around_a_taskgroup_becomes_etimedout(void **state) {
    (void)state;
    run_main(s_timeout_around_taskgroup, NULL);
    expect_log("child cancelled on its own", "a cancelled", "timeout around the group",
               "cancelling 0");
}

/* ---- more wait_for and timeout scopes ---- */

static int bad_canceller(void *arg, void **result) {
    (void)arg, (void)result;
    if (sp_sleep(1) != -ECANCELED)
        return 0;
    logf_("inner raises while cancelling");
    return sp_fail(-EINVAL, "during cancel");
}

static int slow_canceller(void *arg, void **result) {
    (void)arg, (void)result;
    if (sp_sleep(1) != -ECANCELED)
        return 0;
    logf_("inner cleaning up");
    sp_sleep(0.02);
    logf_("inner cleaned up");
    return -ECANCELED;
}

static int wait_for_or_log(void *arg, void **result) {
    sp_task *t = arg;
    int rc = sp_wait_for(t, 1, result);
    if (rc == -ECANCELED)
        logf_("caller cancelled, inner done %s", tf(sp_task_done(t)));
    return rc;
}

static int fails_key_error(void *arg, void **result) {
    (void)arg, (void)result;
    sp_yield();
    return -ENOENT;
}

/* Python: an error raised while the timed-out task cancels replaces the
 * TimeoutError; a cancelled wait_for waits for a slow canceller before it
 * raises; no limit passes errors through:
 * inner raises while cancelling / wait_for raised during cancel /
 * inner cleaning up / inner cleaned up / caller cancelled, inner done True /
 * c cancelled True t cancelled True / KeyError through wait_for(None) */
static int s_wait_for_cancel_paths(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t = spawn(bad_canceller, NULL);
    int rc = sp_wait_for(t, 0.01, NULL);
    if (rc == -EINVAL) {
        const char *msg;
        sp_task_error(t, &msg);
        logf_("wait_for raised %s", msg);
    } else if (rc == -ETIMEDOUT) {
        logf_("timeout");
    }
    sp_task_release(t);

    t = spawn(slow_canceller, NULL);
    sp_task *c = spawn(wait_for_or_log, t);
    sp_sleep(0.005);
    sp_task_cancel(c);
    sp_wait(&c, 1, SP_ALL_COMPLETED, -1, NULL, NULL);
    logf_("c cancelled %s t cancelled %s", tf(sp_task_cancelled(c)), tf(sp_task_cancelled(t)));
    sp_task_release(t);
    sp_task_release(c);

    t = spawn(fails_key_error, NULL);
    if (sp_wait_for(t, -1, NULL) == -ENOENT)
        logf_("KeyError through wait_for(None)");
    sp_task_release(t);
    return 0;
}

static void test_wait_for_surfaces_cancel_time_errors_and_waits_for_slow_cancellers(void **state) {
    (void)state;
    run_main(s_wait_for_cancel_paths, NULL);
    expect_log("inner raises while cancelling", "wait_for raised during cancel",
               "inner cleaning up", "inner cleaned up", "caller cancelled, inner done True",
               "c cancelled True t cancelled True", "KeyError through wait_for(None)");
}

static int late_inner(void *arg, void **result) {
    (void)arg;
    logf_("inner start");
    int rc = sp_sleep(0.03);
    if (rc != 0)
        return rc;
    logf_("inner end");
    *result = "late";
    return 0;
}

/* Python: a timeout expiring while the body awaits shield(t) leaves t
 * running; reschedule pushes a deadline out or (None) removes it; in nested
 * scopes only the expired one reports; an expired scope refuses reschedule:
 * inner start / timeout, inner done False expired True / inner end /
 * inner -> late / survived reschedule False / disabled False /
 * inner expired False / outer timeout True /
 * RuntimeError Cannot change state of expired Timeout / cancelling 0 */
static int s_timeout_scopes(void *arg, void **result) {
    (void)arg, (void)result;
    sp_task *t = spawn(late_inner, NULL);
    sp_timeout tm;
    sp_timeout_enter(&tm, 0.01);
    if (sp_timeout_exit(&tm, sp_shield(t, NULL)) == -ETIMEDOUT)
        logf_("timeout, inner done %s expired %s", tf(sp_task_done(t)),
              tf(sp_timeout_expired(&tm)));
    void *r = NULL;
    assert_int_equal(sp_task_await(t, &r), 0);
    logf_("inner -> %s", (char *)r);
    sp_task_release(t);

    sp_timeout_enter(&tm, 0.01);
    assert_int_equal(sp_timeout_reschedule(&tm, 0.05), 0);
    int rc = sp_sleep(0.02);
    if (rc == 0)
        logf_("survived reschedule %s", tf(sp_timeout_expired(&tm)));
    assert_int_equal(sp_timeout_exit(&tm, rc), 0);

    sp_timeout_enter(&tm, 0.005);
    assert_int_equal(sp_timeout_reschedule(&tm, -1), 0);
    assert_int_equal(sp_timeout_exit(&tm, sp_sleep(0.01)), 0);
    logf_("disabled %s", tf(sp_timeout_expired(&tm)));

    sp_timeout outer, inner;
    sp_timeout_enter(&outer, 0.01);
    sp_timeout_enter(&inner, 1);
    rc = sp_timeout_exit(&inner, sp_sleep(1));
    if (rc == -ETIMEDOUT)
        logf_("inner timeout (wrong)");
    logf_("inner expired %s", tf(sp_timeout_expired(&inner)));
    if (sp_timeout_exit(&outer, rc) == -ETIMEDOUT)
        logf_("outer timeout %s", tf(sp_timeout_expired(&outer)));

    sp_timeout_enter(&tm, 0);
    if (sp_timeout_exit(&tm, sp_sleep(1)) == -ETIMEDOUT &&
        sp_timeout_reschedule(&tm, -1) == -EINVAL)
        logf_("RuntimeError Cannot change state of expired Timeout");
    logf_("cancelling %d", sp_task_cancelling(sp_task_current()));
    return 0;
}

static void test_timeout_scopes_with_shield_reschedule_and_nesting(void **state) {
    (void)state;
    run_main(s_timeout_scopes, NULL);
    expect_log("inner start", "timeout, inner done False expired True", "inner end",
               "inner -> late", "survived reschedule False", "disabled False",
               "inner expired False", "outer timeout True",
               "RuntimeError Cannot change state of expired Timeout", "cancelling 0");
}

/* ---- scheduling order and the end of sp_run ---- */

typedef struct log_cb {
    sp_cb cb;
    const char *msg;
    bool with_result; /* append the future's result (a string) */
} log_cb;

static void log_cb_run(sp_cb *cb) {
    log_cb *l = (log_cb *)((char *)cb - offsetof(log_cb, cb));
    if (l->with_result)
        logf_("%s %s", l->msg, (char *)cb->fut->result);
    else
        logf_("%s", l->msg);
}

typedef struct ticker_arg {
    const char *name;
    int n;
} ticker_arg;

static int ticker(void *arg, void **result) {
    ticker_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        logf_("%s %d", a->name, i);
        sp_yield();
    }
    *result = (void *)a->name;
    return 0;
}

/* Python: done callbacks run one iteration after the task ends, in the order
 * added and before the awaiting task resumes; one added to a finished task
 * or with call_soon queues behind what is already there:
 * a 0 / b 0 / main 1 / a 1 / main 2 / cb1 a / cb2 a / main after a /
 * cb3 on done task / call_soon / main 3 */
static int s_callback_order(void *arg, void **result) {
    (void)arg, (void)result;
    ticker_arg ta = {"a", 2}, tb = {"b", 1};
    log_cb cb1 = {.cb.fn = log_cb_run, .msg = "cb1", .with_result = true};
    log_cb cb2 = {.cb.fn = log_cb_run, .msg = "cb2", .with_result = true};
    log_cb cb3 = {.cb.fn = log_cb_run, .msg = "cb3 on done task"};
    log_cb soon = {.cb.fn = log_cb_run, .msg = "call_soon"};
    sp_task *a = spawn(ticker, &ta);
    sp_future_add_callback(sp_task_future(a), &cb1.cb);
    sp_task *b = spawn(ticker, &tb);
    sp_future_add_callback(sp_task_future(a), &cb2.cb);
    sp_yield();
    logf_("main 1");
    sp_yield();
    logf_("main 2");
    assert_int_equal(sp_task_await(a, NULL), 0);
    logf_("main after a");
    sp_future_add_callback(sp_task_future(a), &cb3.cb);
    sp_call_soon(&soon.cb);
    sp_yield();
    logf_("main 3");
    sp_task_release(a);
    sp_task_release(b);
    return 0;
}

static void test_done_callbacks_run_in_order_before_the_awaiting_task(void **state) {
    (void)state;
    run_main(s_callback_order, NULL);
    expect_log("a 0", "b 0", "main 1", "a 1", "main 2", "cb1 a", "cb2 a", "main after a",
               "cb3 on done task", "call_soon", "main 3");
}

typedef struct leftover_arg {
    const char *name;
    bool cleanup_sleep;
} leftover_arg;

static int leftover(void *arg, void **result) {
    (void)result;
    leftover_arg *a = arg;
    logf_("%s waits", a->name);
    int rc = sp_sleep(10);
    if (rc != -ECANCELED)
        return rc;
    logf_("%s cancelled", a->name);
    if (a->cleanup_sleep)
        sp_sleep(0.01);
    logf_("%s cleaned up", a->name);
    return rc;
}

static int s_leftovers(void *arg, void **result) {
    (void)arg;
    static leftover_arg l1 = {"l1", true}, l2 = {"l2", false};
    assert_int_equal(sp_spawn(NULL, NULL, leftover, &l1), 0);
    sp_yield();
    assert_int_equal(sp_spawn(NULL, NULL, logs_run, "quick runs"), 0);
    assert_int_equal(sp_spawn(NULL, NULL, leftover, &l2), 0);
    logf_("main returns");
    *result = "main result";
    return 0;
}

/* Python: tasks still pending when main returns get one more iteration (the
 * one that stops the loop), then are all cancelled and awaited together:
 * l1 waits / main returns / quick runs / l2 waits / l1 cancelled /
 * l2 cancelled / l2 cleaned up / l1 cleaned up / main result
 * (asyncio cancels them in the order of a set; Spindle in creation order,
 * which is what this small set gives.) */
static void test_run_gives_leftovers_one_iteration_then_cancels_and_drains_them(void **state) {
    (void)state;
    sp_log_n = 0;
    void *r = NULL;
    assert_int_equal(sp_run(s_leftovers, NULL, &r), 0);
    logf_("%s", (char *)r);
    expect_log("l1 waits", "main returns", "quick runs", "l2 waits", "l1 cancelled", "l2 cancelled",
               "l2 cleaned up", "l1 cleaned up", "main result");
}

/* ---- fd readiness ---- */

static int pipe_reader(void *arg, void **result) {
    (void)result;
    int fd = *(int *)arg;
    assert_int_equal(sp_io_wait(fd, SP_IO_READ, -1), 0);
    char c = 0;
    assert_int_equal(read(fd, &c, 1), 1);
    logf_("readable b'%c'", c);
    return 0;
}

static int ticks_5(void *arg, void **result) {
    (void)arg, (void)result;
    for (int i = 0; i < 5; i++) {
        logf_("tick %d", i);
        sp_yield();
    }
    return 0;
}

/* Python (loop.add_reader completing a future, as sp_io_wait): a pipe that is
 * readable at once, while another task ticks with sleep(0). The poll of the
 * next iteration sees it, the reader callback runs in that iteration and the
 * task one later: tick 0 / tick 1 / tick 2 / readable b'x' / tick 3 / tick 4 */
static int s_io_ready_among_ticks(void *arg, void **result) {
    (void)arg, (void)result;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(sp_fd_set_nonblocking(p[0]), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    sp_task *t[2] = {spawn(pipe_reader, &p[0]), spawn(ticks_5, NULL)};
    assert_int_equal(sp_gather(t, 2, 0, NULL, NULL), 0);
    release_all(t, 2);
    close(p[0]);
    close(p[1]);
    return 0;
}

static void test_io_wait_wakes_among_busy_tasks_in_asyncios_iteration(void **state) {
    (void)state;
    run_main(s_io_ready_among_ticks, NULL);
    expect_log("tick 0", "tick 1", "tick 2", "readable b'x'", "tick 3", "tick 4");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_zero_fires_before_the_tasks_own_wakeup),
        cmocka_unit_test(test_wait_for_returns_the_result_when_cancel_and_completion_coincide),
        cmocka_unit_test(test_cancel_of_a_task_awaiting_a_swallowing_task_never_interrupts_it),
        cmocka_unit_test(test_task_catching_cancel_uncancels_and_returns_a_value),
        cmocka_unit_test(test_uncancel_lowers_the_count_but_a_delivered_cancel_still_lands),
        cmocka_unit_test(test_task_ending_with_ecanceled_unasked_is_cancelled_with_count_zero),
        cmocka_unit_test(test_lock_passes_over_cancelled_waiters_in_arrival_order),
        cmocka_unit_test(test_semaphore_cancelled_waiters_hand_units_down_the_line),
        cmocka_unit_test(test_event_waiter_cancelled_in_the_iteration_of_set_reports_cancel),
        cmocka_unit_test(
            test_condition_notification_is_lost_with_a_waiter_cancelled_before_it_runs),
        cmocka_unit_test(test_queue_of_one_alternates_producer_and_consumer),
        cmocka_unit_test(test_queue_cancelled_waiters_pass_their_turn_on),
        cmocka_unit_test(test_queue_join_releases_every_joiner_only_when_all_work_is_done),
        cmocka_unit_test(test_lifo_and_priority_queues_serve_woken_getters_by_their_order),
        cmocka_unit_test(test_gather_in_a_cancelled_task_raises_cancel_even_if_a_child_swallows),
        cmocka_unit_test(test_cancelling_gather_cancels_a_repeated_task_once_per_argument),
        cmocka_unit_test(test_gather_reports_mixed_outcomes_and_first_error_leaves_others_running),
        cmocka_unit_test(test_wait_first_exception_ignores_cancelled_tasks_and_timeout_zero_polls),
        cmocka_unit_test(test_as_completed_yields_done_tasks_first_then_errors_then_timeouts),
        cmocka_unit_test(test_shield_leaves_the_inner_outcome_to_be_retrieved_later),
        cmocka_unit_test(test_shield_cancelled_as_the_inner_fails_leaves_no_unretrieved_error),
        cmocka_unit_test(test_taskgroup_failure_during_exit_leaves_the_owner_cancel_counted),
        cmocka_unit_test(test_taskgroup_accepts_children_from_children_until_it_aborts),
        cmocka_unit_test(test_taskgroup_lists_child_errors_in_order_then_the_body_error),
        cmocka_unit_test(test_taskgroup_child_error_on_cancel_beats_the_owners_cancellation),
        cmocka_unit_test(test_timeout_around_a_taskgroup_becomes_etimedout),
        cmocka_unit_test(test_wait_for_surfaces_cancel_time_errors_and_waits_for_slow_cancellers),
        cmocka_unit_test(test_timeout_scopes_with_shield_reschedule_and_nesting),
        cmocka_unit_test(test_done_callbacks_run_in_order_before_the_awaiting_task),
        cmocka_unit_test(test_run_gives_leftovers_one_iteration_then_cancels_and_drains_them),
        cmocka_unit_test(test_io_wait_wakes_among_busy_tasks_in_asyncios_iteration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
