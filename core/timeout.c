/* Deadlines and shields: the timeout scope (asyncio.timeout), wait_for and
 * shield, each built from futures and done-callbacks as CPython 3.11 does, so
 * cancellation counts compose (a timeout inside a cancelled task still
 * reports the outer cancellation, not a timeout). */
#include <errno.h>
#include <string.h>
#include <spindle/combinators.h>

#include "task_impl.h"

enum { TM_CREATED, TM_ENTERED, TM_EXPIRING, TM_EXPIRED, TM_EXITED };

static void timeout_fire(sp_cb *cb) {
    sp_timeout *tm = sp_container_of(cb, sp_timeout, priv_timer.cb);
    sp_task_cancel(tm->task);
    tm->state = TM_EXPIRING;
}

int sp_timeout_reschedule(sp_timeout *tm, double seconds) {
    if (tm->state != TM_ENTERED)
        return -EINVAL;
    sp_loop *loop = sp_loop_get();
    sp_timer_disarm(loop, &tm->priv_timer);
    if (seconds < 0)
        return 0;
    int64_t when = sp_deadline_after(seconds);
    /* A deadline already reached fires through call_soon, ahead of whatever
     * is queued after it (the task's own wake-up from sleep(0), say), as
     * asyncio's reschedule does; a timer would fire only after those. */
    if (when <= sp_now_ns())
        sp_call_soon(&tm->priv_timer.cb);
    else
        sp_timer_arm(loop, &tm->priv_timer, when);
    return 0;
}

int sp_timeout_enter(sp_timeout *tm, double seconds) {
    sp_task *t = sp_task_current();
    if (!t)
        return -EPERM;
    memset(tm, 0, sizeof(*tm));
    sp_timer_init(&tm->priv_timer, timeout_fire);
    tm->task = t;
    tm->cancelling = sp_task_cancelling(t);
    tm->state = TM_ENTERED;
    return sp_timeout_reschedule(tm, seconds);
}

int sp_timeout_exit(sp_timeout *tm, int rc) {
    if (tm->state != TM_ENTERED && tm->state != TM_EXPIRING)
        return rc;
    sp_timer_disarm(sp_loop_get(), &tm->priv_timer);
    if (tm->state == TM_EXPIRING) {
        tm->state = TM_EXPIRED;
        if (sp_task_uncancel(tm->task) <= tm->cancelling && rc == -ECANCELED)
            return -ETIMEDOUT;
    } else {
        tm->state = TM_EXITED;
    }
    return rc;
}

bool sp_timeout_expired(const sp_timeout *tm) {
    return tm->state == TM_EXPIRING || tm->state == TM_EXPIRED;
}

/* A future released (completed) by whichever comes first: a timer or a
 * task's completion. CPython's _release_waiter. */
typedef struct releaser {
    sp_future waiter;
    sp_timer timer;
    sp_cb on_done;
} releaser;

static void release_waiter(sp_future *w) {
    if (w->state == SP_FUT_PENDING)
        sp_future_set_result(w, NULL);
}

static void release_by_timer(sp_cb *cb) {
    release_waiter(&sp_container_of(cb, releaser, timer.cb)->waiter);
}

static void release_by_done(sp_cb *cb) {
    release_waiter(&sp_container_of(cb, releaser, on_done)->waiter);
}

static void releaser_init(releaser *r) {
    memset(r, 0, sizeof(*r));
    sp_future_init(&r->waiter);
    sp_timer_init(&r->timer, release_by_timer);
    r->on_done.fn = release_by_done;
}

/* Cancels t and waits until it has finished; the wait itself stays
 * cancellable (CPython's _cancel_and_wait). */
static int cancel_and_wait(sp_task *t) {
    releaser r;
    releaser_init(&r);
    sp_future_add_callback(&t->fut, &r.on_done);
    sp_task_cancel(t);
    int rc = sp_future_await(&r.waiter, NULL);
    sp_future_remove_callback(&r.on_done);
    sp_future_fini(&r.waiter);
    return rc;
}

int sp_wait_for(sp_task *t, double timeout, void **result) {
    sp_task *self = sp_task_current();
    if (!self)
        return -EPERM;
    if (t == self)
        return -EDEADLK;
    if (timeout < 0)
        return sp_task_await(t, result);
    if (timeout == 0) {
        if (sp_task_done(t))
            return sp_task_result(t, result);
        int rc = cancel_and_wait(t);
        if (rc != 0)
            return rc;
        rc = sp_task_result(t, result);
        return rc == -ECANCELED ? -ETIMEDOUT : rc;
    }

    sp_loop *loop = sp_loop_get();
    releaser r;
    releaser_init(&r);
    sp_timer_arm(loop, &r.timer, sp_deadline_after(timeout));
    sp_future_add_callback(&t->fut, &r.on_done);
    int rc = sp_future_await(&r.waiter, NULL);
    /* r lives in this frame: neither the timer nor t's callback may run
     * after we return, even one already queued (t finished in the iteration
     * that released the waiter). */
    sp_timer_disarm(loop, &r.timer);
    sp_future_remove_callback(&r.on_done);
    sp_future_fini(&r.waiter);
    /* Done meanwhile: its outcome wins, even over our own cancellation
     * (CPython 3.11). */
    if (sp_task_done(t))
        return sp_task_result(t, result);
    int crc = cancel_and_wait(t);
    if (rc == -ECANCELED)
        return -ECANCELED; /* cancelled either way */
    if (crc != 0)
        return crc;
    rc = sp_task_result(t, result);
    return rc == -ECANCELED ? -ETIMEDOUT : rc;
}

typedef struct shield {
    sp_future outer;
    sp_cb inner_done;
    sp_task *inner;
} shield;

static void shield_inner_done(sp_cb *cb) {
    shield *s = sp_container_of(cb, shield, inner_done);
    sp_future *in = &s->inner->fut;
    if (s->outer.state != SP_FUT_PENDING) {
        in->retrieved = true;
        return;
    }
    if (in->state == SP_FUT_CANCELLED) {
        sp_future_cancel(&s->outer);
    } else if (in->err != 0) {
        in->retrieved = true;
        sp_future_set_error(&s->outer, in->err, in->errmsg);
    } else {
        sp_future_set_result(&s->outer, in->result);
    }
}

int sp_shield(sp_task *t, void **result) {
    if (!sp_task_current())
        return -EPERM;
    if (sp_task_done(t))
        return sp_task_result(t, result);
    shield s;
    memset(&s, 0, sizeof(s));
    sp_future_init(&s.outer);
    s.inner = t;
    s.inner_done.fn = shield_inner_done;
    sp_future_add_callback(&t->fut, &s.inner_done);
    int rc = sp_future_await(&s.outer, result);
    /* The outer future is done: the inner one no longer reports to it. A
     * report already queued would have found the outer cancelled and marked
     * the inner's outcome retrieved, as CPython's _inner_done_callback does. */
    if (sp_future_remove_callback(&s.inner_done) == 0 && sp_task_done(t))
        t->fut.retrieved = true;
    sp_future_fini(&s.outer);
    return rc;
}
