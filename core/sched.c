/* The scheduler's run loop: one iteration waits for I/O (or the earliest
 * timer), moves due timers to the ready queue, then runs exactly the callbacks
 * that were ready when the iteration began, as asyncio's _run_once does.
 * Resuming a task is one such callback (task.c); this is the only place that
 * runs them. */
#include <errno.h>
#include <event2/event.h>
#include <time.h>

#include "loop.h"

int64_t sp_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t seconds_to_ns(double seconds) {
    /* A century: far enough to mean "never", small enough not to overflow. */
    const double max = 100.0 * 365 * 24 * 3600;
    if (!(seconds > 0))
        seconds = 0;
    if (seconds > max)
        seconds = max;
    return (int64_t)(seconds * 1e9);
}

int64_t sp_deadline_after(double seconds) {
    return sp_now_ns() + seconds_to_ns(seconds);
}

int64_t sp_loop_now(sp_loop *loop) {
    if (!loop->now_ns)
        loop->now_ns = sp_now_ns();
    return loop->now_ns;
}

int64_t sp_loop_deadline_after(sp_loop *loop, double seconds) {
    return sp_loop_now(loop) + seconds_to_ns(seconds);
}

double sp_time(void) {
    return (double)sp_now_ns() / 1e9;
}

/* While tasks are ready, I/O is polled (without waiting) once this many
 * callbacks have run: a syscall per iteration would cost more than an
 * iteration of a few tasks, and a busy loop still sees I/O within
 * microseconds. While a task waits in sp_io_wait, every iteration polls, as
 * asyncio's select(0) does, so its wake-up keeps asyncio's place among the
 * ready tasks. */
#define POLL_EVERY_STEPS 128

/* Runs libevent once (flags: EVLOOP_NONBLOCK or EVLOOP_ONCE). The cached
 * clock is stale from here until the iteration reads it again. Returns 1
 * (polled) or -EIO. */
static int poll_events(sp_loop *loop, int flags) {
    loop->steps_since_poll = 0;
    loop->now_ns = 0;
    return event_base_loop(loop->base, flags) < 0 ? -EIO : 1;
}

/* Waits for I/O: not at all when callbacks are ready, else until the earliest
 * timer or forever. Returns 1 if it polled, 0 if not, -EDEADLK if waiting
 * forever on nothing, -EIO. */
static int poll_io(sp_loop *loop) {
    if (!sp_list_empty(&loop->ready) || loop->stopping) {
        if (loop->steps_since_poll < POLL_EVERY_STEPS && loop->io_waiters == 0)
            return 0;
        return poll_events(loop, EVLOOP_NONBLOCK);
    }
    if (loop->nheap > 0) {
        int64_t wait = loop->heap[0]->when - sp_now_ns();
        if (wait < 0)
            wait = 0;
        struct timeval tv = {.tv_sec = wait / 1000000000, .tv_usec = (wait % 1000000000) / 1000};
        /* Round up so the wake-up is never before the timer is due. */
        if (wait % 1000 != 0 && ++tv.tv_usec == 1000000) {
            tv.tv_sec++;
            tv.tv_usec = 0;
        }
        /* Re-arming costs a syscall (timerfd): only when the deadline moved.
         * A stale one just wakes the loop once for nothing. */
        int64_t when = loop->heap[0]->when;
        if (when != loop->timer_armed_for) {
            event_add(loop->timer_ev, &tv);
            loop->timer_armed_for = when;
        }
    } else {
        if (loop->timer_armed_for) {
            event_del(loop->timer_ev);
            loop->timer_armed_for = 0;
        }
        int events = event_base_get_num_events(loop->base, EVENT_BASE_COUNT_ADDED);
        if (events <= loop->internal_events && loop->external_wakers == 0)
            return -EDEADLK;
    }
    return poll_events(loop, EVLOOP_ONCE);
}

int sp_loop_run_once(sp_loop *loop) {
    int polled = poll_io(loop);
    if (polled < 0)
        return polled;
    /* The clock is read when the iteration first needs it: after a poll,
     * for due timers, or by sp_loop_now; an iteration of tasks that only
     * yield reads it not at all. */
    loop->now_ns = 0;
    if (polled)
        loop->io_polled_ns = sp_loop_now(loop);
    if (loop->nheap > 0)
        sp_timers_expire(loop, sp_loop_now(loop));

    sp_list todo;
    sp_list_init(&todo);
    sp_list_splice_back(&todo, &loop->ready);
    sp_list *n;
    while ((n = sp_list_pop_front(&todo)) != NULL) {
        sp_cb *cb = sp_container_of(n, sp_cb, priv_link);
        cb->fn(cb);
        loop->steps_since_poll++;
    }
    return 0;
}
