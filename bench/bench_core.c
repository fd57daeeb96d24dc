/* Core runtime benchmark: prints one `name value` line per figure.
 *   switch_ns       one raw fiber switch (ping-pong between two fibers)
 *   yield_ns        one sp_yield through the scheduler, two tasks alternating
 *   spawn_join_ns   spawn, run and await an empty task
 *   task_rss_bytes  resident memory per task, 100,000 tasks sleeping at once
 * Usage: bench_core [tasks]   (default 100000) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <spindle/spindle.h>

#include "fiber.h"

static double now_s(void) {
    return sp_time();
}

static sp_fiber main_f, ping_f;
static long switches_left;

static void ping_entry(void *arg) {
    (void)arg;
    for (;;)
        sp_fiber_switch(&ping_f, &main_f);
}

static double bench_switch(void) {
    sp_stack_pool *pool;
    if (sp_stack_pool_create(&pool, 64 * 1024) != 0)
        return -1;
    sp_fiber_init_main(&main_f);
    if (sp_fiber_create(&ping_f, pool, ping_entry, NULL) != 0)
        return -1;
    const long n = 20 * 1000 * 1000;
    switches_left = n;
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        sp_fiber_switch(&main_f, &ping_f);
    double dt = now_s() - t0;
    /* ping is parked forever; its stack goes with the pool. */
    sp_stack_pool_destroy(pool);
    return dt * 1e9 / (double)(2 * n);
}

static int yielder(void *arg, void **result) {
    (void)result;
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++)
        sp_yield();
    return 0;
}

static int empty(void *arg, void **result) {
    (void)arg, (void)result;
    return 0;
}

static int sleeper(void *arg, void **result) {
    (void)arg, (void)result;
    return sp_sleep(3600);
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static long ntasks = 100000;

static int bench_main(void *arg, void **result) {
    (void)arg, (void)result;
    /* yield through the scheduler */
    const long ny = 2 * 1000 * 1000;
    sp_task *a, *b;
    sp_spawn(&a, NULL, yielder, (void *)(intptr_t)ny);
    sp_spawn(&b, NULL, yielder, (void *)(intptr_t)ny);
    double t0 = now_s();
    sp_task *ab[] = {a, b};
    sp_gather(ab, 2, 0, NULL, NULL);
    double dt = now_s() - t0;
    printf("yield_ns %.1f\n", dt * 1e9 / (double)(2 * ny));
    sp_task_release(a);
    sp_task_release(b);

    /* spawn + join */
    const long ns = 1000 * 1000;
    for (long i = 0; i < 1000; i++) { /* warm the stack pool */
        sp_task *t;
        sp_spawn(&t, NULL, empty, NULL);
        sp_task_await(t, NULL);
        sp_task_release(t);
    }
    t0 = now_s();
    for (long i = 0; i < ns; i++) {
        sp_task *t;
        sp_spawn(&t, NULL, empty, NULL);
        sp_task_await(t, NULL);
        sp_task_release(t);
    }
    dt = now_s() - t0;
    printf("spawn_join_ns %.1f\n", dt * 1e9 / (double)ns);

    /* memory per sleeping task */
    sp_task **ts = calloc((size_t)ntasks, sizeof(*ts));
    if (!ts)
        return -ENOMEM;
    long before = rss_bytes();
    for (long i = 0; i < ntasks; i++) {
        int rc = sp_spawn(&ts[i], NULL, sleeper, NULL);
        if (rc != 0) {
            fprintf(stderr, "spawn %ld failed: %d\n", i, rc);
            return rc;
        }
    }
    sp_sleep(0.05); /* every task starts and parks in its sleep */
    long after = rss_bytes();
    printf("task_rss_bytes %.0f\n", (double)(after - before) / (double)ntasks);
    for (long i = 0; i < ntasks; i++)
        sp_task_cancel(ts[i]);
    sp_gather(ts, (size_t)ntasks, SP_GATHER_RETURN_EXCEPTIONS, NULL, NULL);
    for (long i = 0; i < ntasks; i++)
        sp_task_release(ts[i]);
    free(ts);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1)
        ntasks = atol(argv[1]);
    printf("switch_ns %.2f\n", bench_switch());
    int rc = sp_run(bench_main, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "bench_core: %d\n", rc);
        return 1;
    }
    return 0;
}
