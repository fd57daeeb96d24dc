/* Futures and their callbacks. Completing a future moves its callbacks to the
 * loop's ready queue (asyncio schedules them with call_soon), so they run at
 * the next iteration, in the order they were added. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "loop.h"

void sp_future_init(sp_future *f) {
    memset(f, 0, sizeof(*f));
    sp_list_init(&f->priv_callbacks);
}

void sp_future_fini(sp_future *f) {
    free(f->errmsg);
    f->errmsg = NULL;
}

void sp_call_soon(sp_cb *cb) {
    sp_list_push_back(&sp_loop_get()->ready, &cb->priv_link);
}

/* Hands every callback to the ready queue, each told which future fired. */
static void schedule_callbacks(sp_future *f) {
    for (sp_list *n = f->priv_callbacks.next; n != &f->priv_callbacks; n = n->next)
        sp_container_of(n, sp_cb, priv_link)->fut = f;
    sp_list_splice_back(&sp_loop_get()->ready, &f->priv_callbacks);
}

int sp_future_set_result(sp_future *f, void *result) {
    if (f->state != SP_FUT_PENDING)
        return -EINVAL;
    f->result = result;
    f->state = SP_FUT_DONE;
    schedule_callbacks(f);
    return 0;
}

int sp_future_set_error(sp_future *f, int err, const char *msg) {
    if (f->state != SP_FUT_PENDING)
        return -EINVAL;
    if (err >= 0)
        err = -EINVAL;
    f->err = err;
    free(f->errmsg);
    f->errmsg = msg ? strdup(msg) : NULL;
    f->state = err == -ECANCELED ? SP_FUT_CANCELLED : SP_FUT_DONE;
    schedule_callbacks(f);
    return 0;
}

int sp_future_cancel(sp_future *f) {
    if (f->priv_cancel)
        return f->priv_cancel(f);
    if (f->state != SP_FUT_PENDING)
        return -EALREADY;
    f->err = -ECANCELED;
    f->state = SP_FUT_CANCELLED;
    schedule_callbacks(f);
    return 0;
}

bool sp_future_done(const sp_future *f) {
    return f->state != SP_FUT_PENDING;
}

bool sp_future_cancelled(const sp_future *f) {
    return f->state == SP_FUT_CANCELLED;
}

int sp_future_result(sp_future *f, void **result) {
    if (f->state == SP_FUT_PENDING)
        return -EAGAIN;
    f->retrieved = true;
    if (f->err == 0 && result)
        *result = f->result;
    return f->err;
}

int sp_future_await(sp_future *f, void **result) {
    if (f->state == SP_FUT_PENDING) {
        int rc = sp_task_suspend_on(f);
        if (rc != 0) {
            if (f->state != SP_FUT_PENDING)
                f->retrieved = true;
            return rc;
        }
    }
    return sp_future_result(f, result);
}

void sp_future_add_callback(sp_future *f, sp_cb *cb) {
    if (f->state == SP_FUT_PENDING) {
        sp_list_push_back(&f->priv_callbacks, &cb->priv_link);
    } else {
        cb->fut = f;
        sp_call_soon(cb);
    }
}

int sp_future_remove_callback(sp_cb *cb) {
    if (!sp_list_linked(&cb->priv_link))
        return -ENOENT;
    sp_list_remove(&cb->priv_link);
    return 0;
}
