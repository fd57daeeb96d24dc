/* The per-loop offload state shared by the thread pool (offload.c) and the
 * process pools (procpool.c): created on first use, torn down by
 * sp_offload_shutdown(). Private to core/. */
#ifndef SP_CORE_OFFLOAD_IMPL_H
#define SP_CORE_OFFLOAD_IMPL_H

#include <pthread.h>
#include <stdbool.h>

#include "loop.h"

struct event;

typedef struct sp_offload {
    sp_loop *loop;
    /* Thread pool. mu guards queue, done, nqueued, idle and each queued or
     * running job's state; the rest is touched by the loop thread only. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sp_list queue; /* jobs waiting for a thread, FIFO */
    sp_list done;  /* jobs finished by a thread, not yet seen by the loop */
    size_t nqueued;
    int idle; /* threads waiting on cv */
    bool stopping;
    pthread_t *threads;
    int nthreads, max_threads;
    int efd;          /* eventfd: threads signal finished jobs; -1 until first use */
    struct event *ev; /* persistent read event on efd */
    /* Process pools whose events live in this loop's base. */
    sp_list procpools;
} sp_offload;

/* The loop's offload state, created on first call; NULL if out of memory. */
sp_offload *sp_offload_get(sp_loop *loop);

/* Detaches every process pool from the dying loop: their events leave its
 * base, callers still queued are forgotten (their tasks were leaked), work
 * under way carries on and is picked up again by the next loop that uses the
 * pool (procpool.c). */
void sp_procpool_unbind_all(sp_offload *o);

#endif
