/* Tutorial 2, async/await tools: an async context manager, an async iterator,
 * wait_for, shield and the timeout scope. A C port of
 * apps/python/02_async_await.py that prints the same lines. */
#include <errno.h>

#include "tutorial.h"

/* ---- 1. An async context manager -------------------------------------------
 * `async with Connection(host) as conn:` is a pair of functions that may
 * suspend: conn_open (__aenter__) and conn_close (__aexit__). C has no `with`,
 * so the caller writes the pairing itself: once open succeeded, close runs on
 * every path out of the body, including an error or a cancellation. */

typedef struct conn {
    const char *host;
    const char *error; /* why the last query failed, like sqlite3_errmsg() */
} conn;

/* __aenter__: nothing to release if it fails. */
static int conn_open(conn *c, const char *host) {
    *c = (conn){.host = host};
    say("connecting to %s...", host);
    int rc = sp_sleep(scaled(0.5));
    if (rc != 0)
        return rc;
    say("connected");
    return 0;
}

/* __aexit__: takes how the body ended and returns it, so the body's error
 * (or cancellation) goes on after the release, as when __aexit__ returns
 * False. The sleep works even when the body was cancelled: a cancellation is
 * delivered once, and cleanup may suspend again. */
static int conn_close(conn *c, int body_rc) {
    say("closing %s...", c->host);
    int rc = sp_sleep(scaled(0.2));
    if (rc == 0)
        say("closed");
    return body_rc != 0 ? body_rc : rc;
}

static int conn_query(conn *c, const char *sql, double seconds, int *rows) {
    say("query: %s", sql);
    int rc = sp_sleep(scaled(seconds));
    if (rc != 0)
        return rc;
    if (strncmp(sql, "SELECT ", 7) != 0) {
        c->error = "syntax error in query";
        return -EINVAL; /* Python raises ValueError */
    }
    *rows = 3;
    return 0;
}

static int use_connection(void) {
    conn c;
    int rc = conn_open(&c, "db.example");
    if (rc != 0)
        return rc;
    int rows;
    rc = conn_query(&c, "SELECT * FROM users", 0.3, &rows);
    if (rc == 0)
        say("%d rows", rows);
    return conn_close(&c, rc);
}

static int failing_body(void) {
    conn c;
    int rc = conn_open(&c, "db.example");
    if (rc != 0)
        return rc;
    int rows;
    /* The body fails; conn_close still runs, then hands the error on. */
    rc = conn_close(&c, conn_query(&c, "SELEC oops", 0.3, &rows));
    if (rc != -EINVAL)
        return rc == 0 ? report(-EPROTO, "the bad query succeeded") : rc;
    say("body failed: %s", c.error); /* `except ValueError as e:` */
    return 0;
}

static int long_query(void *arg, void **result) {
    (void)arg, (void)result;
    conn c;
    int rc = conn_open(&c, "db.example");
    if (rc != 0)
        return rc;
    int rows;
    /* Cancelled while querying: -ECANCELED passes through conn_close, which
     * still closes, and ends the task as cancelled. */
    return conn_close(&c, conn_query(&c, "SELECT slowly", 5.0, &rows));
}

static int cancelled_body(void) {
    sp_task *t;
    int rc = sp_spawn(&t, "query", long_query, NULL);
    if (rc != 0)
        return report(rc, "sp_spawn");
    rc = sp_sleep(scaled(1.0));
    if (rc == 0) {
        say("cancelling the query task");
        sp_task_cancel(t);
        /* `await task` reports the task's cancellation as -ECANCELED. */
        rc = sp_task_await(t, NULL);
        if (rc == -ECANCELED) {
            say("query task cancelled: %s", py_bool(sp_task_cancelled(t)));
            rc = 0;
        } else if (rc == 0) {
            rc = report(-EPROTO, "the query task was not cancelled");
        }
    }
    if (rc != 0)
        cancel_all(&t, 1);
    else
        sp_task_release(t);
    return rc;
}

/* ---- 2. An async iterator -------------------------------------------------------
 * `async for i in AsyncRange(3, 0.5)`: __anext__ is a function that may
 * suspend and returns -ENOENT at the end, where Python raises
 * StopAsyncIteration. */

typedef struct arange {
    int i, n;
    double delay;
} arange;

static int arange_next(arange *r, int *value) {
    if (r->i == r->n)
        return -ENOENT;
    int rc = sp_sleep(scaled(r->delay));
    if (rc != 0)
        return rc;
    *value = r->i++;
    return 0;
}

static int iterate(void) {
    double start = sp_time();
    arange r = {.n = 3, .delay = 0.5};
    int i, rc;
    while ((rc = arange_next(&r, &i)) == 0)
        say("got %d at %.1f s", i, elapsed(start));
    return rc == -ENOENT ? 0 : rc;
}

/* ---- 3. wait_for -------------------------------------------------------------------
 * sp_wait_for waits for a task at most so long; on timeout it cancels the
 * task, waits until it has finished cleaning up, and returns -ETIMEDOUT
 * (asyncio.wait_for raising TimeoutError). asyncio.wait_for wraps a coroutine
 * in a task for you; in C the task is spawned explicitly. */

typedef struct slow_op {
    double seconds;
    char result[40];
} slow_op;

static int slow_operation(void *arg, void **result) {
    slow_op *op = arg;
    int rc = sp_sleep(scaled(op->seconds));
    if (rc == -ECANCELED)
        say("  slow_operation(%.1f) cancelled", op->seconds);
    if (rc != 0)
        return rc; /* re-raise: the task ends cancelled */
    snprintf(op->result, sizeof(op->result), "finished after %.1f s", op->seconds);
    *result = op->result;
    return 0;
}

/* Spawns slow_operation(op) and waits for it at most `timeout` seconds. */
static int run_with_timeout(slow_op *op, double timeout, void **result) {
    sp_task *t;
    int rc = sp_spawn(&t, "slow_operation", slow_operation, op);
    if (rc != 0)
        return report(rc, "sp_spawn");
    rc = sp_wait_for(t, scaled(timeout), result);
    sp_task_release(t); /* finished on every return of sp_wait_for */
    return rc;
}

static int wait_for_demo(void) {
    double start = sp_time();
    slow_op too_slow = {.seconds = 2.0}, quick = {.seconds = 0.5};
    void *res;
    int rc = run_with_timeout(&too_slow, 1.0, &res);
    if (rc != -ETIMEDOUT)
        return rc == 0 ? report(-EPROTO, "the slow operation did not time out") : rc;
    say("wait_for: timed out after %.1f s", elapsed(start));
    rc = run_with_timeout(&quick, 1.0, &res);
    if (rc != 0)
        return rc;
    say("wait_for: %s", (const char *)res);
    return 0;
}

/* ---- 4. shield ---------------------------------------------------------------------
 * sp_shield waits for a task, but a cancellation of the waiter (here by a
 * timeout scope, see section 5) stops only the wait: the task goes on. */

static int save_to_disk(void *arg, void **result) {
    (void)arg;
    say("  saving...");
    int rc = sp_sleep(scaled(1.0));
    if (rc != 0)
        return rc;
    say("  saved");
    *result = "saved 12 records";
    return 0;
}

static int shield_demo(void) {
    double start = sp_time();
    sp_task *save;
    int rc = sp_spawn(&save, "save", save_to_disk, NULL);
    if (rc != 0)
        return report(rc, "sp_spawn");
    /* async with asyncio.timeout(0.5): await asyncio.shield(save) */
    sp_timeout tm;
    rc = sp_timeout_enter(&tm, scaled(0.5));
    if (rc == 0)
        rc = sp_timeout_exit(&tm, sp_shield(save, NULL));
    if (rc == -ETIMEDOUT) {
        say("gave up waiting after %.1f s; save done: %s", elapsed(start),
            py_bool(sp_task_done(save)));
        void *res;
        rc = sp_task_await(save, &res);
        if (rc == 0)
            say("the save went on: %s at %.1f s", (const char *)res, elapsed(start));
    } else if (rc == 0) {
        rc = report(-EPROTO, "the shielded wait did not time out");
    }
    if (rc != 0)
        cancel_all(&save, 1);
    else
        sp_task_release(save);
    return rc;
}

/* ---- 5. The timeout scope ----------------------------------------------------------
 * sp_timeout_enter/sp_timeout_exit bracket any stretch of code, like
 * `async with asyncio.timeout(3)`: when the deadline passes, the suspended
 * call returns -ECANCELED, and sp_timeout_exit turns that into -ETIMEDOUT. */

static int timeout_demo(void) {
    double start = sp_time();
    sp_timeout tm;
    int rc = sp_timeout_enter(&tm, scaled(3.0));
    if (rc != 0)
        return report(rc, "sp_timeout_enter");
    for (int step = 1; step <= 3 && rc == 0; step++) {
        rc = sp_sleep(scaled(2.0));
        if (rc == 0)
            say("step %d done", step);
    }
    rc = sp_timeout_exit(&tm, rc);
    if (rc != -ETIMEDOUT)
        return rc == 0 ? report(-EPROTO, "the steps did not time out") : rc;
    say("timeout: expired %s after %.1f s", py_bool(sp_timeout_expired(&tm)), elapsed(start));

    if ((rc = sp_timeout_enter(&tm, scaled(2.5))) != 0)
        return report(rc, "sp_timeout_enter");
    rc = sp_timeout_exit(&tm, sp_sleep(scaled(0.5)));
    if (rc != 0)
        return rc;
    say("in time: expired %s", py_bool(sp_timeout_expired(&tm)));
    return 0;
}

static int amain(void *arg, void **result) {
    (void)arg, (void)result;
    int rc;
    say("== 1. an async context manager ==");
    if ((rc = use_connection()) != 0 || (rc = failing_body()) != 0 || (rc = cancelled_body()) != 0)
        return rc;
    say("== 2. an async iterator ==");
    if ((rc = iterate()) != 0)
        return rc;
    say("== 3. wait_for ==");
    if ((rc = wait_for_demo()) != 0)
        return rc;
    say("== 4. shield ==");
    if ((rc = shield_demo()) != 0)
        return rc;
    say("== 5. the timeout scope ==");
    return timeout_demo();
}

int main(void) {
    return tut_main("02_async_await", amain);
}
