/* The per-thread loop: ready queue, timers, the scheduler's own context, and
 * the libevent base that waits for I/O. Private to core/. */
#ifndef SP_CORE_LOOP_H
#define SP_CORE_LOOP_H

#include <stdint.h>
#include <spindle/task.h>

#include "fiber.h"
#include "list.h"

struct event_base;
struct event;

typedef struct sp_loop {
    struct event_base *base;
    struct event *timer_ev;  /* fires at the earliest timer while the loop waits */
    int64_t timer_armed_for; /* the deadline timer_ev is armed for, 0: none */
    sp_list ready;           /* sp_cb nodes to run at the next iteration */
    sp_timer **heap;
    size_t nheap, heap_cap;
    uint64_t timer_seq;
    sp_fiber sched_fiber; /* the thread's own stack: where the scheduler runs */
    sp_task *current;
    sp_stack_pool *stacks;
    sp_list tasks; /* every task not yet finished */
    size_t ntasks;
    int internal_events;       /* libevent events of ours that never wake a task */
    int external_wakers;       /* in-flight work (threads, processes) that will wake a task */
    int io_waiters;            /* tasks in sp_io_wait: I/O is then polled every iteration */
    unsigned steps_since_poll; /* callbacks run since I/O was last polled */
    int64_t now_ns;            /* the clock as this iteration first read it, 0 until
                                  then (see sp_loop_now) */
    int64_t io_polled_ns;      /* the clock when I/O was last polled */
    bool stopping;
    bool debug;
    int64_t slow_task_ns;
    struct sp_offload *offload;
} sp_loop;

/* The calling thread's loop, or NULL. */
sp_loop *sp_loop_get(void);

/* Monotonic clock in nanoseconds. */
int64_t sp_now_ns(void);
/* The clock reading `seconds` from now, saturated far in the future. */
int64_t sp_deadline_after(double seconds);
/* The clock as this loop iteration first read it (one read per iteration,
 * taken on first use), so early by however long the iteration has run: for
 * the server's own timeouts of seconds, as nginx's cached time. Polling I/O
 * starts the reading over, so libevent's callbacks (accept, readiness), which
 * run after a wait of any length, see a fresh one. */
int64_t sp_loop_now(sp_loop *loop);
/* sp_deadline_after from sp_loop_now. */
int64_t sp_loop_deadline_after(sp_loop *loop, double seconds);

/* Arms t to run t->cb at `when` (ns); re-arming moves it. */
void sp_timer_arm(sp_loop *loop, sp_timer *t, int64_t when);
/* Disarms t if armed. */
void sp_timer_disarm(sp_loop *loop, sp_timer *t);
void sp_timer_init(sp_timer *t, sp_cb_fn *fn);
/* Suspends the current task on f until f is done or the clock reaches
 * deadline (ns), when f gets the error err (0: a plain result). Returns as
 * sp_future_await. */
int sp_future_await_deadline(sp_future *f, int64_t deadline, int err);

/* Moves every timer due by `now` to the ready queue, earliest first. */
void sp_timers_expire(sp_loop *loop, int64_t now);

/* Runs one loop iteration: waits for I/O or the next timer (not at all when
 * tasks are ready), queues what became ready, runs what was queued before it
 * started. Returns 0, or -EDEADLK when nothing is ready, armed, or pending. */
int sp_loop_run_once(sp_loop *loop);

/* Suspends the current task on f (f not done): the core of every await.
 * Returns 0 or the error the task was resumed with (-ECANCELED). */
int sp_task_suspend_on(sp_future *f);

/* Stops the loop's offload threads and processes, waiting for jobs under way
 * (offload.c). */
void sp_offload_shutdown(sp_loop *loop);

/* Logs a warning through the error log (spindle/log.h): never blocks. */
void sp_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
