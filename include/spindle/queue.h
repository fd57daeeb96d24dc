/* asyncio.Queue for tasks of one loop: FIFO, LIFO and priority order, bounded
 * or not, with task_done/join and Python 3.13's shutdown. A port of CPython's
 * queues.py: waiting putters and getters are served in arrival order, and a
 * cancelled waiter hands its turn on. Items are `void *` the queue borrows:
 * it never frees them. */
#ifndef SPINDLE_QUEUE_H
#define SPINDLE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <spindle/future.h>
#include <spindle/sync.h>

/* Priority order: negative if item a comes out before b, 0 if equal, positive
 * otherwise. ctx is the pointer given to sp_queue_init_priority. */
typedef int sp_queue_cmp(const void *a, const void *b, void *ctx);

/* A queue the caller allocates; must not move once inited. Fields are private. */
typedef struct sp_queue {
    struct sp_queue_slot *priv_buf; /* ring (FIFO), stack (LIFO) or binary heap */
    size_t priv_cap, priv_head, priv_count, priv_maxsize;
    uint64_t priv_seq;
    sp_queue_cmp *priv_cmp;
    void *priv_cmp_ctx;
    sp_list priv_getters, priv_putters;
    size_t priv_unfinished;
    sp_event priv_finished;
    uint8_t priv_kind;
    bool priv_shutdown;
} sp_queue;

/* Initializes an empty FIFO queue (asyncio.Queue) holding at most maxsize
 * items, or any number if maxsize is 0. Storage grows on demand and is freed
 * by sp_queue_fini. Never suspends. */
void sp_queue_init(sp_queue *q, size_t maxsize);

/* Same, last in first out (asyncio.LifoQueue). */
void sp_queue_init_lifo(sp_queue *q, size_t maxsize);

/* Same, lowest item first by cmp (asyncio.PriorityQueue); items that compare
 * equal come out in the order they were put. Returns 0 or -EINVAL if cmp is
 * NULL. */
int sp_queue_init_priority(sp_queue *q, size_t maxsize, sp_queue_cmp *cmp, void *ctx);

/* Frees the queue's storage. Items still queued are dropped, not freed.
 * Returns 0, or -EBUSY if tasks still wait in put, get or join (q is then left
 * intact). */
int sp_queue_fini(sp_queue *q);

/* Appends item, suspending while the queue is full. Returns 0, -ECANCELED
 * (nothing was put), -ESHUTDOWN once the queue is shut down (also when that
 * happens while waiting), -ENOMEM, or -EPERM if it would have to wait outside
 * a task. Suspends. */
int sp_queue_put(sp_queue *q, void *item);

/* Appends item if there is room. Returns 0, -EAGAIN if the queue is full
 * (asyncio's QueueFull), -ESHUTDOWN after sp_queue_shutdown, or -ENOMEM.
 * Never suspends. */
int sp_queue_put_nowait(sp_queue *q, void *item);

/* Removes the next item into *item, suspending while the queue is empty.
 * Returns 0, -ECANCELED (nothing was taken: the item stays for another
 * getter), -ESHUTDOWN once the queue is shut down and empty (at once after an
 * immediate shutdown), or -EPERM if it would have to wait outside a task.
 * Suspends. */
int sp_queue_get(sp_queue *q, void **item);

/* Removes the next item into *item if there is one. Returns 0, -EAGAIN if
 * the queue is empty (asyncio's QueueEmpty), or -ESHUTDOWN if it is empty and
 * shut down. Never suspends. */
int sp_queue_get_nowait(sp_queue *q, void **item);

/* Marks one item taken by a get as processed, for sp_queue_join. Returns 0,
 * or -EINVAL if called more times than items were put (asyncio's ValueError).
 * Never suspends. */
int sp_queue_task_done(sp_queue *q);

/* Suspends until every item ever put has been marked with task_done (or
 * dropped by an immediate shutdown); returns at once if none is pending.
 * Returns 0, -ECANCELED, or -EPERM if it would have to wait outside a task.
 * Suspends. */
int sp_queue_join(sp_queue *q);

/* Shuts the queue down (Python 3.13's Queue.shutdown): puts fail with
 * -ESHUTDOWN from now on, gets once the queue is empty, and every task waiting
 * in put or get wakes to re-check (so waiting putters get -ESHUTDOWN). With
 * `immediate`, the queued items are dropped at once (not freed), each counted
 * as done for join, so gets fail at once too. Never suspends. */
void sp_queue_shutdown(sp_queue *q, bool immediate);

/* Number of items queued. */
size_t sp_queue_qsize(const sp_queue *q);
/* The maxsize given at init (0: unbounded). */
size_t sp_queue_maxsize(const sp_queue *q);
bool sp_queue_empty(const sp_queue *q);
/* True if maxsize items are queued; never for an unbounded queue. */
bool sp_queue_full(const sp_queue *q);

#endif
