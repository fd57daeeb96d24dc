/* sp_to_thread and the per-loop thread pool behind it (asyncio.to_thread).
 * Threads take jobs from a mutex+condvar queue and hand them back through an
 * eventfd; only the loop completes futures. Process pools are in procpool.c. */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <spindle/offload.h>

#include "offload_impl.h"

/* QUEUED -> RUNNING -> DONE are a thread's moves, made under o->mu; the loop
 * makes a job FINISHED once it has seen it done (or removed it unrun). */
enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FINISHED };

typedef struct thread_job {
    sp_future fut;
    sp_list link; /* in o->queue or o->done */
    sp_thread_fn *fn;
    void *arg;
    sp_thread_discard_fn *discard;
    void *result;
    int rc;
    int state;
    int refs;       /* the caller's and the pool's; changed on the loop thread only */
    bool abandoned; /* the caller left while fn ran: the loop discards the result */
    bool awaited;   /* counted in loop->external_wakers */
} thread_job;

static int default_threads(void) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    return ncpu + 4 < 32 ? (int)ncpu + 4 : 32;
}

sp_offload *sp_offload_get(sp_loop *loop) {
    if (loop->offload)
        return loop->offload;
    sp_offload *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    if (pthread_mutex_init(&o->mu, NULL) != 0) {
        free(o);
        return NULL;
    }
    if (pthread_cond_init(&o->cv, NULL) != 0) {
        pthread_mutex_destroy(&o->mu);
        free(o);
        return NULL;
    }
    o->loop = loop;
    sp_list_init(&o->queue);
    sp_list_init(&o->done);
    sp_list_init(&o->procpools);
    o->max_threads = default_threads();
    o->efd = -1;
    loop->offload = o;
    return o;
}

static void job_release(thread_job *job) {
    if (--job->refs == 0) {
        sp_future_fini(&job->fut);
        free(job);
    }
}

/* The job will no longer wake its caller: stop counting it as a waker. */
static void job_unawait(sp_loop *loop, thread_job *job) {
    if (job->awaited) {
        job->awaited = false;
        loop->external_wakers--;
    }
}

/* The loop's side of a job a thread has finished: hand the outcome to the
 * caller, or to discard if the caller left. deliver is false at teardown, when
 * callers still waiting belong to leaked tasks and futures can't be run. */
static void job_finish(sp_offload *o, thread_job *job, bool deliver) {
    job->state = JOB_FINISHED;
    job_unawait(o->loop, job);
    if (job->abandoned) {
        if (job->discard)
            job->discard(job->arg, job->result);
    } else if (deliver && !sp_future_done(&job->fut)) {
        if (job->rc == 0)
            sp_future_set_result(&job->fut, job->result);
        else
            sp_future_set_error(&job->fut, job->rc, NULL);
    }
    /* A caller whose future was cancelled but who has not resumed yet finds
     * the job FINISHED and discards the result itself. */
    job_release(job);
}

static void *pool_thread(void *arg) {
    sp_offload *o = arg;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (sp_list_empty(&o->queue) && !o->stopping) {
            o->idle++;
            pthread_cond_wait(&o->cv, &o->mu);
            o->idle--;
        }
        sp_list *n = sp_list_pop_front(&o->queue);
        if (!n)
            break;
        o->nqueued--;
        thread_job *job = sp_container_of(n, thread_job, link);
        job->state = JOB_RUNNING;
        pthread_mutex_unlock(&o->mu);

        void *result = NULL;
        int rc = job->fn(job->arg, &result);

        pthread_mutex_lock(&o->mu);
        job->rc = rc;
        job->result = result;
        job->state = JOB_DONE;
        bool notify = sp_list_empty(&o->done);
        sp_list_push_back(&o->done, &job->link);
        if (notify) {
            /* Only the push onto an empty list needs a wake-up: the loop takes
             * the whole list each time it wakes. */
            uint64_t one = 1;
            ssize_t w = write(o->efd, &one, sizeof(one));
            (void)w; /* an eventfd write fails only if the counter would overflow */
        }
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

static void pool_notified(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    sp_offload *o = arg;
    uint64_t count;
    ssize_t r = read(fd, &count, sizeof(count));
    (void)r; /* EAGAIN: a spurious wake-up, the list below is then empty */
    sp_list done;
    sp_list_init(&done);
    pthread_mutex_lock(&o->mu);
    sp_list_splice_back(&done, &o->done);
    pthread_mutex_unlock(&o->mu);
    sp_list *n;
    while ((n = sp_list_pop_front(&done)) != NULL)
        job_finish(o, sp_container_of(n, thread_job, link), true);
}

/* Creates the eventfd and its event on first use. */
static int pool_start(sp_offload *o) {
    if (o->ev)
        return 0;
    o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (o->efd < 0)
        return -errno;
    o->ev = event_new(o->loop->base, o->efd, EV_READ | EV_PERSIST, pool_notified, o);
    if (!o->ev || event_add(o->ev, NULL) != 0) {
        if (o->ev)
            event_free(o->ev);
        o->ev = NULL;
        close(o->efd);
        o->efd = -1;
        return -ENOMEM;
    }
    /* Always armed, yet never a reason for a task to wake by itself. */
    o->loop->internal_events++;
    return 0;
}

static int thread_start(sp_offload *o) {
    pthread_t *threads = realloc(o->threads, (size_t)(o->nthreads + 1) * sizeof(*threads));
    if (!threads)
        return -ENOMEM;
    o->threads = threads;
    /* Signals go to the program's own threads, never to a pool thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&o->threads[o->nthreads], NULL, pool_thread, o);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    o->nthreads++;
    return 0;
}

/* Queues job and starts a thread unless an idle one will take it, as
 * ThreadPoolExecutor._adjust_thread_count. */
static int pool_submit(sp_offload *o, thread_job *job) {
    pthread_mutex_lock(&o->mu);
    sp_list_push_back(&o->queue, &job->link);
    o->nqueued++;
    bool need_thread = o->nqueued > (size_t)o->idle && o->nthreads < o->max_threads;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
    if (!need_thread)
        return 0;
    int rc = thread_start(o);
    if (rc == 0 || o->nthreads > 0)
        return 0; /* with threads already running, the job just waits its turn */
    pthread_mutex_lock(&o->mu);
    sp_list_remove(&job->link);
    o->nqueued--;
    pthread_mutex_unlock(&o->mu);
    return rc == -ENOMEM ? rc : -EAGAIN;
}

/* The caller returned -ECANCELED: asyncio's chained future cancels a job not
 * yet started; a running one is left to finish and its outcome discarded. */
static void job_abandon(sp_offload *o, thread_job *job) {
    pthread_mutex_lock(&o->mu);
    int state = job->state;
    if (state == JOB_QUEUED) {
        sp_list_remove(&job->link);
        o->nqueued--;
        job->state = JOB_FINISHED;
    } else if (state != JOB_FINISHED) {
        job->abandoned = true;
    }
    pthread_mutex_unlock(&o->mu);
    job_unawait(o->loop, job);
    if (state == JOB_QUEUED)
        job->refs--; /* the pool's reference; the caller still holds its own */
    if (job->discard && (state == JOB_QUEUED || state == JOB_FINISHED))
        job->discard(job->arg, state == JOB_QUEUED ? NULL : job->result);
}

int sp_to_thread(sp_thread_fn *fn, void *arg, sp_thread_discard_fn *discard, void **result) {
    sp_loop *loop = sp_loop_get();
    if (!loop || !loop->current)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    sp_offload *o = sp_offload_get(loop);
    if (!o)
        return -ENOMEM;
    int rc = pool_start(o);
    if (rc != 0)
        return rc;
    thread_job *job = calloc(1, sizeof(*job));
    if (!job)
        return -ENOMEM;
    sp_future_init(&job->fut);
    job->fn = fn;
    job->arg = arg;
    job->discard = discard;
    job->state = JOB_QUEUED;
    job->refs = 2;
    job->awaited = true;
    loop->external_wakers++;
    rc = pool_submit(o, job);
    if (rc != 0) {
        job_unawait(loop, job);
        free(job);
        return rc;
    }
    void *res = NULL;
    rc = sp_future_await(&job->fut, &res);
    if (rc == -ECANCELED)
        job_abandon(o, job);
    else if (rc == 0 && result)
        *result = res;
    job_release(job);
    return rc;
}

int sp_offload_set_threads(int n) {
    if (n < 1)
        return -EINVAL;
    sp_loop *loop = sp_loop_get();
    if (!loop)
        return -EPERM;
    sp_offload *o = sp_offload_get(loop);
    if (!o)
        return -ENOMEM;
    if (o->nthreads > n)
        return -EBUSY;
    o->max_threads = n;
    return 0;
}

void sp_offload_shutdown(sp_loop *loop) {
    sp_offload *o = loop->offload;
    if (!o)
        return;
    sp_procpool_unbind_all(o);
    pthread_mutex_lock(&o->mu);
    /* Calls still queued now belong to tasks that never finished: drop them. */
    sp_list *n;
    while ((n = sp_list_pop_front(&o->queue)) != NULL) {
        thread_job *job = sp_container_of(n, thread_job, link);
        job->state = JOB_FINISHED;
        job_unawait(loop, job);
        job_release(job);
    }
    o->nqueued = 0;
    o->stopping = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    for (int i = 0; i < o->nthreads; i++)
        pthread_join(o->threads[i], NULL);
    /* The threads are gone: what they finished can be taken without the lock. */
    while ((n = sp_list_pop_front(&o->done)) != NULL)
        job_finish(o, sp_container_of(n, thread_job, link), false);
    if (o->ev) {
        event_free(o->ev);
        loop->internal_events--;
    }
    if (o->efd >= 0)
        close(o->efd);
    free(o->threads);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
    free(o);
    loop->offload = NULL;
}
