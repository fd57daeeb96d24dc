/* Lock, Event, Semaphore and Condition: asyncio's locks.py (CPython 3.11)
 * line by line. A waiting task puts a waiter (a future and a list link) on its
 * own stack, queues it on the primitive and awaits the future; it always
 * unlinks the waiter itself once it resumes, as asyncio's `finally` does. */
#include <errno.h>
#include <limits.h>
#include <spindle/sync.h>
#include <spindle/task.h>

#include "list.h"

typedef struct waiter {
    sp_future fut;
    sp_list link;
} waiter;

static waiter *waiter_of(sp_list *n) {
    return sp_container_of(n, waiter, link);
}

/* Queues w on `waiters`, awaits it, and unlinks it whatever happened. */
static int waiter_wait(sp_list *waiters, waiter *w) {
    sp_future_init(&w->fut);
    sp_list_push_back(waiters, &w->link);
    int rc = sp_future_await(&w->fut, NULL);
    sp_list_remove(&w->link);
    return rc;
}

static bool can_wait(void) {
    return sp_task_current() != NULL;
}

/* ---- Lock ---- */

void sp_lock_init(sp_lock *l) {
    sp_list_init(&l->priv_waiters);
    l->priv_locked = false;
}

int sp_lock_fini(sp_lock *l) {
    return sp_list_empty(&l->priv_waiters) ? 0 : -EBUSY;
}

bool sp_lock_locked(const sp_lock *l) {
    return l->priv_locked;
}

/* Waiters cancelled while pending stay queued until their task runs; they no
 * longer count as ahead of a newcomer. */
static bool all_cancelled(const sp_list *waiters) {
    for (const sp_list *n = waiters->next; n != waiters; n = n->next)
        if (!sp_future_cancelled(&waiter_of((sp_list *)n)->fut))
            return false;
    return true;
}

/* Wakes the first waiter unless it is already done: a done one will run and
 * either take the lock or, if cancelled, come back here for the next. */
static void lock_wake_up_first(sp_lock *l) {
    if (sp_list_empty(&l->priv_waiters))
        return;
    waiter *w = waiter_of(l->priv_waiters.next);
    if (!sp_future_done(&w->fut))
        sp_future_set_result(&w->fut, NULL);
}

int sp_lock_acquire(sp_lock *l) {
    if (!l->priv_locked && all_cancelled(&l->priv_waiters)) {
        l->priv_locked = true;
        return 0;
    }
    if (!can_wait())
        return -EPERM;
    waiter w;
    int rc = waiter_wait(&l->priv_waiters, &w);
    if (rc != 0) {
        /* Woken then cancelled before it ran: pass the turn on. */
        if (!l->priv_locked)
            lock_wake_up_first(l);
        return rc;
    }
    l->priv_locked = true;
    return 0;
}

int sp_lock_release(sp_lock *l) {
    if (!l->priv_locked)
        return -EPERM;
    l->priv_locked = false;
    lock_wake_up_first(l);
    return 0;
}

/* ---- Event ---- */

void sp_event_init(sp_event *e) {
    sp_list_init(&e->priv_waiters);
    e->priv_value = false;
}

int sp_event_fini(sp_event *e) {
    return sp_list_empty(&e->priv_waiters) ? 0 : -EBUSY;
}

void sp_event_set(sp_event *e) {
    if (e->priv_value)
        return;
    e->priv_value = true;
    for (sp_list *n = e->priv_waiters.next; n != &e->priv_waiters; n = n->next) {
        waiter *w = waiter_of(n);
        if (!sp_future_done(&w->fut))
            sp_future_set_result(&w->fut, NULL);
    }
}

void sp_event_clear(sp_event *e) {
    e->priv_value = false;
}

bool sp_event_is_set(const sp_event *e) {
    return e->priv_value;
}

int sp_event_wait(sp_event *e) {
    if (e->priv_value)
        return 0;
    if (!can_wait())
        return -EPERM;
    waiter w;
    return waiter_wait(&e->priv_waiters, &w);
}

/* ---- Semaphore ---- */

void sp_sem_init(sp_sem *s, unsigned value) {
    sp_list_init(&s->priv_waiters);
    s->priv_value = value;
    s->priv_bound = value;
    s->priv_bounded = false;
}

void sp_sem_init_bounded(sp_sem *s, unsigned value) {
    sp_sem_init(s, value);
    s->priv_bounded = true;
}

int sp_sem_fini(sp_sem *s) {
    return sp_list_empty(&s->priv_waiters) ? 0 : -EBUSY;
}

unsigned sp_sem_value(const sp_sem *s) {
    return s->priv_value;
}

bool sp_sem_locked(const sp_sem *s) {
    if (s->priv_value == 0)
        return true;
    for (const sp_list *n = s->priv_waiters.next; n != &s->priv_waiters; n = n->next)
        if (!sp_future_cancelled(&waiter_of((sp_list *)n)->fut))
            return true;
    return false;
}

/* Hands one unit to the first waiter not already woken. */
static void sem_wake_up_next(sp_sem *s) {
    for (sp_list *n = s->priv_waiters.next; n != &s->priv_waiters; n = n->next) {
        waiter *w = waiter_of(n);
        if (!sp_future_done(&w->fut)) {
            s->priv_value--;
            sp_future_set_result(&w->fut, NULL);
            return;
        }
    }
}

int sp_sem_acquire(sp_sem *s) {
    if (!sp_sem_locked(s)) {
        s->priv_value--;
        return 0;
    }
    if (!can_wait())
        return -EPERM;
    waiter w;
    int rc = waiter_wait(&s->priv_waiters, &w);
    if (rc != 0) {
        /* Cancelled after a unit was handed to us: give it to the next one. */
        if (!sp_future_cancelled(&w.fut)) {
            s->priv_value++;
            sem_wake_up_next(s);
        }
        return rc;
    }
    if (s->priv_value > 0)
        sem_wake_up_next(s);
    return 0;
}

int sp_sem_release(sp_sem *s) {
    if (s->priv_bounded ? s->priv_value >= s->priv_bound : s->priv_value == UINT_MAX)
        return -EOVERFLOW;
    s->priv_value++;
    sem_wake_up_next(s);
    return 0;
}

/* ---- Condition ---- */

void sp_cond_init(sp_cond *c, sp_lock *lock) {
    sp_list_init(&c->priv_waiters);
    sp_lock_init(&c->priv_own_lock);
    c->priv_lock = lock ? lock : &c->priv_own_lock;
}

int sp_cond_fini(sp_cond *c) {
    if (!sp_list_empty(&c->priv_waiters))
        return -EBUSY;
    return sp_lock_fini(&c->priv_own_lock);
}

sp_lock *sp_cond_lock(sp_cond *c) {
    return c->priv_lock;
}

int sp_cond_acquire(sp_cond *c) {
    return sp_lock_acquire(c->priv_lock);
}

int sp_cond_release(sp_cond *c) {
    return sp_lock_release(c->priv_lock);
}

bool sp_cond_locked(const sp_cond *c) {
    return sp_lock_locked(c->priv_lock);
}

int sp_cond_wait(sp_cond *c) {
    if (!sp_lock_locked(c->priv_lock) || !can_wait())
        return -EPERM;
    sp_lock_release(c->priv_lock);
    waiter w;
    int rc = waiter_wait(&c->priv_waiters, &w);
    /* The caller expects the lock back on every path, so a cancellation while
     * re-acquiring is remembered and the acquire retried. */
    bool cancelled = false;
    while (sp_lock_acquire(c->priv_lock) != 0)
        cancelled = true;
    return cancelled ? -ECANCELED : rc;
}

int sp_cond_wait_for(sp_cond *c, sp_cond_pred *pred, void *arg) {
    while (!pred(arg)) {
        int rc = sp_cond_wait(c);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sp_cond_notify(sp_cond *c, size_t n) {
    if (!sp_lock_locked(c->priv_lock))
        return -EPERM;
    size_t woken = 0;
    for (sp_list *l = c->priv_waiters.next; l != &c->priv_waiters && woken < n; l = l->next) {
        waiter *w = waiter_of(l);
        if (!sp_future_done(&w->fut)) {
            woken++;
            sp_future_set_result(&w->fut, NULL);
        }
    }
    return 0;
}

int sp_cond_notify_all(sp_cond *c) {
    return sp_cond_notify(c, SIZE_MAX);
}
