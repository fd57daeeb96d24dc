/* Tutorial 4, gathering: gather with and without return_exceptions, gather
 * versus a task group, parallel calls under a deadline, rate limiting,
 * to_thread and a process pool. A C port of
 * apps/python/04_async_gathering.py that prints the same lines; the main
 * program of the README's quick start. */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "tutorial.h"

/* ---- 1. gather -----------------------------------------------------------------
 * sp_gather waits for a set of tasks. Without SP_GATHER_RETURN_EXCEPTIONS it
 * returns the first error as soon as a task fails, and the other tasks keep
 * running; with it, it waits for all and reports each outcome. */

enum { NSOURCES = 3 };

typedef struct source {
    const char *name;
    double seconds;
    bool fail;
    char reply[32];
} source;

static void sources_init(source s[NSOURCES]) {
    s[0] = (source){.name = "users", .seconds = 0.5};
    s[1] = (source){.name = "orders", .seconds = 1.0, .fail = true};
    s[2] = (source){.name = "stock", .seconds = 1.5};
}

static int fetch(void *arg, void **result) {
    source *s = arg;
    int rc = sp_sleep(scaled(s->seconds));
    if (rc == -ECANCELED)
        say("  %s: cancelled", s->name);
    if (rc != 0)
        return rc;
    if (s->fail) /* raise ConnectionError(...): an errno and a message */
        return sp_fail(-ECONNREFUSED, "%s: connection refused", s->name);
    snprintf(s->reply, sizeof(s->reply), "%s: 200 OK", s->name);
    *result = s->reply;
    return 0;
}

static int spawn_sources(source s[NSOURCES], sp_task *tasks[NSOURCES]) {
    for (int i = 0; i < NSOURCES; i++) {
        int rc = sp_spawn(&tasks[i], s[i].name, fetch, &s[i]);
        if (rc != 0) {
            cancel_all(tasks, NSOURCES);
            return report(rc, "sp_spawn");
        }
    }
    return 0;
}

/* The message of the first failed task: gather returns only the error code,
 * and the message stays with the task that failed. */
static const char *failure_message(sp_task *tasks[], size_t n) {
    for (size_t i = 0; i < n; i++) {
        const char *msg;
        if (sp_task_done(tasks[i]) && sp_task_error(tasks[i], &msg) != 0 && msg)
            return msg;
    }
    return "(no message)";
}

static int gather_first_error(void) {
    double start = sp_time();
    source src[NSOURCES];
    sources_init(src);
    sp_task *tasks[NSOURCES] = {NULL};
    int rc = spawn_sources(src, tasks);
    if (rc != 0)
        return rc;
    rc = sp_gather(tasks, NSOURCES, 0, NULL, NULL);
    if (rc == -ECONNREFUSED) {
        say("gather raised after %.1f s: %s", elapsed(start), failure_message(tasks, NSOURCES));
        say("the others keep running: stock done %s", py_bool(sp_task_done(tasks[2])));
        void *reply;
        if ((rc = sp_task_await(tasks[2], &reply)) == 0)
            say("%s at %.1f s", (const char *)reply, elapsed(start));
    } else if (rc == 0) {
        rc = report(-EPROTO, "gather did not fail");
    }
    cancel_all(tasks, NSOURCES);
    return rc;
}

static int gather_return_exceptions(void) {
    double start = sp_time();
    source src[NSOURCES];
    sources_init(src);
    sp_task *tasks[NSOURCES] = {NULL};
    int rc = spawn_sources(src, tasks);
    if (rc != 0)
        return rc;
    void *replies[NSOURCES];
    int errors[NSOURCES];
    rc = sp_gather(tasks, NSOURCES, SP_GATHER_RETURN_EXCEPTIONS, replies, errors);
    for (int i = 0; i < NSOURCES && rc == 0; i++) {
        if (errors[i] != 0)
            say("error: %s", failure_message(&tasks[i], 1));
        else
            say("%s", (const char *)replies[i]);
    }
    if (rc == 0)
        say("gather(return_exceptions=True) took %.1f s", elapsed(start));
    cancel_all(tasks, NSOURCES);
    return rc;
}

/* ---- 2. gather versus TaskGroup ---------------------------------------------------
 * A task group (asyncio.TaskGroup) owns its children: the first failure
 * cancels the others, and sp_taskgroup_wait returns only once all have
 * finished, with every error listed (Python's ExceptionGroup). */

static int taskgroup_demo(void) {
    double start = sp_time();
    source src[NSOURCES];
    sources_init(src);
    sp_taskgroup g;
    int rc = sp_taskgroup_init(&g); /* async with asyncio.TaskGroup() as tg: */
    if (rc != 0)
        return report(rc, "sp_taskgroup_init");
    for (int i = 0; i < NSOURCES && rc == 0; i++)
        rc = sp_taskgroup_spawn(&g, NULL, src[i].name, fetch, &src[i]);
    /* The end of the block; a spawn failure is the body's error. */
    rc = sp_taskgroup_wait(&g, rc);
    if (rc == -ECONNREFUSED) {
        size_t n;
        const sp_tg_error *errs = sp_taskgroup_errors(&g, &n);
        for (size_t i = 0; i < n; i++)
            say("task group failed after %.1f s: %s", elapsed(start),
                errs[i].msg ? errs[i].msg : strerror(-errs[i].err));
        rc = 0;
    } else if (rc == 0) {
        rc = report(-EPROTO, "the task group did not fail");
    }
    sp_taskgroup_fini(&g);
    return rc;
}

/* ---- 3. Parallel API calls under a deadline --------------------------------------
 * Simulated upstreams answer after their latency. Called in parallel, they
 * take as long as the slowest, not the sum. One deadline (sp_timeout, i.e.
 * asyncio.timeout) covers the whole gather: when it passes, the gather is
 * cancelled, which cancels the calls still running. */

enum { NUPSTREAMS = 4 };

typedef struct upstream {
    const char *name;
    double latency;
    char reply[32];
} upstream;

static int call_api(void *arg, void **result) {
    upstream *u = arg;
    int rc = sp_sleep(scaled(u->latency));
    if (rc == -ECANCELED)
        say("  %s: cancelled at the deadline", u->name);
    if (rc != 0)
        return rc;
    snprintf(u->reply, sizeof(u->reply), "%s: 200 OK", u->name);
    *result = u->reply;
    return 0;
}

static int api_calls(int count, double deadline) {
    double start = sp_time();
    upstream ups[NUPSTREAMS] = {
        {.name = "weather", .latency = 0.8},
        {.name = "news", .latency = 1.2},
        {.name = "stocks", .latency = 0.5},
        {.name = "sports", .latency = 2.5},
    };
    sp_task *tasks[NUPSTREAMS] = {NULL};
    double sum = 0;
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        rc = sp_spawn(&tasks[i], ups[i].name, call_api, &ups[i]);
        sum += ups[i].latency;
    }
    if (rc != 0) {
        cancel_all(tasks, NUPSTREAMS);
        return report(rc, "sp_spawn");
    }
    sp_timeout tm;
    if ((rc = sp_timeout_enter(&tm, scaled(deadline))) == 0)
        rc = sp_timeout_exit(&tm, sp_gather(tasks, (size_t)count, 0, NULL, NULL));
    if (rc == 0) {
        say("%d calls in %.1f s (one after another: %.1f s)", count, elapsed(start), sum);
    } else if (rc == -ETIMEDOUT) {
        say("deadline of %.1f s hit after %.1f s", deadline, elapsed(start));
        rc = 0;
    }
    for (int i = 0; i < count && rc == 0; i++) {
        void *reply;
        if (sp_task_cancelled(tasks[i]))
            say("%s: cancelled", sp_task_name(tasks[i]));
        else if ((rc = sp_task_result(tasks[i], &reply)) == 0)
            say("%s", (const char *)reply);
    }
    cancel_all(tasks, NUPSTREAMS);
    return rc;
}

/* ---- 4. Rate limiting: at most 3 calls per 2 s ------------------------------------
 * A token bucket (sp_ratelimit) holds 3 tokens and refills at 1.5 per second:
 * three calls go at once, then one every 2/3 s. Waiting callers are served in
 * the order they came. */

enum { NCALLS = 6 };

typedef struct limited {
    sp_ratelimit *bucket;
    int n;
    double start;
} limited;

static int limited_call(void *arg, void **result) {
    (void)result;
    limited *l = arg;
    int rc = sp_ratelimit_acquire(l->bucket, 1, -1); /* suspends until a token is ours */
    if (rc != 0)
        return rc;
    say("call %d starts at %.1f s", l->n, elapsed(l->start));
    return 0;
}

static int rate_limit_demo(void) {
    sp_ratelimit bucket;
    /* A rate is per second: scaling time up divides it. */
    int rc = sp_ratelimit_init(&bucket, 1.5 / tut_scale, 3);
    if (rc != 0)
        return report(rc, "sp_ratelimit_init");
    limited calls[NCALLS];
    sp_task *tasks[NCALLS] = {NULL};
    double start = sp_time();
    for (int i = 0; i < NCALLS && rc == 0; i++) {
        calls[i] = (limited){.bucket = &bucket, .n = i + 1, .start = start};
        rc = sp_spawn(&tasks[i], "limited_call", limited_call, &calls[i]);
    }
    if (rc != 0)
        report(rc, "sp_spawn");
    else
        rc = sp_gather(tasks, NCALLS, 0, NULL, NULL);
    cancel_all(tasks, NCALLS);
    int frc = sp_ratelimit_fini(&bucket);
    return rc != 0 ? rc : frc;
}

/* ---- 5. to_thread: blocking code off the loop -------------------------------------
 * sp_to_thread runs an ordinary blocking function on the loop's thread pool
 * and suspends only the calling task: the ticker keeps ticking meanwhile. */

typedef struct read_job {
    const char *path;
    double seconds;
    char text[64];
} read_job;

/* Runs on a pool thread: it may block, and must not call into the loop. */
static int blocking_read(void *arg, void **result) {
    read_job *job = arg;
    usleep((useconds_t)(job->seconds * 1e6)); /* blocks its thread, not the loop */
    snprintf(job->text, sizeof(job->text), "%s: 4096 bytes", job->path);
    *result = job->text;
    return 0;
}

/* If the caller is cancelled while blocking_read runs, the thread cannot be
 * stopped: the job is handed over to this function, called once it is over. */
static void discard_read(void *arg, void *result) {
    (void)result; /* points into arg */
    free(arg);
}

static int ticker(void *arg, void **result) {
    (void)arg, (void)result;
    for (int i = 1; i <= 3; i++) {
        int rc = sp_sleep(scaled(0.3));
        if (rc != 0)
            return rc;
        say("  tick %d: the loop is free", i);
    }
    return 0;
}

static int to_thread_demo(void) {
    double start = sp_time();
    sp_task *tick;
    int rc = sp_spawn(&tick, "ticker", ticker, NULL);
    if (rc != 0)
        return report(rc, "sp_spawn");
    /* On the heap: the thread may outlive this frame if we are cancelled. */
    read_job *job = calloc(1, sizeof(*job));
    if (!job) {
        cancel_all(&tick, 1);
        return report(-ENOMEM, "calloc");
    }
    job->path = "/var/log/big.log";
    job->seconds = scaled(2.0);
    void *text;
    rc = sp_to_thread(blocking_read, job, discard_read, &text);
    if (rc == 0)
        say("to_thread returned after %.1f s: %s", elapsed(start), (const char *)text);
    if (rc != -ECANCELED) /* on -ECANCELED the job belongs to discard_read */
        free(job);
    if (rc == 0)
        rc = sp_task_await(tick, NULL);
    cancel_all(&tick, 1);
    return rc;
}

/* ---- 6. A process pool for CPU-bound work -----------------------------------------
 * Threads share the loop's process; CPU-bound work goes to worker processes
 * (run_in_executor with a ProcessPoolExecutor). Python pickles the argument
 * and the result; here they travel as bytes. sp_procpool_run suspends its
 * caller, so one task per call makes the calls run in parallel. */

static sp_procpool *pool; /* created by main() before any thread exists */

enum { NLIMITS = 4 };

/* Runs in a worker process: in is a uint64_t limit, out the uint64_t count of
 * primes below it, by trial division. */
static int count_primes(const void *in, size_t in_len, void **out, size_t *out_len) {
    uint64_t limit, count = 0;
    if (in_len != sizeof(limit))
        return -EINVAL;
    memcpy(&limit, in, sizeof(limit));
    for (uint64_t n = 2; n < limit; n++) {
        uint64_t d = 2;
        while (d * d <= n && n % d != 0)
            d++;
        count += d * d > n;
    }
    uint64_t *reply = malloc(sizeof(*reply));
    if (!reply)
        return -ENOMEM;
    *reply = count;
    *out = reply; /* the worker frees it once sent */
    *out_len = sizeof(*reply);
    return 0;
}

typedef struct prime_job {
    uint64_t limit;
    uint64_t count;
} prime_job;

static int count_in_worker(void *arg, void **result) {
    (void)result;
    prime_job *job = arg;
    void *out;
    size_t len;
    int rc = sp_procpool_run(pool, count_primes, &job->limit, sizeof(job->limit), &out, &len);
    if (rc != 0)
        return rc;
    if (len == sizeof(job->count))
        memcpy(&job->count, out, len);
    else
        rc = -EPROTO;
    free(out); /* the reply is ours */
    return rc;
}

static int process_pool_demo(void) {
    prime_job jobs[NLIMITS];
    sp_task *tasks[NLIMITS] = {NULL};
    int rc = 0;
    for (int i = 0; i < NLIMITS && rc == 0; i++) {
        jobs[i] = (prime_job){.limit = 20000 * (uint64_t)(i + 1)};
        rc = sp_spawn(&tasks[i], "count_primes", count_in_worker, &jobs[i]);
    }
    if (rc != 0)
        report(rc, "sp_spawn");
    else
        rc = sp_gather(tasks, NLIMITS, 0, NULL, NULL);
    for (int i = 0; i < NLIMITS && rc == 0; i++)
        say("primes below %llu: %llu", (unsigned long long)jobs[i].limit,
            (unsigned long long)jobs[i].count);
    cancel_all(tasks, NLIMITS);
    return rc;
}

static int amain(void *arg, void **result) {
    (void)arg, (void)result;
    int rc;
    say("== 1. gather ==");
    if ((rc = gather_first_error()) != 0 || (rc = gather_return_exceptions()) != 0)
        return rc;
    say("== 2. gather versus TaskGroup ==");
    if ((rc = taskgroup_demo()) != 0)
        return rc;
    say("== 3. parallel API calls under a deadline ==");
    if ((rc = api_calls(3, 2.0)) != 0 || (rc = api_calls(4, 1.5)) != 0)
        return rc;
    say("== 4. rate limiting: at most 3 calls per 2 s ==");
    if ((rc = rate_limit_demo()) != 0)
        return rc;
    say("== 5. to_thread: blocking code off the loop ==");
    if ((rc = to_thread_demo()) != 0)
        return rc;
    say("== 6. a process pool for CPU-bound work ==");
    return process_pool_demo();
}

int main(void) {
    /* The pool forks its helper process here, while the program has a single
     * thread: a fork copies only the calling thread, so pools come first. */
    int rc = sp_procpool_create(&pool, NLIMITS);
    if (rc != 0) {
        fprintf(stderr, "04_async_gathering: cannot start the process pool: %s\n", strerror(-rc));
        return 1;
    }
    int status = tut_main("04_async_gathering", amain);
    sp_procpool_destroy(pool);
    return status;
}
