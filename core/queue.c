/* asyncio's queues.py (CPython 3.11, plus 3.13's shutdown) in C. The items
 * sit in one growable array used as a ring (FIFO), a stack (LIFO) or a binary
 * heap (priority). A task that must wait queues a waiter (future + link) on
 * its own stack; the other side pops and completes it, one per item. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <spindle/queue.h>
#include <spindle/task.h>

#include "list.h"

enum { QUEUE_FIFO, QUEUE_LIFO, QUEUE_PRIORITY };

/* seq breaks priority ties by arrival, so equal items keep FIFO order. */
struct sp_queue_slot {
    void *item;
    uint64_t seq;
};

typedef struct waiter {
    sp_future fut;
    sp_list link;
} waiter;

static void queue_init(sp_queue *q, size_t maxsize, uint8_t kind) {
    memset(q, 0, sizeof(*q));
    q->priv_maxsize = maxsize;
    q->priv_kind = kind;
    sp_list_init(&q->priv_getters);
    sp_list_init(&q->priv_putters);
    sp_event_init(&q->priv_finished);
    sp_event_set(&q->priv_finished);
}

void sp_queue_init(sp_queue *q, size_t maxsize) {
    queue_init(q, maxsize, QUEUE_FIFO);
}

void sp_queue_init_lifo(sp_queue *q, size_t maxsize) {
    queue_init(q, maxsize, QUEUE_LIFO);
}

int sp_queue_init_priority(sp_queue *q, size_t maxsize, sp_queue_cmp *cmp, void *ctx) {
    if (!cmp)
        return -EINVAL;
    queue_init(q, maxsize, QUEUE_PRIORITY);
    q->priv_cmp = cmp;
    q->priv_cmp_ctx = ctx;
    return 0;
}

int sp_queue_fini(sp_queue *q) {
    if (!sp_list_empty(&q->priv_getters) || !sp_list_empty(&q->priv_putters) ||
        sp_event_fini(&q->priv_finished) != 0)
        return -EBUSY;
    free(q->priv_buf);
    q->priv_buf = NULL;
    q->priv_cap = q->priv_count = q->priv_head = 0;
    return 0;
}

size_t sp_queue_qsize(const sp_queue *q) {
    return q->priv_count;
}

size_t sp_queue_maxsize(const sp_queue *q) {
    return q->priv_maxsize;
}

bool sp_queue_empty(const sp_queue *q) {
    return q->priv_count == 0;
}

bool sp_queue_full(const sp_queue *q) {
    return q->priv_maxsize > 0 && q->priv_count >= q->priv_maxsize;
}

/* ---- storage ---- */

/* Doubles the array (up to maxsize); called when it is full. */
static int grow(sp_queue *q) {
    size_t old = q->priv_cap;
    if (old > SIZE_MAX / 2 / sizeof(struct sp_queue_slot))
        return -ENOMEM;
    size_t cap = old ? old * 2 : 16;
    if (q->priv_maxsize > 0 && cap > q->priv_maxsize)
        cap = q->priv_maxsize;
    struct sp_queue_slot *buf = realloc(q->priv_buf, cap * sizeof(*buf));
    if (!buf)
        return -ENOMEM;
    /* A full ring whose head is not at 0 wraps: its older part moves to the
     * end of the larger array so the items stay contiguous modulo cap. */
    if (q->priv_head > 0) {
        size_t older = old - q->priv_head;
        memmove(buf + cap - older, buf + q->priv_head, older * sizeof(*buf));
        q->priv_head = cap - older;
    }
    q->priv_buf = buf;
    q->priv_cap = cap;
    return 0;
}

static bool slot_before(const sp_queue *q, const struct sp_queue_slot *a,
                        const struct sp_queue_slot *b) {
    int c = q->priv_cmp(a->item, b->item, q->priv_cmp_ctx);
    return c < 0 || (c == 0 && a->seq < b->seq);
}

static void heap_push(sp_queue *q, struct sp_queue_slot s) {
    struct sp_queue_slot *h = q->priv_buf;
    size_t i = q->priv_count;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!slot_before(q, &s, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = s;
}

/* Removes the root of a heap of q->priv_count + 1 slots. */
static void *heap_pop(sp_queue *q) {
    struct sp_queue_slot *h = q->priv_buf;
    void *top = h[0].item;
    size_t n = q->priv_count;
    struct sp_queue_slot last = h[n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && slot_before(q, &h[child + 1], &h[child]))
            child++;
        if (!slot_before(q, &h[child], &last))
            break;
        h[i] = h[child];
        i = child;
    }
    h[i] = last;
    return top;
}

/* asyncio's _put: the storage has room. */
static void push_item(sp_queue *q, void *item) {
    struct sp_queue_slot s = {.item = item, .seq = q->priv_seq++};
    if (q->priv_kind == QUEUE_PRIORITY) {
        heap_push(q, s);
    } else {
        size_t i = q->priv_head + q->priv_count;
        q->priv_buf[i >= q->priv_cap ? i - q->priv_cap : i] = s;
    }
    q->priv_count++;
}

/* asyncio's _get: the queue is not empty. */
static void *pop_item(sp_queue *q) {
    q->priv_count--;
    switch (q->priv_kind) {
    case QUEUE_PRIORITY:
        return heap_pop(q);
    case QUEUE_LIFO:
        return q->priv_buf[q->priv_count].item;
    default: {
        void *item = q->priv_buf[q->priv_head].item;
        if (++q->priv_head == q->priv_cap)
            q->priv_head = 0;
        return item;
    }
    }
}

/* ---- waiting ---- */

/* Wakes the first waiter that is not already done (cancelled), dequeuing it
 * and any done ones before it. */
static void wakeup_next(sp_list *waiters) {
    sp_list *n;
    while ((n = sp_list_pop_front(waiters)) != NULL) {
        waiter *w = sp_container_of(n, waiter, link);
        if (!sp_future_done(&w->fut)) {
            sp_future_set_result(&w->fut, NULL);
            return;
        }
    }
}

static void wakeup_all(sp_list *waiters) {
    sp_list *n;
    while ((n = sp_list_pop_front(waiters)) != NULL) {
        waiter *w = sp_container_of(n, waiter, link);
        if (!sp_future_done(&w->fut))
            sp_future_set_result(&w->fut, NULL);
    }
}

/* Queues the caller on `waiters` until the other side (or a shutdown) wakes
 * it. Whoever wakes a waiter dequeues it; a cancelled one dequeues itself,
 * and if it had been woken already, the wake-up was meant for whoever can use
 * the free slot or item, so it goes to the next waiter. */
static int wait_turn(sp_queue *q, sp_list *waiters, bool (*blocked)(const sp_queue *)) {
    if (!sp_task_current())
        return -EPERM;
    waiter w;
    sp_future_init(&w.fut);
    sp_list_push_back(waiters, &w.link);
    int rc = sp_future_await(&w.fut, NULL);
    if (rc == 0)
        return 0;
    if (sp_list_linked(&w.link))
        sp_list_remove(&w.link);
    if (!blocked(q) && !sp_future_cancelled(&w.fut))
        wakeup_next(waiters);
    return rc;
}

/* ---- operations ---- */

int sp_queue_put_nowait(sp_queue *q, void *item) {
    if (q->priv_shutdown)
        return -ESHUTDOWN;
    if (sp_queue_full(q))
        return -EAGAIN;
    if (q->priv_count == q->priv_cap) {
        int rc = grow(q);
        if (rc != 0)
            return rc;
    }
    push_item(q, item);
    q->priv_unfinished++;
    sp_event_clear(&q->priv_finished);
    wakeup_next(&q->priv_getters);
    return 0;
}

int sp_queue_put(sp_queue *q, void *item) {
    while (sp_queue_full(q)) {
        if (q->priv_shutdown)
            return -ESHUTDOWN;
        int rc = wait_turn(q, &q->priv_putters, sp_queue_full);
        if (rc != 0)
            return rc;
    }
    int rc = sp_queue_put_nowait(q, item);
    /* A free slot we were woken for but could not fill: pass it on. */
    if (rc == -ENOMEM)
        wakeup_next(&q->priv_putters);
    return rc;
}

int sp_queue_get_nowait(sp_queue *q, void **item) {
    if (sp_queue_empty(q))
        return q->priv_shutdown ? -ESHUTDOWN : -EAGAIN;
    *item = pop_item(q);
    wakeup_next(&q->priv_putters);
    return 0;
}

int sp_queue_get(sp_queue *q, void **item) {
    while (sp_queue_empty(q)) {
        if (q->priv_shutdown)
            return -ESHUTDOWN;
        int rc = wait_turn(q, &q->priv_getters, sp_queue_empty);
        if (rc != 0)
            return rc;
    }
    return sp_queue_get_nowait(q, item);
}

int sp_queue_task_done(sp_queue *q) {
    if (q->priv_unfinished == 0)
        return -EINVAL;
    if (--q->priv_unfinished == 0)
        sp_event_set(&q->priv_finished);
    return 0;
}

int sp_queue_join(sp_queue *q) {
    if (q->priv_unfinished == 0)
        return 0;
    return sp_event_wait(&q->priv_finished);
}

void sp_queue_shutdown(sp_queue *q, bool immediate) {
    q->priv_shutdown = true;
    if (immediate) {
        size_t dropped = q->priv_count;
        q->priv_count = q->priv_head = 0;
        q->priv_unfinished -= dropped < q->priv_unfinished ? dropped : q->priv_unfinished;
        if (q->priv_unfinished == 0)
            sp_event_set(&q->priv_finished);
    }
    /* Every waiter re-checks: getters find the queue empty (or not) and shut,
     * putters find it shut. */
    wakeup_all(&q->priv_getters);
    wakeup_all(&q->priv_putters);
}
