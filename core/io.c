/* sp_io_wait: one libevent event on the waiting task's stack, completing a
 * future on the stack too; the task suspends on that future like any other,
 * so cancellation needs nothing special. Readiness completes the future from
 * a callback on the ready queue, as asyncio's reader callbacks do, so the
 * task resumes one iteration after the poll that saw it. */
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <spindle/io.h>

#include "loop.h"

typedef struct io_waiter {
    struct event ev;
    sp_future fut;
    sp_cb ready; /* queued by libevent's callback, completes fut */
    short what;  /* the events libevent reported */
} io_waiter;

static void io_complete(sp_cb *cb) {
    io_waiter *w = sp_container_of(cb, io_waiter, ready);
    if (w->fut.state != SP_FUT_PENDING)
        return;
    if (w->what & (EV_READ | EV_WRITE))
        sp_future_set_result(&w->fut, NULL);
    else
        sp_future_set_error(&w->fut, -ETIMEDOUT, NULL);
}

static void io_ready(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    io_waiter *w = arg;
    w->what = what;
    sp_call_soon(&w->ready);
}

int sp_io_wait(int fd, int events, double timeout) {
    sp_loop *loop = sp_loop_get();
    if (!loop || !loop->current)
        return -EPERM;
    if (fd < 0 || events <= 0 || (events & ~(SP_IO_READ | SP_IO_WRITE)))
        return -EINVAL;
    io_waiter w = {.ready.fn = io_complete};
    sp_future_init(&w.fut);
    short what =
        (short)((events & SP_IO_READ ? EV_READ : 0) | (events & SP_IO_WRITE ? EV_WRITE : 0));
    if (event_assign(&w.ev, loop->base, fd, what, io_ready, &w) != 0)
        return -EINVAL;
    struct timeval tv, *tvp = NULL;
    if (timeout >= 0) {
        int64_t ns = sp_deadline_after(timeout) - sp_now_ns();
        tv.tv_sec = ns / 1000000000;
        tv.tv_usec = (ns % 1000000000) / 1000;
        tvp = &tv;
    }
    if (event_add(&w.ev, tvp) != 0)
        return -EINVAL;
    loop->io_waiters++;
    int rc = sp_future_await(&w.fut, NULL);
    loop->io_waiters--;
    event_del(&w.ev);
    /* Cancelled in the iteration the fd became ready: w is about to go. */
    sp_future_remove_callback(&w.ready);
    sp_future_fini(&w.fut);
    return rc;
}

int sp_fd_set_nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}
