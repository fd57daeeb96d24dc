/* sp_wait and sp_as_completed: asyncio.wait and asyncio.as_completed. Both
 * put a done-callback on every task and let a waiter future or a completion
 * queue tell the caller; neither cancels the tasks it watches. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <spindle/combinators.h>

#include "task_impl.h"

typedef struct wait_state wait_state;

typedef struct wait_entry {
    sp_cb cb;
    wait_state *w;
} wait_entry;

struct wait_state {
    sp_future waiter;
    sp_timer timer;
    size_t counter;
    int return_when;
};

static void wait_release(wait_state *w) {
    sp_timer_disarm(sp_loop_get(), &w->timer);
    if (w->waiter.state == SP_FUT_PENDING)
        sp_future_set_result(&w->waiter, NULL);
}

static void wait_on_completion(sp_cb *cb) {
    wait_entry *e = sp_container_of(cb, wait_entry, cb);
    wait_state *w = e->w;
    sp_future *f = cb->fut;
    w->counter--;
    bool failed = false;
    if (w->return_when == SP_FIRST_EXCEPTION && f->state == SP_FUT_DONE && f->err != 0) {
        f->retrieved = true;
        failed = true;
    }
    if (w->counter == 0 || w->return_when == SP_FIRST_COMPLETED || failed)
        wait_release(w);
}

static void wait_timeout(sp_cb *cb) {
    wait_state *w = sp_container_of(cb, wait_state, timer.cb);
    if (w->waiter.state == SP_FUT_PENDING)
        sp_future_set_result(&w->waiter, NULL);
}

int sp_wait(sp_task *const *tasks, size_t n, int return_when, double timeout, bool *done,
            size_t *ndone) {
    if (!sp_task_current())
        return -EPERM;
    if (n == 0 || return_when < SP_ALL_COMPLETED || return_when > SP_FIRST_EXCEPTION)
        return -EINVAL;
    wait_entry *entries = calloc(n, sizeof(*entries));
    if (!entries)
        return -ENOMEM;
    wait_state w;
    memset(&w, 0, sizeof(w));
    sp_future_init(&w.waiter);
    sp_timer_init(&w.timer, wait_timeout);
    w.return_when = return_when;
    sp_loop *loop = sp_loop_get();
    if (timeout >= 0)
        sp_timer_arm(loop, &w.timer, sp_deadline_after(timeout));
    /* A task listed twice just counts twice: the outcome is the same. */
    for (size_t i = 0; i < n; i++) {
        entries[i].w = &w;
        entries[i].cb.fn = wait_on_completion;
        sp_future_add_callback(&tasks[i]->fut, &entries[i].cb);
        w.counter++;
    }
    int rc = sp_future_await(&w.waiter, NULL);
    sp_timer_disarm(loop, &w.timer);
    for (size_t i = 0; i < n; i++)
        sp_future_remove_callback(&entries[i].cb);
    free(entries);
    sp_future_fini(&w.waiter);
    if (rc != 0)
        return rc;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        bool d = sp_task_done(tasks[i]);
        count += d;
        if (done)
            done[i] = d;
    }
    if (ndone)
        *ndone = count;
    return 0;
}

typedef struct ac_entry {
    sp_cb cb;
    sp_as_completed *ac;
    sp_task *task;
} ac_entry;

struct sp_as_completed {
    ac_entry *entries;
    size_t n;
    sp_task **done; /* completion order; NULL marks a timed-out slot */
    size_t ndone, nread;
    size_t todo; /* tasks still being watched */
    sp_timer timer;
    sp_future *getter; /* the caller's wait, while it waits */
};

static void ac_push(sp_as_completed *ac, sp_task *t) {
    ac->done[ac->ndone++] = t;
    if (ac->getter && ac->getter->state == SP_FUT_PENDING)
        sp_future_set_result(ac->getter, NULL);
}

static void ac_on_completion(sp_cb *cb) {
    ac_entry *e = sp_container_of(cb, ac_entry, cb);
    sp_as_completed *ac = e->ac;
    ac->todo--;
    ac_push(ac, e->task);
    if (ac->todo == 0)
        sp_timer_disarm(sp_loop_get(), &ac->timer);
}

static void ac_on_timeout(sp_cb *cb) {
    sp_as_completed *ac = sp_container_of(cb, sp_as_completed, timer.cb);
    for (size_t i = 0; i < ac->n; i++) {
        if (sp_future_remove_callback(&ac->entries[i].cb) == 0) {
            ac->todo--;
            ac_push(ac, NULL);
        }
    }
}

int sp_as_completed_begin(sp_as_completed **out, sp_task *const *tasks, size_t n, double timeout) {
    sp_loop *loop = sp_loop_get();
    if (!loop)
        return -EPERM;
    sp_as_completed *ac = calloc(1, sizeof(*ac));
    if (!ac || !(ac->entries = calloc(n ? n : 1, sizeof(*ac->entries))) ||
        !(ac->done = calloc(n ? n : 1, sizeof(*ac->done)))) {
        if (ac)
            free(ac->entries);
        free(ac);
        return -ENOMEM;
    }
    sp_timer_init(&ac->timer, ac_on_timeout);
    sp_task **distinct = (sp_task **)ac->done; /* scratch until the first completion */
    size_t nd = n ? sp_tasks_distinct(tasks, n, distinct) : 0;
    if (n && !nd) {
        free(ac->entries);
        free(ac->done);
        free(ac);
        return -ENOMEM;
    }
    for (size_t i = 0; i < nd; i++) {
        ac_entry *e = &ac->entries[ac->n++];
        e->ac = ac;
        e->task = sp_task_retain(distinct[i]);
        e->cb.fn = ac_on_completion;
        sp_future_add_callback(&e->task->fut, &e->cb);
    }
    ac->todo = ac->n;
    if (ac->n > 0 && timeout >= 0)
        sp_timer_arm(loop, &ac->timer, sp_deadline_after(timeout));
    *out = ac;
    return 0;
}

int sp_as_completed_next(sp_as_completed *ac, sp_task **task, void **result) {
    if (ac->nread == ac->n)
        return -ENOENT;
    if (ac->nread == ac->ndone) {
        sp_future getter;
        sp_future_init(&getter);
        ac->getter = &getter;
        int rc = sp_future_await(&getter, NULL);
        ac->getter = NULL;
        sp_future_fini(&getter);
        if (rc != 0)
            return rc;
    }
    sp_task *t = ac->done[ac->nread++];
    if (task)
        *task = t;
    if (!t)
        return -ETIMEDOUT;
    return sp_task_result(t, result);
}

void sp_as_completed_end(sp_as_completed *ac) {
    if (!ac)
        return;
    sp_loop *loop = sp_loop_get();
    if (loop)
        sp_timer_disarm(loop, &ac->timer);
    for (size_t i = 0; i < ac->n; i++) {
        sp_future_remove_callback(&ac->entries[i].cb);
        sp_task_release(ac->entries[i].task);
    }
    free(ac->entries);
    free(ac->done);
    free(ac);
}
