/* sp_run: asyncio.run. Makes the thread's loop, runs the main task until it
 * finishes, cancels and drains whatever is still pending, and tears the loop
 * down. Also the deadlock guard: when no task can ever be woken, the main
 * task is cancelled instead of hanging forever. */
#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spindle/log.h>

#include "task_impl.h"

static _Thread_local sp_loop *tl_loop;

sp_loop *sp_loop_get(void) {
    return tl_loop;
}

void sp_log_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sp_logv(SP_LOG_WARN, fmt, ap);
    va_end(ap);
}

/* The wake-up for the earliest timer fired: it is no longer armed. The
 * timers themselves are expired by the run loop. */
static void timer_ev_fired(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    ((sp_loop *)arg)->timer_armed_for = 0;
}

static void loop_destroy(sp_loop *loop) {
    sp_offload_shutdown(loop);
    if (loop->timer_ev)
        event_free(loop->timer_ev);
    if (loop->base)
        event_base_free(loop->base);
    sp_stack_pool_destroy(loop->stacks);
    sp_fiber_thread_fini();
    free(loop->heap);
    free(loop);
}

static int loop_create(const sp_config *cfg, sp_loop **out) {
    sp_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return -ENOMEM;
    sp_list_init(&loop->ready);
    sp_list_init(&loop->tasks);
    sp_fiber_init_main(&loop->sched_fiber);
    loop->debug = cfg && cfg->debug;
    loop->now_ns = loop->io_polled_ns = sp_now_ns();
    double slow = cfg && cfg->slow_task_secs > 0 ? cfg->slow_task_secs : 0.1;
    loop->slow_task_ns = (int64_t)(slow * 1e9);
    size_t stack = cfg && cfg->stack_size ? cfg->stack_size : 128 * 1024;
    int rc = sp_stack_pool_create(&loop->stacks, stack);
    if (rc == 0)
        rc = sp_fiber_thread_init();
    if (rc == 0) {
        /* Timers to the microsecond (timerfd), not epoll's rounded ms. */
        struct event_config *ec = event_config_new();
        if (ec)
            event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
        if (!ec || !(loop->base = event_base_new_with_config(ec)))
            rc = -ENOMEM;
        if (ec)
            event_config_free(ec);
    }
    if (rc == 0 && !(loop->timer_ev = evtimer_new(loop->base, timer_ev_fired, loop)))
        rc = -ENOMEM;
    if (rc != 0) {
        loop_destroy(loop);
        return rc;
    }
    *out = loop;
    return 0;
}

static void stop_loop_cb(sp_cb *cb) {
    (void)cb;
    tl_loop->stopping = true;
}

/* Counts down the shutdown set; the loop drains until it reaches zero. */
typedef struct drain_waiter {
    sp_cb cb;
    size_t *left;
} drain_waiter;

static void drain_done_cb(sp_cb *cb) {
    drain_waiter *w = sp_container_of(cb, drain_waiter, cb);
    (*w->left)--;
}

/* Cancels every task still pending and runs the loop until they finish, as
 * asyncio.run does; those that end with an error are logged. `late`: the
 * tasks were spawned while earlier ones were being cancelled; asyncio would
 * destroy them pending at loop close (closing their coroutines, with a
 * warning): here they are cancelled and drained too, with the warning, so
 * that nothing leaks. */
static void cancel_remaining(sp_loop *loop, bool late) {
    size_t n = loop->ntasks;
    if (n == 0)
        return;
    sp_task **tasks = calloc(n, sizeof(*tasks));
    drain_waiter *waiters = calloc(n, sizeof(*waiters));
    if (!tasks || !waiters) {
        free(tasks);
        free(waiters);
        return;
    }
    size_t i = 0, left = n;
    for (sp_list *l = loop->tasks.next; l != &loop->tasks; l = l->next, i++) {
        tasks[i] = sp_task_retain(sp_container_of(l, sp_task, link));
        waiters[i].cb.fn = drain_done_cb;
        waiters[i].left = &left;
    }
    for (i = 0; i < n; i++) {
        if (late)
            sp_log_warn("task '%s' was spawned during sp_run() shutdown and is still pending: "
                        "cancelling it",
                        tasks[i]->name);
        else if (loop->debug)
            sp_log_warn("task '%s' still pending when the loop exits: cancelling it",
                        tasks[i]->name);
        sp_task_cancel(tasks[i]);
        sp_future_add_callback(&tasks[i]->fut, &waiters[i].cb);
    }
    while (left > 0 && sp_loop_run_once(loop) == 0)
        ;
    for (i = 0; i < n; i++) {
        sp_task *t = tasks[i];
        if (!sp_task_done(t)) {
            sp_future_remove_callback(&waiters[i].cb);
            sp_log_warn("task '%s' never finished after being cancelled; leaking it", t->name);
            continue;
        }
        const char *msg;
        int err = sp_task_error(t, &msg);
        if (err != 0 && err != -ECANCELED)
            sp_log_warn("unhandled error during sp_run() shutdown in task '%s': %s%s%s", t->name,
                        strerror(-err), msg ? ": " : "", msg ? msg : "");
        sp_task_release(t);
    }
    free(tasks);
    free(waiters);
}

int sp_run_config(const sp_config *cfg, sp_task_fn *main, void *arg, void **result) {
    if (tl_loop)
        return -EBUSY;
    sp_loop *loop;
    int rc = loop_create(cfg, &loop);
    if (rc != 0)
        return rc;
    tl_loop = loop;

    sp_task *main_task;
    rc = sp_spawn(&main_task, NULL, main, arg);
    if (rc == 0) {
        sp_cb stop = {.fn = stop_loop_cb};
        sp_future_add_callback(&main_task->fut, &stop);
        bool deadlocked = false;
        while (!loop->stopping) {
            if (sp_loop_run_once(loop) != -EDEADLK)
                continue;
            if (deadlocked || sp_task_done(main_task)) {
                sp_log_warn("deadlock: %zu tasks wait and nothing can wake them", loop->ntasks);
                break;
            }
            sp_log_warn("deadlock: %zu tasks wait and nothing can wake them; cancelling the "
                        "main task",
                        loop->ntasks);
            deadlocked = true;
            sp_task_cancel(main_task);
        }
        sp_future_remove_callback(&stop);
        loop->stopping = false;
        if (sp_task_done(main_task))
            rc = sp_task_result(main_task, result);
        else
            rc = -EDEADLK;
        cancel_remaining(loop, false);
        /* Tasks the cancelled ones spawned while cleaning up, and so on, a
         * few generations deep. */
        for (int round = 0; round < 8 && loop->ntasks > 0; round++)
            cancel_remaining(loop, true);
        sp_task_release(main_task);
    }
    tl_loop = NULL;
    loop_destroy(loop);
    /* The loop is gone: waiting for the log writer blocks no one, and the
     * shutdown warnings reach the file before the program exits. */
    sp_log_flush();
    return rc;
}

int sp_run(sp_task_fn *main, void *arg, void **result) {
    return sp_run_config(NULL, main, arg, result);
}
