/* Futures: a result that will be ready later, and callbacks that run when it
 * is. The building block under every Spindle primitive, as in asyncio: a task
 * suspends on one future at a time, and cancelling the task cancels that
 * future. Structs are public so they can live on a task's stack or inside the
 * user's own objects; fields named `priv_` are not for users. */
#ifndef SPINDLE_FUTURE_H
#define SPINDLE_FUTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sp_list {
    struct sp_list *next, *prev;
} sp_list;

typedef struct sp_future sp_future;
typedef struct sp_cb sp_cb;
typedef void sp_cb_fn(sp_cb *cb);

/* A callback node, owned by whoever embeds it. While pending it sits either on
 * a future's done-list or on the loop's ready queue, never both. */
struct sp_cb {
    sp_list priv_link;
    sp_cb_fn *fn;
    sp_future *fut; /* the future that completed, when scheduled by one */
};

/* A callback due at a time (asyncio's TimerHandle), owned by its embedder;
 * armed and disarmed by the loop's private timer calls. */
typedef struct sp_timer {
    int64_t when;    /* ns on the monotonic clock */
    uint64_t seq;    /* ties broken by arming order */
    size_t heap_idx; /* SIZE_MAX when not armed */
    sp_cb cb;
} sp_timer;

enum { SP_FUT_PENDING = 0, SP_FUT_DONE = 1, SP_FUT_CANCELLED = 2 };

struct sp_future {
    sp_list priv_callbacks;
    int (*priv_cancel)(sp_future *f); /* NULL: plain future; tasks and gathers override */
    void *result;
    char *errmsg;
    int err;
    uint8_t state;
    bool retrieved;
};

/* Initializes a pending future. Never suspends. */
void sp_future_init(sp_future *f);

/* Releases what a done future holds (its error message). The future must have
 * no callbacks left; its result pointer is not touched. */
void sp_future_fini(sp_future *f);

/* Marks f done with `result` (borrowed: Spindle never frees it) and schedules
 * its callbacks. Returns 0, or -EINVAL if f is already done. Never suspends. */
int sp_future_set_result(sp_future *f, void *result);

/* Marks f failed with the negative error `err` and an optional message (copied).
 * err == -ECANCELED marks it cancelled. Returns 0, or -EINVAL if already done. */
int sp_future_set_error(sp_future *f, int err, const char *msg);

/* Requests cancellation of f. A plain pending future becomes cancelled at once
 * and schedules its callbacks. Returns 0 if the request was made, -EALREADY if
 * f was already done. Never suspends. */
int sp_future_cancel(sp_future *f);

/* True once f has a result, an error, or was cancelled. */
bool sp_future_done(const sp_future *f);
bool sp_future_cancelled(const sp_future *f);

/* Outcome of a done future: 0 and *result, the error, or -ECANCELED;
 * -EAGAIN if f is not done yet. Never suspends. result may be NULL. */
int sp_future_result(sp_future *f, void **result);

/* Suspends the calling task until f is done, and returns its outcome as
 * sp_future_result does. A done future returns at once without suspending.
 * If the calling task is cancelled meanwhile, f is cancelled with it and the
 * call returns -ECANCELED. Must be called from a task. */
int sp_future_await(sp_future *f, void **result);

/* Adds cb to run (on the loop, soon after) when f is done; if f is already
 * done, cb is scheduled at once. cb->fn must be set; cb stays owned by the
 * caller and must outlive its run or its removal. */
void sp_future_add_callback(sp_future *f, sp_cb *cb);

/* Removes a callback that has not run yet (from f's list or the ready queue).
 * Returns 0, or -ENOENT if it was not pending. */
int sp_future_remove_callback(sp_cb *cb);

/* Schedules cb to run on the current loop's next iteration (asyncio's
 * call_soon). Never suspends. */
void sp_call_soon(sp_cb *cb);

#endif
