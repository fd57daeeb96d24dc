/* Tasks and the loop: asyncio.run, create_task, sleep, cancellation.
 *
 * A task is a function running on a fiber with its own stack. It suspends in
 * any Spindle call documented as "Suspends" and the loop runs other tasks
 * meanwhile. Cancellation follows asyncio: sp_task_cancel() is a request that
 * becomes -ECANCELED at the task's current or next suspension point; the task
 * may then clean up (and even suspend again) before it returns.
 *
 * Results: a task's function stores a pointer in *result. Spindle never frees
 * it; it is handed as is to whoever awaits the task, and the task's author
 * documents who owns it (usually: the one who awaited it). */
#ifndef SPINDLE_TASK_H
#define SPINDLE_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <spindle/future.h>

typedef struct sp_task sp_task;

/* A task's body. Returns 0 with its result in *result (which starts NULL), or
 * a negative error code (the task failed; see sp_fail for a message).
 * Returning -ECANCELED ends the task as cancelled. */
typedef int sp_task_fn(void *arg, void **result);

/* Loop settings; zero fields take the defaults. */
typedef struct sp_config {
    size_t stack_size;     /* bytes per task stack; default 128 KiB */
    bool debug;            /* asyncio's debug mode: slow-task and pending-task warnings */
    double slow_task_secs; /* debug: warn when a task runs this long without suspending
                              (default 0.1 s, as asyncio's slow_callback_duration) */
} sp_config;

/* Creates a loop on the calling thread, runs main(arg) as a task until it
 * finishes, then cancels every task still pending and waits for them, waits
 * for the offload threads, and destroys the loop (asyncio.run). Returns main's
 * outcome: 0 with *result, its error, or -ECANCELED; -EBUSY if the thread
 * already runs a loop; -ENOMEM. result may be NULL. Blocks the thread. */
int sp_run(sp_task_fn *main, void *arg, void **result);

/* sp_run with explicit settings (cfg may be NULL). */
int sp_run_config(const sp_config *cfg, sp_task_fn *main, void *arg, void **result);

/* Schedules fn(arg) as a new task (asyncio.create_task): it starts at the
 * loop's next iteration, the caller keeps running. name is copied; NULL gives
 * "Task-N". If out is non-NULL it receives a handle the caller must release
 * with sp_task_release(); with out NULL the task runs detached. Returns 0,
 * -ENOMEM, or -EPERM outside a loop thread. Never suspends. */
int sp_spawn(sp_task **out, const char *name, sp_task_fn *fn, void *arg);

/* The running task (borrowed; sp_task_retain() to keep it), or NULL when
 * called from outside any task. */
sp_task *sp_task_current(void);

/* Takes or drops a reference to a task handle. The last release frees the
 * handle (a running task keeps its own reference until it finishes); a failed
 * task whose error nobody retrieved is logged then, as asyncio does. */
sp_task *sp_task_retain(sp_task *t);
void sp_task_release(sp_task *t);

/* The task's name (owned by the task) and renaming (name copied; -ENOMEM). */
const char *sp_task_name(sp_task *t);
int sp_task_set_name(sp_task *t, const char *name);

/* True once the task has finished (result, error or cancelled). */
bool sp_task_done(const sp_task *t);
/* True if the task finished cancelled. */
bool sp_task_cancelled(const sp_task *t);

/* Requests cancellation (asyncio Task.cancel). Returns 0 if the request was
 * made, -EALREADY if the task had already finished (a no-op). Never suspends.
 * If the task waits on another task or future, that one is cancelled too. */
int sp_task_cancel(sp_task *t);

/* Number of cancellation requests not yet undone (Task.cancelling), and
 * undoing one (Task.uncancel: returns the remaining count). */
int sp_task_cancelling(const sp_task *t);
int sp_task_uncancel(sp_task *t);

/* Suspends until t finishes and returns its outcome: 0 with the result in
 * *result (may be NULL), t's error, or -ECANCELED if t was cancelled. If the
 * caller is cancelled while waiting, t is cancelled too (as `await task` in
 * asyncio; use sp_shield to prevent that) and -ECANCELED is returned once t
 * has finished reacting. A finished t returns at once. -EDEADLK if t is the
 * caller. Suspends. */
int sp_task_await(sp_task *t, void **result);

/* Outcome of a finished task without suspending, as sp_task_await; -EAGAIN
 * while it is still running. Marks an error as retrieved. */
int sp_task_result(sp_task *t, void **result);

/* A finished task's error code (0 if it succeeded, -ECANCELED if cancelled,
 * -EAGAIN while running) and, if msg is non-NULL, its message (owned by the
 * task; NULL if none). Marks the error as retrieved. */
int sp_task_error(sp_task *t, const char **msg);

/* The future that completes when t finishes (owned by t), for callbacks. */
sp_future *sp_task_future(sp_task *t);

/* Sets the calling task's error message (printf format) and returns err, so a
 * task can `return sp_fail(-EINVAL, "bad id %d", id);`. */
int sp_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocates size bytes (aligned for any type) owned by the calling task:
 * they are freed when the task ends, by whatever path. Returns NULL on
 * out-of-memory or outside a task. Don't return such memory as a result. */
void *sp_task_alloc(size_t size);

/* Registers fn(arg) to run when the calling task ends (after its function
 * returns, whether it succeeded, failed or was cancelled), newest first, on
 * the task's own stack. Returns 0, -ENOMEM, -EPERM outside a task. */
int sp_task_defer(void (*fn)(void *arg), void *arg);

/* Suspends the calling task for `seconds` (asyncio.sleep). seconds <= 0
 * yields to the loop once. Returns 0 or -ECANCELED. Suspends. */
int sp_sleep(double seconds);

/* Lets every other ready task run once, then resumes (asyncio.sleep(0)).
 * Returns 0 or -ECANCELED. Suspends. */
int sp_yield(void);

/* The loop's monotonic clock in seconds (loop.time()). */
double sp_time(void);

#endif
