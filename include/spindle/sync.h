/* Synchronization primitives between the tasks of one loop: Lock, Event,
 * Semaphore, BoundedSemaphore and Condition, ports of CPython 3.11's asyncio
 * ones, fairness and cancellation included. Plain structs the caller
 * allocates; a waiting task keeps its waiter on its own stack, so no call
 * allocates. They belong to one loop thread and must not move once inited. */
#ifndef SPINDLE_SYNC_H
#define SPINDLE_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <spindle/future.h>

/* asyncio.Lock: not owned by a task; waiters are served first come, first
 * served, and a task that calls acquire while others wait queues behind them
 * even if the lock is momentarily free. */
typedef struct sp_lock {
    sp_list priv_waiters;
    bool priv_locked;
} sp_lock;

/* Initializes an unlocked lock. Never suspends. */
void sp_lock_init(sp_lock *l);

/* Checks that no task waits on l any more, after which its memory may go.
 * Returns 0, or -EBUSY if tasks still wait (l is left as is). */
int sp_lock_fini(sp_lock *l);

/* Takes the lock, suspending while it is held or other tasks are queued for
 * it. Returns 0 (the caller holds the lock), -ECANCELED (it does not), or
 * -EPERM if it would have to wait outside a task. Suspends. */
int sp_lock_acquire(sp_lock *l);

/* Frees the lock and lets the first queued task take it. Any task may release.
 * Returns 0, or -EPERM if l is not locked (asyncio's RuntimeError). Never
 * suspends. */
int sp_lock_release(sp_lock *l);

/* True while the lock is held. */
bool sp_lock_locked(const sp_lock *l);

/* asyncio.Event: a flag that tasks can wait to become set. */
typedef struct sp_event {
    sp_list priv_waiters;
    bool priv_value;
} sp_event;

/* Initializes a clear event. Never suspends. */
void sp_event_init(sp_event *e);

/* Returns 0, or -EBUSY if tasks still wait on e (see sp_lock_fini). */
int sp_event_fini(sp_event *e);

/* Sets the flag and wakes every task waiting for it. Never suspends. */
void sp_event_set(sp_event *e);

/* Clears the flag; tasks already woken by a set still return 0. */
void sp_event_clear(sp_event *e);

/* True while the flag is set. Never suspends. */
bool sp_event_is_set(const sp_event *e);

/* Suspends until the flag is set; returns at once if it already is. Returns 0,
 * -ECANCELED, or -EPERM if it would have to wait outside a task. Suspends. */
int sp_event_wait(sp_event *e);

/* asyncio.Semaphore and BoundedSemaphore: a counter that acquire takes from
 * (waiting while it is zero) and release gives back to, waiters served in
 * arrival order. */
typedef struct sp_sem {
    sp_list priv_waiters;
    unsigned priv_value;
    unsigned priv_bound; /* the initial value, for a bounded semaphore */
    bool priv_bounded;
} sp_sem;

/* Initializes a semaphore with `value` units. Never suspends. */
void sp_sem_init(sp_sem *s, unsigned value);

/* Initializes a BoundedSemaphore: like sp_sem_init, but a release that would
 * take the counter above the initial value fails. Never suspends. */
void sp_sem_init_bounded(sp_sem *s, unsigned value);

/* Returns 0, or -EBUSY if tasks still wait on s (see sp_lock_fini). */
int sp_sem_fini(sp_sem *s);

/* Takes one unit, suspending while none is free or earlier tasks are queued.
 * Returns 0 (one unit taken), -ECANCELED (none taken), or -EPERM if it would
 * have to wait outside a task. Suspends. */
int sp_sem_acquire(sp_sem *s);

/* Gives one unit back, handing it to the first queued task if any. Returns 0,
 * or -EOVERFLOW if a bounded semaphore would exceed its initial value
 * (asyncio's ValueError) or the counter would overflow. Never suspends. */
int sp_sem_release(sp_sem *s);

/* True if sp_sem_acquire would have to wait. */
bool sp_sem_locked(const sp_sem *s);

/* Units free right now (units already handed to woken tasks not counted). */
unsigned sp_sem_value(const sp_sem *s);

/* asyncio.Condition: tasks wait, with a lock held, until another task holding
 * the same lock notifies them. */
typedef struct sp_cond {
    sp_list priv_waiters;
    sp_lock *priv_lock;
    sp_lock priv_own_lock;
} sp_cond;

/* Initializes a condition bound to `lock` (borrowed: it must outlive c), or
 * to a lock of its own if lock is NULL. Never suspends. */
void sp_cond_init(sp_cond *c, sp_lock *lock);

/* Returns 0, or -EBUSY if tasks still wait on c or on its own lock. */
int sp_cond_fini(sp_cond *c);

/* The lock c is bound to (borrowed). */
sp_lock *sp_cond_lock(sp_cond *c);

/* sp_lock_acquire, sp_lock_release and sp_lock_locked on c's lock. */
int sp_cond_acquire(sp_cond *c);
int sp_cond_release(sp_cond *c);
bool sp_cond_locked(const sp_cond *c);

/* Releases the lock, suspends until notified, then takes the lock again. The
 * lock is held again on every return but -EPERM, even when the wait was
 * cancelled (then the return is -ECANCELED once the lock is back). Returns 0,
 * -ECANCELED, or -EPERM if the lock is not held or the caller is not a task.
 * Suspends. */
int sp_cond_wait(sp_cond *c);

/* A condition to wait for, evaluated with the lock held. */
typedef bool sp_cond_pred(void *arg);

/* Waits (as sp_cond_wait) until pred(arg) is true; returns at once if it
 * already is. Returns 0 with the lock held and pred true, or sp_cond_wait's
 * error. Suspends. */
int sp_cond_wait_for(sp_cond *c, sp_cond_pred *pred, void *arg);

/* Wakes up to n of the tasks waiting on c, in the order they began waiting;
 * they return from sp_cond_wait once the caller releases the lock. Returns 0,
 * or -EPERM if the lock is not held. Never suspends. */
int sp_cond_notify(sp_cond *c, size_t n);

/* Wakes every task waiting on c. Returns 0, or -EPERM if the lock is not
 * held. Never suspends. */
int sp_cond_notify_all(sp_cond *c);

#endif
