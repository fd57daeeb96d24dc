/* Fan-out: one handler fetching from several upstreams at once and answering
 * with what came back by a deadline, failures included (asyncio.gather with
 * return_exceptions=True under asyncio.timeout).
 *
 * The pattern, which sp_fanout_fetch packages: spawn one task per fetch, then
 * wait for all of them inside a timeout scope. When the deadline passes the
 * scope cancels the caller, the gather cancels the fetches still running and
 * waits until they have closed their connections; what finished before keeps
 * its result. A caller cancelled from outside (the handler's client went
 * away) cancels every fetch the same way: no fetch outlives its handler.
 *
 *     sp_fanout_req reqs[] = {
 *         {.name = "users", .req = {.url = "http://10.0.0.7/users", .total_timeout = 0.3}},
 *         {.name = "orders", .req = {.url = "http://10.0.0.8/orders"}},
 *     };
 *     sp_fanout_result res[2];
 *     int rc = sp_fanout_fetch(client, reqs, 2, 0.5, res);   // at most ~0.5 s
 *     if (rc == 0)
 *         for (size_t i = 0; i < 2; i++)
 *             if (res[i].err == 0 && res[i].status == 200)
 *                 use(reqs[i].name, res[i].body);           // else res[i].msg says why
 *     sp_fanout_results_free(res, 2);
 *     return rc;
 *
 * To do more per backend than one request (parse as each answer lands, chain
 * a second call), write the task yourself and keep the same shape: spawn the
 * tasks, then sp_timeout_enter / sp_gather(..., SP_GATHER_RETURN_EXCEPTIONS,
 * ...) / sp_timeout_exit; or a TaskGroup when the first failure should cancel
 * the rest. An HTTP client belongs to one loop: a server with several workers
 * needs one per worker thread (apps/aggregator.c shows one way). */
#ifndef SPINDLE_FANOUT_H
#define SPINDLE_FANOUT_H

#include <stddef.h>
#include <spindle/client.h>

/* One fetch. name labels the fetch's task (may be NULL). req is sent as
 * sp_http_client_request sends it, the body always read whole (req.stream is
 * ignored); its timeouts are the per-backend ones (total_timeout bounds the
 * whole fetch, connect_timeout and first_byte_timeout its phases). */
typedef struct sp_fanout_req {
    const char *name;
    sp_http_request req;
} sp_fanout_req;

/* The outcome of one fetch. err is 0 when a response arrived, whatever its
 * status (a 503 is an answer: check status); otherwise the client's error
 * (-ECONNREFUSED, -ETIMEDOUT for a per-backend timeout, -EPROTO, ...),
 * -ETIMEDOUT when the overall deadline cut the fetch short, or -ECANCELED when
 * the caller was cancelled; msg then says what happened ("connection refused
 * by 127.0.0.1:9", "no response within the 0.5 s deadline"). */
typedef struct sp_fanout_result {
    int err;
    int status;                /* the response's status; 0 without one */
    sp_str body;               /* the whole body, a view into resp */
    sp_http_client_resp *resp; /* headers and body; freed by sp_fanout_results_free */
    double elapsed;            /* seconds from the start to the answer or the failure */
    char msg[sizeof(((sp_http_client_error *)0)->msg)];
} sp_fanout_result;

/* Runs reqs[0..n) in parallel on cl, one task each, and suspends until every
 * fetch has ended or `deadline` seconds have passed (negative: no overall
 * deadline; 0 cancels them at the next loop iteration), when the fetches
 * still running are cancelled and waited for. results[i] receives fetch i's
 * outcome. Returns 0 once every fetch has one (answers, failures and fetches
 * cut by the deadline alike); -ECANCELED if the caller was cancelled (every
 * fetch then cancelled and finished; the results hold what arrived before);
 * -EINVAL for a NULL client, or NULL reqs or results with n > 0; -ENOMEM;
 * -EPERM outside a task (a client of another loop fails each fetch with
 * -EPERM instead). reqs and what they point to are
 * borrowed until it returns. Whatever it returns, results[0..n) are filled
 * (when results is not NULL) and must be released with
 * sp_fanout_results_free, which gives their connections back to cl's pool.
 * Suspends. */
int sp_fanout_fetch(sp_http_client *cl, const sp_fanout_req *reqs, size_t n, double deadline,
                    sp_fanout_result *results);

/* Frees the responses held by results[0..n) and clears them. Never
 * suspends. */
void sp_fanout_results_free(sp_fanout_result *results, size_t n);

#endif
