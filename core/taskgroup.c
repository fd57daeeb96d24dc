/* sp_taskgroup: asyncio.TaskGroup. Children report to the group through a
 * done-callback; the first failure aborts the group (cancels every child)
 * and cancels the owning task so its body stops at its next suspension; the
 * final wait undoes that cancellation and waits until all children are done. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <spindle/combinators.h>

#include "task_impl.h"

typedef struct tg_child {
    sp_cb cb;
    sp_list link; /* in g->children while running */
    sp_taskgroup *g;
    sp_task *task;
} tg_child;

int sp_taskgroup_init(sp_taskgroup *g) {
    memset(g, 0, sizeof(*g));
    sp_list_init(&g->children);
    g->parent = sp_task_current();
    if (!g->parent)
        return -EPERM;
    g->entered = true;
    return 0;
}

static void tg_abort(sp_taskgroup *g) {
    g->aborting = true;
    for (sp_list *l = g->children.next; l != &g->children; l = l->next)
        sp_task_cancel(sp_container_of(l, tg_child, link)->task);
}

static void tg_record(sp_taskgroup *g, int err, const char *msg, const char *task_name) {
    if (g->nerrors == g->errors_cap) {
        size_t cap = g->errors_cap ? g->errors_cap * 2 : 4;
        sp_tg_error *e = realloc(g->errors, cap * sizeof(*e));
        if (!e) {
            g->nomem = true;
            return;
        }
        g->errors = e;
        g->errors_cap = cap;
    }
    sp_tg_error *e = &g->errors[g->nerrors++];
    e->err = err;
    e->msg = msg ? strdup(msg) : NULL;
    e->task_name = task_name ? strdup(task_name) : NULL;
}

static void tg_child_done(sp_cb *cb) {
    tg_child *c = sp_container_of(cb, tg_child, cb);
    sp_taskgroup *g = c->g;
    sp_task *t = c->task;
    sp_list_remove(&c->link);
    g->nchildren--;
    if (g->on_completed && g->nchildren == 0 && g->on_completed->state == SP_FUT_PENDING)
        sp_future_set_result(g->on_completed, NULL);

    int err = t->fut.err;
    if (t->fut.state == SP_FUT_DONE && err != 0) {
        t->fut.retrieved = true;
        tg_record(g, err, t->fut.errmsg, t->name);
        if (sp_task_done(g->parent)) {
            sp_log_warn("task '%s' failed but its task group's owner '%s' has already finished",
                        t->name, g->parent->name);
        } else if (!g->aborting && !g->parent_cancel_requested) {
            /* Stop the owner's body too; sp_taskgroup_wait undoes this. */
            tg_abort(g);
            g->parent_cancel_requested = true;
            sp_task_cancel(g->parent);
        }
    }
    sp_task_release(t);
    free(c);
}

int sp_taskgroup_spawn(sp_taskgroup *g, sp_task **out, const char *name, sp_task_fn *fn,
                       void *arg) {
    if (!g->entered || (g->exiting && g->nchildren == 0))
        return -EPERM;
    if (g->aborting)
        return -ESHUTDOWN;
    tg_child *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int rc = sp_spawn(&c->task, name, fn, arg);
    if (rc != 0) {
        free(c);
        return rc;
    }
    c->g = g;
    c->cb.fn = tg_child_done;
    sp_future_add_callback(&c->task->fut, &c->cb);
    sp_list_push_back(&g->children, &c->link);
    g->nchildren++;
    if (out)
        *out = sp_task_retain(c->task);
    return 0;
}

int sp_taskgroup_wait(sp_taskgroup *g, int body_err) {
    if (!g->entered)
        return -EPERM;
    g->exiting = true;
    /* A cancellation of the owner propagates, unless it was ours alone: the
     * group undoes its own cancel of the owner however the body ended. */
    bool propagate_cancel = body_err == -ECANCELED;
    if (g->parent_cancel_requested && sp_task_uncancel(g->parent) == 0)
        propagate_cancel = false;
    if (body_err != 0 && !g->aborting)
        tg_abort(g);

    while (g->nchildren > 0) {
        sp_future done;
        sp_future_init(&done);
        g->on_completed = &done;
        int rc = sp_future_await(&done, NULL);
        if (rc == -ECANCELED && !g->aborting) {
            /* The owner is cancelled while its children still run. */
            propagate_cancel = true;
            tg_abort(g);
        }
        g->on_completed = NULL;
        sp_future_fini(&done);
    }

    /* Children's errors take precedence over a cancellation (CPython 3.11.7). */
    if (propagate_cancel && g->nerrors == 0)
        return -ECANCELED;
    if (body_err != 0 && body_err != -ECANCELED)
        tg_record(g, body_err, NULL, NULL);
    if (g->nomem)
        return -ENOMEM;
    return g->nerrors > 0 ? g->errors[0].err : 0;
}

const sp_tg_error *sp_taskgroup_errors(const sp_taskgroup *g, size_t *count) {
    *count = g->nerrors;
    return g->errors;
}

void sp_taskgroup_fini(sp_taskgroup *g) {
    for (size_t i = 0; i < g->nerrors; i++) {
        free(g->errors[i].msg);
        free(g->errors[i].task_name);
    }
    free(g->errors);
    memset(g, 0, sizeof(*g));
}
