/* Process pools: many jobs in parallel over 3 workers with correct results,
 * a worker that aborts fails only its own job and is replaced, an 8 MiB round
 * trip, cancellation of a waiting job (never runs) and of a sent one (returns
 * at once, the worker stays busy until its reply is dropped), size limits,
 * fn's errors, destroy with callers waiting, a pool serving two loops in
 * turn, no zombie or stray worker after destroy, a worker killed while idle,
 * and an idle pool not hiding a deadlock. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_test.h"

/* ---- Worker functions (run in the worker processes) ---- */

typedef struct reply {
    pid_t pid;
    int calls; /* calls this worker has served, this one included */
    uint64_t value;
} reply;

static int calls_served;

static int reply_with(uint64_t value, void **out, size_t *out_len) {
    reply *r = malloc(sizeof(*r));
    if (!r)
        return -ENOMEM;
    *r = (reply){getpid(), ++calls_served, value};
    *out = r;
    *out_len = sizeof(*r);
    return 0;
}

/* in: {sleep ms, n}; replies with n squared. */
static int square_slowly(const void *in, size_t in_len, void **out, size_t *out_len) {
    uint32_t a[2];
    if (in_len != sizeof(a))
        return -EINVAL;
    memcpy(a, in, sizeof(a));
    usleep(a[0] * 1000);
    return reply_with((uint64_t)a[1] * a[1], out, out_len);
}

static int crash(const void *in, size_t in_len, void **out, size_t *out_len) {
    (void)in, (void)in_len, (void)out, (void)out_len;
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    abort();
}

/* Replies with every byte of the input plus one. */
static int bytes_plus_one(const void *in, size_t in_len, void **out, size_t *out_len) {
    unsigned char *o = malloc(in_len);
    if (!o)
        return -ENOMEM;
    for (size_t i = 0; i < in_len; i++)
        o[i] = (unsigned char)(((const unsigned char *)in)[i] + 1);
    *out = o;
    *out_len = in_len;
    return 0;
}

static int too_big(const void *in, size_t in_len, void **out, size_t *out_len) {
    (void)in, (void)in_len;
    *out = malloc(SP_PROCPOOL_MAX_MSG + 1); /* never touched: no pages used */
    *out_len = SP_PROCPOOL_MAX_MSG + 1;
    return *out ? 0 : -ENOMEM;
}

static int fail_enoent(const void *in, size_t in_len, void **out, size_t *out_len) {
    (void)in, (void)in_len, (void)out, (void)out_len;
    return -ENOENT;
}

/* ---- Helpers ---- */

typedef struct call {
    sp_procpool *pool;
    sp_proc_fn *fn;
    uint32_t in[2];
    int rc;
    reply out;
    double done_at;
} call;

static int run_call(void *arg, void **result) {
    (void)result;
    call *c = arg;
    void *out = NULL;
    size_t len = 0;
    c->rc = sp_procpool_run(c->pool, c->fn, c->in, sizeof(c->in), &out, &len);
    c->done_at = sp_time();
    if (c->rc == 0) {
        assert_int_equal(len, sizeof(reply));
        memcpy(&c->out, out, sizeof(reply));
        free(out);
    }
    return c->rc;
}

static call square_call(sp_procpool *pool, uint32_t ms, uint32_t n) {
    return (call){.pool = pool, .fn = square_slowly, .in = {ms, n}};
}

/* ---- Parallel results ---- */

static int s_parallel(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 3), 0);
    enum { N = 60 };
    call calls[N];
    sp_task *tasks[N];
    double t0 = sp_time();
    for (uint32_t i = 0; i < N; i++) {
        calls[i] = square_call(pool, 20, i + 1000);
        sp_spawn(&tasks[i], NULL, run_call, &calls[i]);
    }
    pid_t pids[3] = {0};
    for (int i = 0; i < N; i++) {
        assert_int_equal(sp_task_await(tasks[i], NULL), 0);
        sp_task_release(tasks[i]);
        assert_int_equal(calls[i].out.value, (uint64_t)(i + 1000) * (i + 1000));
        for (int k = 0; k < 3; k++) {
            if (pids[k] == calls[i].out.pid)
                break;
            if (pids[k] == 0) {
                pids[k] = calls[i].out.pid;
                break;
            }
        }
    }
    double elapsed = sp_time() - t0;
    print_message("60 jobs of 20 ms on 3 workers: %.3f s\n", elapsed);
    /* 1.2 s of sleeping in one worker; 0.4 s spread over three. */
    assert_true(elapsed < 0.8);
    assert_true(pids[0] && pids[1] && pids[2]);
    sp_procpool_destroy(pool);
    return 0;
}

static void test_many_jobs_run_in_parallel_across_workers_with_right_results(void **state) {
    (void)state;
    run_main(s_parallel, NULL);
}

/* ---- A crashing worker ---- */

static int s_crash(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 2), 0);
    call ok[4], bad = {.pool = pool, .fn = crash};
    sp_task *tok[4], *tbad;
    for (uint32_t i = 0; i < 4; i++) {
        ok[i] = square_call(pool, 30, i);
        sp_spawn(&tok[i], NULL, run_call, &ok[i]);
    }
    sp_spawn(&tbad, NULL, run_call, &bad);
    const char *msg = NULL;
    sp_task_await(tbad, NULL);
    assert_int_equal(sp_task_error(tbad, &msg), -ECHILD);
    assert_non_null(msg);
    char want[64];
    snprintf(want, sizeof(want), "worker process died (signal %d)", SIGABRT);
    assert_string_equal(msg, want);
    sp_task_release(tbad);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sp_task_await(tok[i], NULL), 0);
        assert_int_equal(ok[i].out.value, (uint64_t)i * i);
        sp_task_release(tok[i]);
    }
    /* The pool is whole again: two workers, one of them new. */
    call after[2] = {square_call(pool, 50, 5), square_call(pool, 50, 6)};
    sp_task *ta[2];
    for (int i = 0; i < 2; i++)
        sp_spawn(&ta[i], NULL, run_call, &after[i]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sp_task_await(ta[i], NULL), 0);
        sp_task_release(ta[i]);
    }
    assert_int_equal(after[0].out.value, 25);
    assert_int_equal(after[1].out.value, 36);
    assert_int_not_equal(after[0].out.pid, after[1].out.pid);
    bool fresh = false;
    for (int k = 0; k < 2; k++) {
        bool seen = false;
        for (int i = 0; i < 4; i++)
            seen |= ok[i].out.pid == after[k].out.pid;
        fresh |= !seen;
    }
    assert_true(fresh);
    sp_procpool_destroy(pool);
    return 0;
}

static void test_crashing_worker_fails_only_its_job_and_is_replaced(void **state) {
    (void)state;
    run_main(s_crash, NULL);
}

/* ---- Large payloads and limits ---- */

static int s_large(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 2), 0);
    size_t len = 8 << 20;
    unsigned char *in = malloc(len);
    for (size_t i = 0; i < len; i++)
        in[i] = (unsigned char)(i * 7);
    void *out = NULL;
    size_t out_len = 0;
    assert_int_equal(sp_procpool_run(pool, bytes_plus_one, in, len, &out, &out_len), 0);
    assert_int_equal(out_len, len);
    const unsigned char *o = out;
    for (size_t i = 0; i < len; i++)
        if (o[i] != (unsigned char)(i * 7 + 1))
            fail_msg("byte %zu differs", i);
    free(out);
    /* Empty in, empty out. */
    assert_int_equal(sp_procpool_run(pool, bytes_plus_one, NULL, 0, &out, &out_len), 0);
    assert_null(out);
    assert_int_equal(out_len, 0);
    free(in);

    /* Limits, both ways; the pool is fine afterwards. */
    unsigned char *huge = malloc(SP_PROCPOOL_MAX_MSG + 1); /* never touched */
    assert_non_null(huge);
    assert_int_equal(
        sp_procpool_run(pool, bytes_plus_one, huge, SP_PROCPOOL_MAX_MSG + 1, &out, &out_len),
        -EMSGSIZE);
    free(huge);
    assert_int_equal(sp_procpool_run(pool, too_big, "x", 1, &out, &out_len), -EMSGSIZE);
    assert_null(out);
    assert_int_equal(sp_procpool_run(pool, fail_enoent, "x", 1, &out, &out_len), -ENOENT);
    assert_int_equal(sp_procpool_run(pool, bytes_plus_one, "a", 1, &out, &out_len), 0);
    assert_memory_equal(out, "b", 1);
    free(out);

    assert_int_equal(sp_procpool_run(pool, NULL, "a", 1, &out, &out_len), -EINVAL);
    assert_int_equal(sp_procpool_run(pool, bytes_plus_one, NULL, 1, &out, &out_len), -EINVAL);
    sp_procpool_destroy(pool);
    return 0;
}

static void test_8mib_round_trip_limits_and_fn_errors(void **state) {
    (void)state;
    run_main(s_large, NULL);
}

/* ---- Cancellation ---- */

static int s_cancel_sent(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 1), 0);
    call slow = square_call(pool, 300, 3);
    sp_task *t;
    double t0 = sp_time();
    sp_spawn(&t, NULL, run_call, &slow);
    sp_sleep(0.1);
    double tc = sp_time();
    sp_task_cancel(t);
    assert_int_equal(sp_task_await(t, NULL), -ECANCELED);
    assert_true(sp_time() - tc < 0.02);
    sp_task_release(t);
    /* The only worker is still busy with the abandoned job. */
    call next = square_call(pool, 0, 4);
    sp_spawn(&t, NULL, run_call, &next);
    assert_int_equal(sp_task_await(t, NULL), 0);
    sp_task_release(t);
    assert_int_equal(next.out.value, 16);
    assert_true(next.done_at - t0 >= 0.3);
    /* Its second call: the abandoned one did run, and its reply was dropped. */
    assert_int_equal(next.out.calls, 2);
    sp_procpool_destroy(pool);
    return 0;
}

static void test_cancel_sent_job_returns_at_once_and_worker_reply_is_dropped(void **state) {
    (void)state;
    run_main(s_cancel_sent, NULL);
}

static int s_cancel_waiting(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 1), 0);
    call first = square_call(pool, 100, 1), second = square_call(pool, 0, 2),
         third = square_call(pool, 0, 3);
    sp_task *t1, *t2, *t3;
    sp_spawn(&t1, NULL, run_call, &first);
    sp_spawn(&t2, NULL, run_call, &second);
    sp_spawn(&t3, NULL, run_call, &third);
    sp_sleep(0.03);
    double tc = sp_time();
    sp_task_cancel(t2);
    assert_int_equal(sp_task_await(t2, NULL), -ECANCELED);
    assert_true(sp_time() - tc < 0.02);
    assert_int_equal(sp_task_await(t1, NULL), 0);
    assert_int_equal(sp_task_await(t3, NULL), 0);
    /* The worker served the first and third calls only, in that order. */
    assert_int_equal(first.out.calls, 1);
    assert_int_equal(third.out.calls, 2);
    assert_int_equal(third.out.value, 9);
    sp_task_release(t1);
    sp_task_release(t2);
    sp_task_release(t3);
    sp_procpool_destroy(pool);
    return 0;
}

static void test_cancel_waiting_job_removes_it_and_keeps_fifo_order(void **state) {
    (void)state;
    run_main(s_cancel_waiting, NULL);
}

static int count_calls(const void *in, size_t in_len, void **out, size_t *out_len) {
    (void)in, (void)in_len;
    return reply_with(0, out, out_len);
}

/* Counts the call only if the whole input arrived intact. */
static int count_if_all_x(const void *in, size_t in_len, void **out, size_t *out_len) {
    const unsigned char *p = in;
    for (size_t i = 0; i < in_len; i++)
        if (p[i] != 'x')
            return -EINVAL;
    return in_len == 8 << 20 ? reply_with(in_len, out, out_len) : -EINVAL;
}

/* Cancelled while its 8 MiB request is half written: the rest is sent from
 * a copy, since the caller frees its buffer at once. */
static int run_big_then_free(void *arg, void **result) {
    (void)result;
    sp_procpool *pool = arg;
    size_t len = 8 << 20;
    unsigned char *in = malloc(len);
    memset(in, 'x', len);
    void *out = NULL;
    size_t out_len;
    int rc = sp_procpool_run(pool, count_if_all_x, in, len, &out, &out_len);
    memset(in, 0, len);
    free(in);
    free(out);
    return rc;
}

static int s_cancel_half_sent(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 1), 0);
    /* Let the worker come up first, so the request goes out right away. */
    void *out;
    size_t len;
    assert_int_equal(sp_procpool_run(pool, count_calls, NULL, 0, &out, &len), 0);
    free(out);
    sp_task *t;
    sp_spawn(&t, NULL, run_big_then_free, pool);
    sp_yield();
    sp_task_cancel(t);
    assert_int_equal(sp_task_await(t, NULL), -ECANCELED);
    sp_task_release(t);
    assert_int_equal(sp_procpool_run(pool, count_calls, NULL, 0, &out, &len), 0);
    assert_int_equal(len, sizeof(reply));
    /* The worker got the whole abandoned request, intact, and served it. */
    assert_int_equal(((reply *)out)->calls, 3);
    free(out);
    sp_procpool_destroy(pool);
    return 0;
}

static void test_cancel_during_a_half_sent_request_sends_the_rest_from_a_copy(void **state) {
    (void)state;
    run_main(s_cancel_half_sent, NULL);
}

/* ---- Destroy ---- */

static int s_destroy_with_callers(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 1), 0);
    call a = square_call(pool, 200, 1), b = square_call(pool, 0, 2);
    sp_task *ta, *tb;
    sp_spawn(&ta, NULL, run_call, &a);
    sp_spawn(&tb, NULL, run_call, &b);
    sp_sleep(0.05);
    double t0 = sp_time();
    sp_procpool_destroy(pool);
    assert_true(sp_time() - t0 < 0.01);
    const char *msg;
    sp_task_await(ta, NULL);
    sp_task_await(tb, NULL);
    assert_int_equal(sp_task_error(ta, &msg), -EPIPE);
    assert_string_equal(msg, "process pool destroyed");
    assert_int_equal(sp_task_error(tb, &msg), -EPIPE);
    sp_task_release(ta);
    sp_task_release(tb);
    return 0;
}

static void test_destroy_fails_waiting_callers_with_epipe(void **state) {
    (void)state;
    run_main(s_destroy_with_callers, NULL);
}

typedef struct shared_pool {
    sp_procpool *pool;
    pid_t pids[2];
    int round;
} shared_pool;

static int s_use_shared(void *arg, void **result) {
    (void)result;
    shared_pool *sp = arg;
    call c[2] = {square_call(sp->pool, 30, 7), square_call(sp->pool, 30, 8)};
    sp_task *t[2];
    for (int i = 0; i < 2; i++)
        sp_spawn(&t[i], NULL, run_call, &c[i]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sp_task_await(t[i], NULL), 0);
        sp_task_release(t[i]);
        sp->pids[i] = c[i].out.pid;
        assert_int_equal(c[i].out.calls, sp->round + 1);
    }
    assert_int_equal(c[0].out.value, 49);
    assert_int_equal(c[1].out.value, 64);
    sp->round++;
    return 0;
}

static void test_pool_made_before_run_serves_two_loops_then_leaves_no_process(void **state) {
    (void)state;
    shared_pool sp = {0};
    void *out;
    size_t len;
    assert_int_equal(sp_procpool_create(&sp.pool, -1), -EINVAL);
    assert_int_equal(sp_procpool_create(&sp.pool, 2), 0);
    assert_int_equal(sp_procpool_run(sp.pool, bytes_plus_one, "a", 1, &out, &len), -EPERM);
    run_main(s_use_shared, &sp);
    run_main(s_use_shared, &sp);
    sp_procpool_destroy(sp.pool);
    /* Nothing to reap: the zygote was never our child. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    /* The workers were killed and reaped by the zygote. */
    for (int i = 0; i < 2; i++) {
        int tries = 0;
        while (kill(sp.pids[i], 0) == 0 && tries++ < 200)
            usleep(10000);
        assert_int_equal(kill(sp.pids[i], 0), -1);
        assert_int_equal(errno, ESRCH);
    }
}

/* ---- Workers dying while idle, and the deadlock detector ---- */

static int s_idle_death(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 2), 0);
    call c[2] = {square_call(pool, 30, 2), square_call(pool, 30, 3)};
    sp_task *t[2];
    for (int i = 0; i < 2; i++)
        sp_spawn(&t[i], NULL, run_call, &c[i]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sp_task_await(t[i], NULL), 0);
        sp_task_release(t[i]);
    }
    pid_t killed = c[0].out.pid;
    assert_int_equal(kill(killed, SIGKILL), 0);
    sp_sleep(0.05);
    c[0] = square_call(pool, 30, 4);
    c[1] = square_call(pool, 30, 5);
    for (int i = 0; i < 2; i++)
        sp_spawn(&t[i], NULL, run_call, &c[i]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sp_task_await(t[i], NULL), 0);
        sp_task_release(t[i]);
        assert_int_not_equal(c[i].out.pid, killed);
    }
    assert_int_equal(c[0].out.value, 16);
    assert_int_equal(c[1].out.value, 25);
    sp_procpool_destroy(pool);
    return 0;
}

static void test_worker_killed_while_idle_is_replaced(void **state) {
    (void)state;
    run_main(s_idle_death, NULL);
}

static int s_deadlock(void *arg, void **result) {
    (void)arg, (void)result;
    sp_procpool *pool;
    assert_int_equal(sp_procpool_create(&pool, 1), 0);
    call c = square_call(pool, 0, 2);
    assert_int_equal(run_call(&c, NULL), 0);
    /* The idle pool's events stay armed but can't wake this. */
    sp_future never;
    sp_future_init(&never);
    int rc = sp_future_await(&never, NULL);
    sp_procpool_destroy(pool);
    return rc;
}

static void test_idle_pool_does_not_hide_a_deadlock(void **state) {
    (void)state;
    assert_int_equal(sp_run(s_deadlock, NULL, NULL), -ECANCELED);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_jobs_run_in_parallel_across_workers_with_right_results),
        cmocka_unit_test(test_crashing_worker_fails_only_its_job_and_is_replaced),
        cmocka_unit_test(test_8mib_round_trip_limits_and_fn_errors),
        cmocka_unit_test(test_cancel_sent_job_returns_at_once_and_worker_reply_is_dropped),
        cmocka_unit_test(test_cancel_waiting_job_removes_it_and_keeps_fifo_order),
        cmocka_unit_test(test_cancel_during_a_half_sent_request_sends_the_rest_from_a_copy),
        cmocka_unit_test(test_destroy_fails_waiting_callers_with_epipe),
        cmocka_unit_test(test_pool_made_before_run_serves_two_loops_then_leaves_no_process),
        cmocka_unit_test(test_worker_killed_while_idle_is_replaced),
        cmocka_unit_test(test_idle_pool_does_not_hide_a_deadlock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
