/* Tutorial 3, tasks: create_task, the task methods, cancellation with
 * cleanup, wait(FIRST_COMPLETED), as_completed, and producers and consumers
 * over a queue. A C port of apps/python/03_async_tasks.py that prints the
 * same lines. */
#include <errno.h>

#include "tutorial.h"

/* ---- 1. create_task, and other work meanwhile -----------------------------------
 * sp_spawn (asyncio.create_task) only schedules the task: it starts at the
 * loop's next iteration, i.e. the next time the caller suspends. */

typedef struct download {
    const char *name;
    double seconds;
    size_t size; /* the result; the task's *result points here */
} download;

static int download_run(void *arg, void **result) {
    download *d = arg;
    say("  download %s: start", d->name);
    int rc = sp_sleep(scaled(d->seconds));
    if (rc != 0)
        return rc;
    say("  download %s: done", d->name);
    d->size = strlen(d->name) * 1000;
    *result = &d->size;
    return 0;
}

static int other_work_meanwhile(void) {
    double start = sp_time();
    download d = {.name = "report.pdf", .seconds = 2.0};
    sp_task *t;
    int rc = sp_spawn(&t, d.name, download_run, &d);
    if (rc != 0)
        return report(rc, "sp_spawn");
    say("task created; it starts when main next waits");
    for (int step = 1; step <= 3 && rc == 0; step++) {
        rc = sp_sleep(scaled(0.25));
        if (rc == 0)
            say("main: other work, step %d", step);
    }
    void *size;
    if (rc == 0 && (rc = sp_task_await(t, &size)) == 0)
        say("downloaded %zu bytes; total %.1f s", *(size_t *)size, elapsed(start));
    if (rc != 0)
        cancel_all(&t, 1); /* d lives in this frame: the task must not outlive it */
    else
        sp_task_release(t);
    return rc;
}

/* ---- 2. Task methods ------------------------------------------------------------
 * get_name, done, cancelled, result and cancel, on a handle that stays valid
 * after the task has finished, until it is released. */

static int finished_task(void) {
    download d = {.name = "a.txt", .seconds = 0.5};
    sp_task *t;
    int rc = sp_spawn(&t, "fetch-a", download_run, &d);
    if (rc != 0)
        return report(rc, "sp_spawn");
    say("name: %s, done: %s", sp_task_name(t), py_bool(sp_task_done(t)));
    void *size = NULL;
    if ((rc = sp_sleep(scaled(1.0))) == 0 && (rc = sp_task_result(t, &size)) == 0) {
        say("done: %s, cancelled: %s, result: %zu", py_bool(sp_task_done(t)),
            py_bool(sp_task_cancelled(t)), *(size_t *)size);
        /* cancel() returns False for a finished task: -EALREADY here. */
        say("cancel() on a finished task: %s", py_bool(sp_task_cancel(t) == 0));
    }
    if (rc != 0)
        cancel_all(&t, 1);
    else
        sp_task_release(t);
    return rc;
}

static int cancelled_task(void) {
    download d = {.name = "b.iso", .seconds = 5.0};
    sp_task *t;
    int rc = sp_spawn(&t, "fetch-b", download_run, &d);
    if (rc != 0)
        return report(rc, "sp_spawn");
    if ((rc = sp_sleep(scaled(0.5))) == 0) {
        /* A request: the task learns of it when it next runs. */
        bool requested = sp_task_cancel(t) == 0;
        say("cancel(): %s, done right away: %s", py_bool(requested), py_bool(sp_task_done(t)));
        rc = sp_task_await(t, NULL);
        if (rc == -ECANCELED) {
            say("awaiting it raised CancelledError; cancelled: %s", py_bool(sp_task_cancelled(t)));
            rc = 0;
        } else if (rc == 0) {
            rc = report(-EPROTO, "fetch-b was not cancelled");
        }
    }
    if (rc != 0)
        cancel_all(&t, 1);
    else
        sp_task_release(t);
    return rc;
}

/* ---- 3. Cancellation with cleanup ------------------------------------------------
 * The cancelled task sees -ECANCELED from the call it was suspended in (where
 * Python raises CancelledError), cleans up, and returns -ECANCELED: the
 * `raise` that makes it end cancelled rather than finished. */

static int worker(void *arg, void **result) {
    (void)arg, (void)result;
    say("  worker: started");
    int rc = sp_sleep(scaled(10.0));
    if (rc == -ECANCELED) {
        say("  worker: cancelled, cleaning up");
        /* Cleanup may suspend too: the cancellation was delivered once. */
        if (sp_sleep(scaled(0.2)) == 0)
            say("  worker: cleanup done");
        return -ECANCELED;
    }
    if (rc != 0)
        return rc;
    say("  worker: finished");
    return 0;
}

static int cancel_with_cleanup(void) {
    double start = sp_time();
    sp_task *t;
    int rc = sp_spawn(&t, "worker", worker, NULL);
    if (rc != 0)
        return report(rc, "sp_spawn");
    if ((rc = sp_sleep(scaled(0.5))) == 0) {
        sp_task_cancel(t);
        rc = sp_task_await(t, NULL); /* returns once the cleanup is over */
        if (rc == -ECANCELED) {
            say("worker cancelled after %.1f s", elapsed(start));
            rc = 0;
        } else if (rc == 0) {
            rc = report(-EPROTO, "the worker was not cancelled");
        }
    }
    if (rc != 0)
        cancel_all(&t, 1);
    else
        sp_task_release(t);
    return rc;
}

/* ---- 4. wait(FIRST_COMPLETED), then cancel the rest ----------------------------
 * sp_wait reports which tasks are done in a bool array parallel to the task
 * array: asyncio.wait's `done` and `pending` sets, but in a fixed order. */

enum { NMIRRORS = 3 };

typedef struct mirror {
    const char *name;
    double seconds;
    char answer[48];
} mirror;

static void mirrors_init(mirror m[NMIRRORS]) {
    m[0] = (mirror){.name = "mirror-eu", .seconds = 1.5};
    m[1] = (mirror){.name = "mirror-us", .seconds = 0.5};
    m[2] = (mirror){.name = "mirror-asia", .seconds = 1.0};
}

static int fetch_from(void *arg, void **result) {
    mirror *m = arg;
    int rc = sp_sleep(scaled(m->seconds));
    if (rc != 0)
        return rc;
    snprintf(m->answer, sizeof(m->answer), "%s answered after %.1f s", m->name, m->seconds);
    *result = m->answer;
    return 0;
}

static int spawn_mirrors(mirror m[NMIRRORS], sp_task *tasks[NMIRRORS]) {
    for (int i = 0; i < NMIRRORS; i++) {
        int rc = sp_spawn(&tasks[i], m[i].name, fetch_from, &m[i]);
        if (rc != 0) {
            cancel_all(tasks, NMIRRORS);
            return report(rc, "sp_spawn");
        }
    }
    return 0;
}

static int first_completed(void) {
    double start = sp_time();
    mirror m[NMIRRORS];
    mirrors_init(m);
    sp_task *tasks[NMIRRORS] = {NULL};
    int rc = spawn_mirrors(m, tasks);
    if (rc != 0)
        return rc;
    bool done[NMIRRORS];
    rc = sp_wait(tasks, NMIRRORS, SP_FIRST_COMPLETED, -1, done, NULL);
    if (rc != 0) {
        cancel_all(tasks, NMIRRORS);
        return rc;
    }
    sp_task *pending[NMIRRORS];
    size_t npending = 0;
    for (int i = 0; i < NMIRRORS && rc == 0; i++) {
        void *answer;
        if (done[i] && (rc = sp_task_result(tasks[i], &answer)) == 0)
            say("first: %s", (const char *)answer);
    }
    for (int i = 0; i < NMIRRORS && rc == 0; i++) {
        if (!done[i]) {
            say("cancelling %s", sp_task_name(tasks[i]));
            sp_task_cancel(tasks[i]);
            pending[npending++] = tasks[i];
        }
    }
    /* Let the cancellations finish: the tasks react when they next run. */
    if (rc == 0 && npending > 0)
        rc = sp_wait(pending, npending, SP_ALL_COMPLETED, -1, NULL, NULL);
    for (int i = 0; i < NMIRRORS && rc == 0; i++)
        say("%s: cancelled %s", sp_task_name(tasks[i]), py_bool(sp_task_cancelled(tasks[i])));
    if (rc == 0)
        say("wait: finished in %.1f s", elapsed(start));
    cancel_all(tasks, NMIRRORS); /* all done unless rc != 0: then only released */
    return rc;
}

/* ---- 5. as_completed ---------------------------------------------------------------
 * The tasks come back in the order they finish, not the order given. */

static int in_completion_order(void) {
    double start = sp_time();
    mirror m[NMIRRORS];
    mirrors_init(m);
    sp_task *tasks[NMIRRORS] = {NULL};
    int rc = spawn_mirrors(m, tasks);
    if (rc != 0)
        return rc;
    sp_as_completed *ac;
    if ((rc = sp_as_completed_begin(&ac, tasks, NMIRRORS, -1)) != 0) {
        cancel_all(tasks, NMIRRORS);
        return report(rc, "sp_as_completed_begin");
    }
    void *answer;
    while ((rc = sp_as_completed_next(ac, NULL, &answer)) == 0)
        say("%.1f s: %s", elapsed(start), (const char *)answer);
    sp_as_completed_end(ac);
    cancel_all(tasks, NMIRRORS); /* all done unless rc != -ENOENT: then cancelled */
    return rc == -ENOENT ? 0 : rc;
}

/* ---- 6. Producers and consumers over a queue ----------------------------------------
 * Two producers put items on an sp_queue (asyncio.Queue); three consumers
 * take them in turn. Each item taken is marked with sp_queue_task_done, so
 * sp_queue_join returns once all have been processed; the consumers, then
 * waiting for items that will never come, are cancelled. */

enum { NPRODUCERS = 2, NCONSUMERS = 3, NITEMS = 3 };

typedef struct producer {
    sp_queue *queue;
    int n;
    double first_delay;
    char items[NITEMS][16]; /* the queue borrows these strings */
} producer;

typedef struct consumer {
    sp_queue *queue;
    int n;
} consumer;

static int producer_run(void *arg, void **result) {
    (void)result;
    producer *p = arg;
    double at = sp_time() + scaled(p->first_delay);
    for (int i = 0; i < NITEMS; i++) {
        /* Sleeping until a point in time rather than for a duration keeps a
         * steady pace: a late wake-up does not delay the items after it. */
        int rc = sp_sleep(at - sp_time());
        if (rc != 0)
            return rc;
        snprintf(p->items[i], sizeof(p->items[i]), "item %d-%d", p->n, i + 1);
        if ((rc = sp_queue_put(p->queue, p->items[i])) != 0)
            return rc;
        say("producer %d: put %s", p->n, p->items[i]);
        at += scaled(1.0);
    }
    return 0;
}

static int consumer_run(void *arg, void **result) {
    (void)result;
    consumer *c = arg;
    for (;;) {
        void *item;
        int rc = sp_queue_get(c->queue, &item);
        if (rc == 0) {
            say("  consumer %d: got %s", c->n, (const char *)item);
            rc = sp_sleep(scaled(0.1)); /* process it */
            /* Marked done even if cancelled while processing, so join never
             * waits for an item nobody will finish. */
            int drc = sp_queue_task_done(c->queue);
            if (rc == 0)
                rc = drc;
        }
        if (rc == -ECANCELED)
            say("  consumer %d: stopping", c->n);
        if (rc != 0)
            return rc;
    }
}

static int producers_and_consumers(void) {
    double start = sp_time();
    sp_queue queue;
    sp_queue_init(&queue, 0);
    consumer cons[NCONSUMERS];
    producer prods[NPRODUCERS] = {{.queue = &queue, .n = 1, .first_delay = 0.25},
                                  {.queue = &queue, .n = 2, .first_delay = 0.75}};
    sp_task *consumers[NCONSUMERS] = {NULL}, *producers[NPRODUCERS] = {NULL};
    int rc = 0;
    for (int i = 0; i < NCONSUMERS && rc == 0; i++) {
        cons[i] = (consumer){.queue = &queue, .n = i + 1};
        rc = sp_spawn(&consumers[i], "consumer", consumer_run, &cons[i]);
    }
    for (int i = 0; i < NPRODUCERS && rc == 0; i++)
        rc = sp_spawn(&producers[i], "producer", producer_run, &prods[i]);
    if (rc != 0)
        report(rc, "sp_spawn");
    else if ((rc = sp_gather(producers, NPRODUCERS, 0, NULL, NULL)) == 0 &&
             (rc = sp_queue_join(&queue)) == 0)
        say("all items processed in %.1f s", elapsed(start));

    /* The consumers now wait in get() for items that will never come: cancel
     * them and wait until they have stopped. (Python 3.13's Queue.shutdown,
     * sp_queue_shutdown here, would let them return instead; 3.11 has none.) */
    for (int i = 0; i < NCONSUMERS && rc == 0; i++)
        sp_task_cancel(consumers[i]);
    if (rc == 0)
        rc = sp_gather(consumers, NCONSUMERS, SP_GATHER_RETURN_EXCEPTIONS, NULL, NULL);
    if (rc == 0)
        say("consumers stopped");
    /* Scope exit: cancels whatever still runs after an error, releases all. */
    cancel_all(producers, NPRODUCERS);
    cancel_all(consumers, NCONSUMERS);
    int frc = sp_queue_fini(&queue);
    return rc != 0 ? rc : frc;
}

static int amain(void *arg, void **result) {
    (void)arg, (void)result;
    int rc;
    say("== 1. create_task ==");
    if ((rc = other_work_meanwhile()) != 0)
        return rc;
    say("== 2. task methods ==");
    if ((rc = finished_task()) != 0 || (rc = cancelled_task()) != 0)
        return rc;
    say("== 3. cancellation with cleanup ==");
    if ((rc = cancel_with_cleanup()) != 0)
        return rc;
    say("== 4. wait for the first, cancel the rest ==");
    if ((rc = first_completed()) != 0)
        return rc;
    say("== 5. as_completed ==");
    if ((rc = in_completion_order()) != 0)
        return rc;
    say("== 6. producers and consumers ==");
    return producers_and_consumers();
}

int main(void) {
    return tut_main("03_async_tasks", amain);
}
