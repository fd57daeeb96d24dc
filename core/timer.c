/* Timers: a binary min-heap of sp_timer ordered by (when, seq), asyncio's
 * scheduled list, and sleep on top of it. The loop waits no longer than the
 * earliest timer. */
#include <errno.h>
#include <stdlib.h>

#include "loop.h"

void sp_timer_init(sp_timer *t, sp_cb_fn *fn) {
    t->when = 0;
    t->seq = 0;
    t->heap_idx = SIZE_MAX;
    t->cb.priv_link.next = t->cb.priv_link.prev = NULL;
    t->cb.fn = fn;
    t->cb.fut = NULL;
}

static bool timer_before(const sp_timer *a, const sp_timer *b) {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(sp_loop *loop, size_t i, sp_timer *t) {
    loop->heap[i] = t;
    t->heap_idx = i;
}

static void sift_up(sp_loop *loop, size_t i) {
    sp_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void sift_down(sp_loop *loop, size_t i) {
    sp_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

void sp_timer_disarm(sp_loop *loop, sp_timer *t) {
    /* Already due and queued: it must not run any more (a cancelled handle). */
    if (sp_list_linked(&t->cb.priv_link))
        sp_list_remove(&t->cb.priv_link);
    size_t i = t->heap_idx;
    if (i == SIZE_MAX)
        return;
    t->heap_idx = SIZE_MAX;
    sp_timer *last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    heap_set(loop, i, last);
    if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
        sift_up(loop, i);
    else
        sift_down(loop, i);
}

void sp_timer_arm(sp_loop *loop, sp_timer *t, int64_t when) {
    sp_timer_disarm(loop, t);
    if (loop->nheap == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        sp_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
        if (!heap) {
            /* Out of memory for the heap: fire at once rather than never. */
            sp_call_soon(&t->cb);
            return;
        }
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    t->when = when;
    t->seq = loop->timer_seq++;
    heap_set(loop, loop->nheap++, t);
    sift_up(loop, t->heap_idx);
}

void sp_timers_expire(sp_loop *loop, int64_t now) {
    while (loop->nheap > 0 && loop->heap[0]->when <= now) {
        sp_timer *t = loop->heap[0];
        sp_timer_disarm(loop, t);
        sp_call_soon(&t->cb);
    }
}

typedef struct deadline_wait {
    sp_timer timer;
    sp_future *fut;
    int err; /* what the future gets at the deadline: 0 is a plain result */
} deadline_wait;

static void deadline_due(sp_cb *cb) {
    deadline_wait *d = sp_container_of(cb, deadline_wait, timer.cb);
    if (d->fut->state != SP_FUT_PENDING)
        return;
    if (d->err)
        sp_future_set_error(d->fut, d->err, NULL);
    else
        sp_future_set_result(d->fut, NULL);
}

int sp_future_await_deadline(sp_future *f, int64_t deadline, int err) {
    sp_loop *loop = sp_loop_get();
    if (!loop || !loop->current)
        return -EPERM;
    deadline_wait d = {.fut = f, .err = err};
    sp_timer_init(&d.timer, deadline_due);
    sp_timer_arm(loop, &d.timer, deadline);
    int rc = sp_future_await(f, NULL);
    sp_timer_disarm(loop, &d.timer);
    return rc;
}

int sp_sleep(double seconds) {
    if (!(seconds > 0))
        return sp_yield();
    sp_future f;
    sp_future_init(&f);
    return sp_future_await_deadline(&f, sp_deadline_after(seconds), 0);
}
