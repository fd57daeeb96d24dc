/* Combinators over tasks: gather, TaskGroup, wait_for, wait, as_completed,
 * shield and the timeout scope, with asyncio's semantics (CPython 3.11):
 * same outcomes, same cancellation rules, same order of wake-ups. */
#ifndef SPINDLE_COMBINATORS_H
#define SPINDLE_COMBINATORS_H

#include <stdbool.h>
#include <stddef.h>
#include <spindle/task.h>

/* ---- gather ---------------------------------------------------------- */

enum { SP_GATHER_RETURN_EXCEPTIONS = 1 };

/* Waits for every task in tasks[0..n) (asyncio.gather). On success returns 0
 * and results[i] holds task i's result (results may be NULL).
 * Without SP_GATHER_RETURN_EXCEPTIONS, returns the first error as soon as a
 * task fails or is cancelled (-ECANCELED), leaving the others running.
 * With it, waits for all and stores each task's outcome in errors[i] (0, its
 * error, or -ECANCELED; errors may be NULL) and returns 0.
 * If the caller is cancelled while waiting, every task is cancelled (once
 * per argument, as asyncio) and the call returns -ECANCELED: with
 * SP_GATHER_RETURN_EXCEPTIONS once they have all finished, without it as soon
 * as the first of them ends cancelled. Handles stay owned by
 * the caller; gather holds its own references while it needs them. n == 0
 * returns 0 at once. Suspends. */
int sp_gather(sp_task *const *tasks, size_t n, int flags, void **results, int *errors);

/* ---- TaskGroup -------------------------------------------------------- */

typedef struct sp_tg_error {
    int err;
    char *msg;       /* owned by the group; may be NULL */
    char *task_name; /* owned by the group; NULL for the body's own error */
} sp_tg_error;

/* asyncio.TaskGroup. Lives in the caller's frame: sp_taskgroup_init(), spawn
 * children, then always sp_taskgroup_wait() and sp_taskgroup_fini(). The first
 * child to fail cancels the others and the task that owns the group; the wait
 * undoes that cancellation of the owner. */
typedef struct sp_taskgroup {
    sp_task *parent;
    sp_list children; /* private */
    size_t nchildren;
    sp_future *on_completed;
    sp_tg_error *errors;
    size_t nerrors, errors_cap;
    bool entered, exiting, aborting, parent_cancel_requested, nomem;
} sp_taskgroup;

/* Binds the group to the calling task. Returns 0 or -EPERM outside a task. */
int sp_taskgroup_init(sp_taskgroup *g);

/* Spawns a child (as sp_spawn). *out (if out is non-NULL) gets a handle the
 * caller releases. Returns 0, -ENOMEM, -EPERM if the group is not entered or
 * already finished, -ESHUTDOWN while it is aborting. Never suspends. */
int sp_taskgroup_spawn(sp_taskgroup *g, sp_task **out, const char *name, sp_task_fn *fn, void *arg);

/* The end of the group's block: body_err is how the code between init and
 * here ended (0, an error, or -ECANCELED). Cancels the children if the body
 * failed or was cancelled, then waits until every child has finished. Returns
 * the first error recorded (children's failures in the order they happened,
 * then body_err), all of which sp_taskgroup_errors() lists; else -ECANCELED
 * if the owner was cancelled from outside (the cancellation propagates); else
 * 0. Suspends. */
int sp_taskgroup_wait(sp_taskgroup *g, int body_err);

/* The errors recorded by the group (asyncio's ExceptionGroup), owned by it. */
const sp_tg_error *sp_taskgroup_errors(const sp_taskgroup *g, size_t *count);

/* Frees what the group holds. Call after sp_taskgroup_wait. */
void sp_taskgroup_fini(sp_taskgroup *g);

/* ---- wait_for, shield, timeout ----------------------------------------- */

/* Waits for t at most `timeout` seconds (asyncio.wait_for; negative: no
 * limit). On timeout, cancels t, waits until it has finished cancelling and
 * returns -ETIMEDOUT (or t's result if it finished anyway). If the caller is
 * cancelled, t is cancelled and waited for too, then -ECANCELED. Otherwise
 * t's outcome as sp_task_await. Suspends. */
int sp_wait_for(sp_task *t, double timeout, void **result);

/* Waits for t, but cancelling the caller does not cancel t (asyncio.shield):
 * the caller then returns -ECANCELED at once while t keeps running. Returns
 * t's outcome otherwise. Suspends. */
int sp_shield(sp_task *t, void **result);

/* A deadline over any stretch of suspending calls (asyncio.timeout). When it
 * expires the task is cancelled; sp_timeout_exit turns that cancellation into
 * -ETIMEDOUT. Lives in the caller's frame:
 *     sp_timeout tm;
 *     sp_timeout_enter(&tm, 1.5);
 *     rc = sp_queue_get(q, &item);
 *     rc = sp_timeout_exit(&tm, rc);
 */
typedef struct sp_timeout {
    sp_task *task;
    int cancelling; /* the task's cancellation count at entry */
    uint8_t state;
    sp_timer priv_timer;
} sp_timeout;

/* Starts the scope for the calling task; seconds < 0 means no deadline,
 * 0 expires at the next loop iteration. Returns 0, -EPERM outside a task,
 * -EINVAL if tm is already entered. Never suspends. */
int sp_timeout_enter(sp_timeout *tm, double seconds);

/* Moves the deadline to `seconds` from now (< 0: none). -EINVAL unless the
 * scope is entered and has not expired. */
int sp_timeout_reschedule(sp_timeout *tm, double seconds);

/* Ends the scope. rc is how the body ended; returns -ETIMEDOUT if the scope
 * expired, rc is -ECANCELED, and no other cancellation is outstanding; else
 * rc unchanged. Never suspends. */
int sp_timeout_exit(sp_timeout *tm, int rc);

/* True once the deadline has passed inside the scope. */
bool sp_timeout_expired(const sp_timeout *tm);

/* ---- wait, as_completed ------------------------------------------------ */

enum { SP_ALL_COMPLETED = 0, SP_FIRST_COMPLETED = 1, SP_FIRST_EXCEPTION = 2 };

/* Waits until `return_when` holds for tasks[0..n) or `timeout` seconds pass
 * (asyncio.wait; negative: no limit). Tasks are not cancelled on timeout.
 * done[i] (if done is non-NULL) says whether task i finished; *ndone (if
 * non-NULL) counts them. Returns 0 (also on timeout), -ECANCELED, or -EINVAL
 * for n == 0 or a bad return_when. Suspends. */
int sp_wait(sp_task *const *tasks, size_t n, int return_when, double timeout, bool *done,
            size_t *ndone);

/* Iterates tasks in the order they finish (asyncio.as_completed), within an
 * overall timeout (negative: none). */
typedef struct sp_as_completed sp_as_completed;

/* Starts the iteration over tasks[0..n) (duplicates count once). The iterator
 * holds references to the tasks. Returns 0, -ENOMEM, -EPERM outside a loop. */
int sp_as_completed_begin(sp_as_completed **out, sp_task *const *tasks, size_t n, double timeout);

/* Suspends until the next task finishes and returns its outcome as
 * sp_task_await (result in *result); *task (if non-NULL) is that task,
 * borrowed from the caller's handles. Returns -ETIMEDOUT for each task left
 * when the timeout expired, -ENOENT when every task has been returned,
 * -ECANCELED if the caller is cancelled (the tasks keep running). Suspends. */
int sp_as_completed_next(sp_as_completed *ac, sp_task **task, void **result);

/* Ends the iteration and frees the iterator. Never suspends. */
void sp_as_completed_end(sp_as_completed *ac);

#endif
