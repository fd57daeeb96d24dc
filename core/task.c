/* Tasks: spawn, step, suspend, cancel, await. A task is a future plus a fiber;
 * resuming it ("stepping", as asyncio's Task.__step) is a callback on the
 * ready queue, and suspending registers that callback on the awaited future.
 * Cancellation is asyncio's: a request that cancels whatever the task waits
 * on, or else is delivered as -ECANCELED at its next suspension. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task_impl.h"

static atomic_uint_fast64_t task_name_counter;

static int task_cancel_fut(sp_future *f);

/* "Task-N" into buf (24 bytes), as asyncio names unnamed tasks; by hand
 * because snprintf would be a third of the cost of a spawn. */
static char *default_name(char *buf, uint64_t n) {
    char digits[21];
    int k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    memcpy(buf, "Task-", 5);
    for (int i = 0; i < k; i++)
        buf[5 + i] = digits[k - 1 - i];
    buf[5 + k] = '\0';
    return buf;
}

sp_task *sp_task_current(void) {
    sp_loop *loop = sp_loop_get();
    return loop ? loop->current : NULL;
}

static void task_entry(void *arg) {
    sp_task *t = arg;
    void *res = NULL;
    t->rc = t->fn(t->arg, &res);
    t->ret = res;
    sp_task_run_cleanups(t);
    t->finished = true;
    sp_fiber_exit(&t->fiber, &t->loop->sched_fiber);
}

/* Records the outcome, schedules the done-callbacks, drops the loop's ref. */
static void task_finish(sp_task *t, int rc, void *result, const char *msg) {
    sp_loop *loop = t->loop;
    if (rc == 0 && t->must_cancel) {
        /* Cancelled right before it returned: it ends cancelled (asyncio). */
        t->must_cancel = false;
        rc = -ECANCELED;
    }
    sp_list_remove(&t->link);
    loop->ntasks--;
    if (rc == 0)
        sp_future_set_result(&t->fut, result);
    else
        sp_future_set_error(&t->fut, rc, rc == -ECANCELED ? NULL : msg);
    free(t->pending_msg);
    t->pending_msg = NULL;
    sp_task_release(t);
}

static void task_step(sp_task *t, int exc) {
    sp_loop *loop = t->loop;
    if (t->must_cancel) {
        exc = -ECANCELED;
        t->must_cancel = false;
    }
    t->fut_waiter = NULL;
    if (!t->started) {
        /* A task cancelled before it ever ran ends without running. */
        if (exc == -ECANCELED) {
            task_finish(t, -ECANCELED, NULL, NULL);
            return;
        }
        int rc = sp_fiber_create(&t->fiber, loop->stacks, task_entry, t);
        if (rc != 0) {
            task_finish(t, rc, NULL, "cannot allocate a task stack");
            return;
        }
        t->fiber.label = t->name;
        t->started = true;
    }
    t->resume_err = exc;
    loop->current = t;
    int64_t start = loop->debug ? sp_now_ns() : 0;
    sp_fiber_switch(&loop->sched_fiber, &t->fiber);
    loop->current = NULL;
    if (loop->debug) {
        int64_t ran = sp_now_ns() - start;
        if (ran >= loop->slow_task_ns)
            sp_log_warn("task '%s' ran %.3f s without suspending: it blocked the loop", t->name,
                        (double)ran / 1e9);
    }
    if (t->finished) {
        sp_fiber_release(&t->fiber, loop->stacks);
        task_finish(t, t->rc, t->ret, t->pending_msg);
    }
}

static void task_step_cb(sp_cb *cb) {
    sp_task *t = sp_container_of(cb, sp_task, step);
    sp_future *woke_by = cb->fut;
    cb->fut = NULL;
    task_step(t, woke_by && woke_by->state == SP_FUT_CANCELLED ? -ECANCELED : 0);
}

int sp_spawn(sp_task **out, const char *name, sp_task_fn *fn, void *arg) {
    sp_loop *loop = sp_loop_get();
    if (!loop)
        return -EPERM;
    sp_task *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    if (!name) {
        t->name = default_name(t->name_buf, atomic_fetch_add(&task_name_counter, 1) + 1);
    } else if (strlen(name) < sizeof(t->name_buf)) {
        t->name = strcpy(t->name_buf, name);
    } else if (!(t->name = strdup(name))) {
        free(t);
        return -ENOMEM;
    }
    sp_future_init(&t->fut);
    t->fut.priv_cancel = task_cancel_fut;
    t->loop = loop;
    t->fn = fn;
    t->arg = arg;
    t->refs = out ? 2 : 1;
    sp_list_push_back(&loop->tasks, &t->link);
    loop->ntasks++;
    t->step.fn = task_step_cb;
    sp_call_soon(&t->step);
    if (out)
        *out = t;
    return 0;
}

sp_task *sp_task_retain(sp_task *t) {
    t->refs++;
    return t;
}

void sp_task_release(sp_task *t) {
    if (!t || --t->refs > 0)
        return;
    if (t->fut.state == SP_FUT_DONE && t->fut.err != 0 && !t->fut.retrieved)
        sp_log_warn("task '%s' failed and its error was never retrieved: %s%s%s", t->name,
                    strerror(-t->fut.err), t->fut.errmsg ? ": " : "",
                    t->fut.errmsg ? t->fut.errmsg : "");
    if (t->name != t->name_buf)
        free(t->name);
    sp_future_fini(&t->fut);
    free(t->pending_msg);
    free(t);
}

const char *sp_task_name(sp_task *t) {
    return t->name;
}

int sp_task_set_name(sp_task *t, const char *name) {
    char *copy = NULL;
    if (strlen(name) >= sizeof(t->name_buf) && !(copy = strdup(name)))
        return -ENOMEM;
    if (t->name != t->name_buf)
        free(t->name);
    t->name = copy ? copy : strcpy(t->name_buf, name);
    t->fiber.label = t->name;
    return 0;
}

bool sp_task_done(const sp_task *t) {
    return t->fut.state != SP_FUT_PENDING;
}

bool sp_task_cancelled(const sp_task *t) {
    return t->fut.state == SP_FUT_CANCELLED;
}

int sp_task_cancel(sp_task *t) {
    if (t->fut.state != SP_FUT_PENDING)
        return -EALREADY;
    t->num_cancels++;
    /* Cancel what it waits on; it wakes when that has finished cancelling. */
    if (t->fut_waiter && sp_future_cancel(t->fut_waiter) == 0)
        return 0;
    t->must_cancel = true;
    return 0;
}

static int task_cancel_fut(sp_future *f) {
    return sp_task_cancel((sp_task *)f);
}

int sp_task_cancelling(const sp_task *t) {
    return t->num_cancels;
}

int sp_task_uncancel(sp_task *t) {
    if (t->num_cancels > 0)
        t->num_cancels--;
    return t->num_cancels;
}

int sp_task_suspend_on(sp_future *f) {
    sp_loop *loop = sp_loop_get();
    sp_task *t = loop ? loop->current : NULL;
    if (!t)
        return -EPERM;
    t->step.fut = NULL;
    sp_future_add_callback(f, &t->step);
    t->fut_waiter = f;
    if (t->must_cancel && sp_future_cancel(f) == 0)
        t->must_cancel = false;
    sp_fiber_switch(&t->fiber, &loop->sched_fiber);
    return t->resume_err;
}

int sp_yield(void) {
    sp_loop *loop = sp_loop_get();
    sp_task *t = loop ? loop->current : NULL;
    if (!t)
        return -EPERM;
    t->step.fut = NULL;
    sp_call_soon(&t->step);
    sp_fiber_switch(&t->fiber, &loop->sched_fiber);
    return t->resume_err;
}

int sp_task_await(sp_task *t, void **result) {
    sp_task *self = sp_task_current();
    if (!self)
        return -EPERM;
    if (t == self)
        return -EDEADLK;
    return sp_future_await(&t->fut, result);
}

int sp_task_result(sp_task *t, void **result) {
    return sp_future_result(&t->fut, result);
}

int sp_task_error(sp_task *t, const char **msg) {
    if (msg)
        *msg = t->fut.state == SP_FUT_DONE ? t->fut.errmsg : NULL;
    return sp_future_result(&t->fut, NULL);
}

sp_future *sp_task_future(sp_task *t) {
    return &t->fut;
}

int sp_fail(int err, const char *fmt, ...) {
    sp_task *t = sp_task_current();
    if (!t)
        return err;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    free(t->pending_msg);
    t->pending_msg = msg;
    return err;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

size_t sp_tasks_distinct(sp_task *const *tasks, size_t n, sp_task **out) {
    sp_task **sorted = malloc(n * sizeof(*sorted));
    if (!sorted)
        return 0;
    memcpy(sorted, tasks, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_ptr);
    bool dup = false;
    for (size_t i = 1; i < n && !dup; i++)
        dup = sorted[i] == sorted[i - 1];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        if (dup) {
            sp_task **hit = bsearch(&tasks[i], sorted, n, sizeof(*sorted), cmp_ptr);
            for (size_t j = 0; j < k && !seen; j++)
                seen = out[j] == *hit;
        }
        if (!seen)
            out[k++] = tasks[i];
    }
    free(sorted);
    return k;
}
