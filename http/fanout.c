/* Fan-out (spindle/fanout.h): one task per upstream fetch, gathered with
 * return-exceptions under a timeout scope, as asyncio.gather inside
 * asyncio.timeout. Each task writes its own outcome into its result slot, so
 * what arrived before the deadline survives the cancellation of the rest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spindle/combinators.h>
#include <spindle/fanout.h>
#include <spindle/task.h>

typedef struct fetch_job {
    sp_http_client *cl;
    const sp_fanout_req *rq;
    sp_fanout_result *res;
    double t0;
    bool ended; /* the task stored an outcome in res */
} fetch_job;

static int fetch_one(void *arg, void **result) {
    (void)result;
    fetch_job *j = arg;
    sp_http_request req = j->rq->req;
    req.stream = false;
    sp_http_client_error e;
    sp_http_client_resp *resp;
    int rc = sp_http_client_request(j->cl, &req, &resp, &e);
    sp_fanout_result *res = j->res;
    res->elapsed = sp_time() - j->t0;
    if (rc == -ECANCELED)
        return rc; /* the caller says why: deadline or its own cancellation */
    j->ended = true;
    res->err = rc;
    if (rc != 0) {
        memcpy(res->msg, e.msg, sizeof(res->msg));
        return 0;
    }
    res->resp = resp;
    res->status = sp_http_client_resp_status(resp);
    /* Read whole by the request: a view, no suspension. */
    sp_http_client_resp_body(resp, &res->body, NULL);
    return 0;
}

/* Cancels the fetches still running and waits until they have finished (their
 * jobs live in the caller's frame), without allocating: for when gather could
 * not be used (-ENOMEM). Returns -ECANCELED if the caller was cancelled
 * meanwhile, else 0. */
static int cancel_and_wait_all(sp_task **tasks, size_t n) {
    sp_task *self = sp_task_current();
    int before = sp_task_cancelling(self);
    for (size_t i = 0; i < n; i++) {
        sp_task_cancel(tasks[i]);
        while (!sp_task_done(tasks[i]))
            sp_task_await(tasks[i], NULL);
    }
    return sp_task_cancelling(self) > before ? -ECANCELED : 0;
}

int sp_fanout_fetch(sp_http_client *cl, const sp_fanout_req *reqs, size_t n, double deadline,
                    sp_fanout_result *results) {
    if (results && n > 0)
        memset(results, 0, n * sizeof(*results));
    if (!cl || (n > 0 && (!reqs || !results)))
        return -EINVAL;
    if (!sp_task_current())
        return -EPERM;
    if (n == 0)
        return 0;
    sp_task **tasks = calloc(n, sizeof(*tasks) + sizeof(fetch_job));
    if (!tasks)
        return -ENOMEM;
    fetch_job *jobs = (fetch_job *)(tasks + n);
    double t0 = sp_time();
    int rc = 0;
    size_t spawned;
    for (spawned = 0; spawned < n; spawned++) {
        jobs[spawned] =
            (fetch_job){.cl = cl, .rq = &reqs[spawned], .res = &results[spawned], .t0 = t0};
        rc = sp_spawn(&tasks[spawned], reqs[spawned].name, fetch_one, &jobs[spawned]);
        if (rc != 0)
            break;
    }
    bool expired = false;
    if (rc == 0) {
        sp_timeout tm;
        sp_timeout_enter(&tm, deadline);
        /* The caller's cancellation, the deadline's included, cancels every
         * fetch and returns once they have all finished. */
        rc = sp_gather(tasks, n, SP_GATHER_RETURN_EXCEPTIONS, NULL, NULL);
        rc = sp_timeout_exit(&tm, rc);
        /* The deadline is an outcome per fetch, not a failure of the call. */
        expired = rc == -ETIMEDOUT;
        if (expired)
            rc = 0;
    }
    if (rc != 0 && rc != -ECANCELED) {
        /* Out of memory spawning or gathering: the fetches are called off. */
        if (cancel_and_wait_all(tasks, spawned) == -ECANCELED)
            rc = -ECANCELED;
    }
    double now = sp_time();
    for (size_t i = 0; i < n; i++) {
        sp_fanout_result *res = &results[i];
        if (i < spawned)
            sp_task_release(tasks[i]);
        if (i < spawned && jobs[i].ended)
            continue;
        res->elapsed = now - t0;
        if (expired) {
            res->err = -ETIMEDOUT;
            snprintf(res->msg, sizeof(res->msg), "no response within the %g s deadline", deadline);
        } else {
            /* Cancelled with the caller, or cut short by -ENOMEM. */
            res->err = rc != 0 ? rc : -ECANCELED;
            snprintf(res->msg, sizeof(res->msg), "%s",
                     res->err == -ECANCELED ? "cancelled" : strerror(-res->err));
        }
    }
    free(tasks);
    return rc;
}

void sp_fanout_results_free(sp_fanout_result *results, size_t n) {
    for (size_t i = 0; results && i < n; i++) {
        sp_http_client_resp_free(results[i].resp);
        memset(&results[i], 0, sizeof(results[i]));
    }
}
