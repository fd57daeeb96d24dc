/* sp_gather: asyncio.gather. An "outer" future completes when the last child
 * finishes (or at the first failure without return-exceptions); cancelling
 * the outer future cancels every child. The state lives on the heap because
 * children may finish after the caller has returned with the first error;
 * it is freed when the caller and every child callback are done with it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <spindle/combinators.h>

#include "task_impl.h"

typedef struct gather_child {
    sp_cb cb;
    struct gather *g;
    sp_task *task;
} gather_child;

typedef struct gather {
    sp_future outer;
    gather_child *children; /* one per distinct task */
    size_t nchildren;       /* distinct tasks */
    sp_task *const *args;   /* the caller's array, valid while outer is pending */
    size_t nargs;
    size_t nfinished;
    size_t refs; /* the caller + children whose callback is pending */
    bool return_exceptions;
    bool cancel_requested;
} gather;

static void gather_unref(gather *g) {
    if (--g->refs > 0)
        return;
    for (size_t i = 0; i < g->nchildren; i++)
        sp_task_release(g->children[i].task);
    sp_future_fini(&g->outer);
    free(g->children);
    free(g);
}

static int gather_cancel(sp_future *f) {
    gather *g = (gather *)f;
    if (f->state != SP_FUT_PENDING)
        return -EALREADY;
    /* Once per argument, duplicates included, as asyncio's _GatheringFuture
     * walks its children list: a task given twice sees two requests. */
    bool any = false;
    for (size_t i = 0; i < g->nargs; i++)
        if (sp_task_cancel(g->args[i]) == 0)
            any = true;
    if (!any)
        return -EALREADY;
    /* Propagate the cancellation whatever return-exceptions says. */
    g->cancel_requested = true;
    return 0;
}

static void child_done(sp_cb *cb) {
    gather_child *c = sp_container_of(cb, gather_child, cb);
    gather *g = c->g;
    sp_future *cf = &c->task->fut;
    g->nfinished++;
    if (g->outer.state != SP_FUT_PENDING) {
        cf->retrieved = true;
    } else if (!g->return_exceptions && cf->err != 0) {
        cf->retrieved = true;
        sp_future_set_error(&g->outer, cf->err, cf->errmsg);
    } else if (g->nfinished == g->nchildren) {
        if (g->cancel_requested)
            sp_future_set_error(&g->outer, -ECANCELED, NULL);
        else
            sp_future_set_result(&g->outer, NULL);
    }
    gather_unref(g);
}

/* Fills results/errors from the children's outcomes, in argument order. */
static void collect(sp_task *const *tasks, size_t n, void **results, int *errors) {
    for (size_t i = 0; i < n; i++) {
        sp_future *f = &tasks[i]->fut;
        if (results)
            results[i] = f->err == 0 ? f->result : NULL;
        if (errors)
            errors[i] = f->err;
        f->retrieved = true;
    }
}

int sp_gather(sp_task *const *tasks, size_t n, int flags, void **results, int *errors) {
    if (!sp_task_current())
        return -EPERM;
    if (n == 0)
        return 0;
    gather *g = calloc(1, sizeof(*g));
    sp_task **distinct = malloc(n * sizeof(*distinct));
    if (!g || !distinct || !(g->children = calloc(n, sizeof(*g->children)))) {
        free(distinct);
        if (g)
            free(g->children);
        free(g);
        return -ENOMEM;
    }
    g->nchildren = sp_tasks_distinct(tasks, n, distinct);
    if (g->nchildren == 0) {
        free(distinct);
        free(g->children);
        free(g);
        return -ENOMEM;
    }
    sp_future_init(&g->outer);
    g->outer.priv_cancel = gather_cancel;
    g->args = tasks;
    g->nargs = n;
    g->return_exceptions = flags & SP_GATHER_RETURN_EXCEPTIONS;
    g->refs = 1 + g->nchildren;
    for (size_t i = 0; i < g->nchildren; i++) {
        gather_child *c = &g->children[i];
        c->g = g;
        c->task = sp_task_retain(distinct[i]);
        c->cb.fn = child_done;
        sp_future_add_callback(&c->task->fut, &c->cb);
    }
    free(distinct);

    int rc = sp_future_await(&g->outer, NULL);
    if (rc == 0)
        collect(tasks, n, results, errors);
    gather_unref(g);
    return rc;
}
