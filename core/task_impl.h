/* The task object, shared by the task and run modules. Private to core/. */
#ifndef SP_CORE_TASK_IMPL_H
#define SP_CORE_TASK_IMPL_H

#include "loop.h"

struct sp_task {
    sp_future fut; /* the task's outcome; first, so a task is its future */
    sp_fiber fiber;
    sp_cb step;   /* resumes the task: queued by spawn, yield, or the awaited future */
    sp_list link; /* in loop->tasks until finished */
    sp_loop *loop;
    sp_task_fn *fn;
    void *arg;
    void *ret;         /* what fn stored in *result */
    char *pending_msg; /* set by sp_fail while running */
    sp_future *fut_waiter;
    struct arena_chunk *arena; /* sp_task_alloc memory, freed when the task ends */
    struct deferred *deferred; /* sp_task_defer calls, run LIFO when it ends */
    char *name;                /* name_buf or heap */
    int refs;
    int num_cancels;
    int rc;         /* what fn returned */
    int resume_err; /* handed to the fiber when it resumes: 0 or -ECANCELED */
    bool must_cancel;
    bool started;
    bool finished; /* fn returned; the stack can go back to the pool */
    char name_buf[24];
};

/* Runs the task's deferred calls (newest first) and frees its arena. */
void sp_task_run_cleanups(sp_task *t);

/* Copies tasks[0..n) to out keeping each task once, in first-seen order (as
 * asyncio makes a set of its arguments). Returns the count; 0 on -ENOMEM. */
size_t sp_tasks_distinct(sp_task *const *tasks, size_t n, sp_task **out);

#endif
