/* Queues: FIFO/LIFO/priority order, waiting getters and putters, cancellation
 * clean-ups, task_done/join, and shutdown. Order-sensitive scenarios log what
 * happens; each expected log is the output of the same program run under
 * CPython's asyncio (3.11, or 3.13 for shutdown, which 3.11 lacks). */
#include <errno.h>
#include <stdint.h>

#include "sp_test.h"

/* A task taking one item (getter) or putting one (putter), logging the
 * outcome as "<name>:<item>", "<name>:put<item>", ":cancelled", ":shutdown". */
typedef struct actor {
    sp_queue *q;
    const char *name;
    const char *item;
    int rc;
} actor;

static void log_outcome(const actor *a, int rc, const char *ok) {
    if (rc == 0)
        logf_("%s:%s", a->name, ok);
    else if (rc == -ECANCELED)
        logf_("%s:cancelled", a->name);
    else if (rc == -ESHUTDOWN)
        logf_("%s:shutdown", a->name);
    else
        logf_("%s:error %d", a->name, rc);
}

static int getter(void *arg, void **result) {
    (void)result;
    actor *a = arg;
    void *item = NULL;
    a->rc = sp_queue_get(a->q, &item);
    log_outcome(a, a->rc, a->rc == 0 ? (const char *)item : "");
    return 0;
}

static int putter(void *arg, void **result) {
    (void)result;
    actor *a = arg;
    a->rc = sp_queue_put(a->q, (void *)a->item);
    char ok[32];
    snprintf(ok, sizeof(ok), "put%s", a->item);
    log_outcome(a, a->rc, ok);
    return 0;
}

static int joiner(void *arg, void **result) {
    (void)result;
    int rc = sp_queue_join(arg);
    logf_(rc == 0 ? "joined" : "join:error %d", rc);
    return 0;
}

static const char *get_now(sp_queue *q) {
    void *item = NULL;
    assert_int_equal(sp_queue_get_nowait(q, &item), 0);
    return item;
}

/* ---- order and sizes (no waiting) ---- */

static void test_fifo_nowait_order_sizes_and_errors(void **state) {
    (void)state;
    sp_queue q;
    sp_queue_init(&q, 3);
    assert_true(sp_queue_empty(&q));
    assert_false(sp_queue_full(&q));
    assert_int_equal(sp_queue_maxsize(&q), 3);
    void *item = NULL;
    assert_int_equal(sp_queue_get_nowait(&q, &item), -EAGAIN);
    assert_int_equal(sp_queue_put_nowait(&q, "a"), 0);
    assert_int_equal(sp_queue_put_nowait(&q, "b"), 0);
    assert_int_equal(sp_queue_put_nowait(&q, "c"), 0);
    assert_true(sp_queue_full(&q));
    assert_int_equal(sp_queue_qsize(&q), 3);
    assert_int_equal(sp_queue_put_nowait(&q, "d"), -EAGAIN);
    assert_int_equal(sp_queue_qsize(&q), 3);
    assert_string_equal(get_now(&q), "a");
    assert_string_equal(get_now(&q), "b");
    assert_string_equal(get_now(&q), "c");
    assert_int_equal(sp_queue_get_nowait(&q, &item), -EAGAIN);
    assert_true(sp_queue_empty(&q));
    assert_int_equal(sp_queue_fini(&q), 0);
}

static void test_lifo_returns_most_recent_first(void **state) {
    (void)state;
    static const char *items[40];
    static char names[40][4];
    sp_queue q;
    sp_queue_init_lifo(&q, 0);
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "%d", i);
        items[i] = names[i];
        assert_int_equal(sp_queue_put_nowait(&q, names[i]), 0);
    }
    assert_false(sp_queue_full(&q));
    for (int i = 39; i >= 0; i--)
        assert_ptr_equal(get_now(&q), items[i]);
    assert_int_equal(sp_queue_fini(&q), 0);
}

static int cmp_int(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return *(const int *)a - *(const int *)b;
}

static void test_priority_returns_lowest_first_and_ties_in_put_order(void **state) {
    (void)state;
    enum { N = 200 };
    static int prio[N];
    sp_queue q;
    assert_int_equal(sp_queue_init_priority(&q, 0, NULL, NULL), -EINVAL);
    assert_int_equal(sp_queue_init_priority(&q, 0, cmp_int, NULL), 0);
    /* Pseudo-random priorities in 0..9, so there are many ties. */
    for (int i = 0; i < N; i++) {
        prio[i] = (i * 7919 + 13) % 10;
        assert_int_equal(sp_queue_put_nowait(&q, &prio[i]), 0);
    }
    const int *prev = NULL;
    for (int i = 0; i < N; i++) {
        const int *cur = (const int *)get_now(&q);
        if (prev) {
            assert_true(*prev <= *cur);
            if (*prev == *cur)
                assert_true(prev < cur); /* same priority: put order */
        }
        prev = cur;
    }
    assert_true(sp_queue_empty(&q));
    assert_int_equal(sp_queue_fini(&q), 0);
}

static void test_unbounded_fifo_keeps_order_while_growing_wrapped(void **state) {
    (void)state;
    static int v[1000];
    sp_queue q;
    sp_queue_init(&q, 0);
    int next_put = 0, next_get = 0;
    /* Interleave so the ring's head moves before every growth. */
    for (int round = 0; round < 10; round++) {
        for (int k = 0; k < 3 * (round + 1) + 7; k++, next_put++)
            assert_int_equal(sp_queue_put_nowait(&q, &v[next_put]), 0);
        for (int k = 0; k < round + 3; k++, next_get++)
            assert_ptr_equal(get_now(&q), &v[next_get]);
    }
    while (next_get < next_put)
        assert_ptr_equal(get_now(&q), &v[next_get++]);
    assert_true(sp_queue_empty(&q));
    assert_int_equal(sp_queue_fini(&q), 0);
}

static void test_bounded_queue_fills_to_maxsize_beyond_initial_storage(void **state) {
    (void)state;
    static int v[21];
    sp_queue q;
    sp_queue_init(&q, 20);
    assert_int_equal(sp_queue_put_nowait(&q, &v[0]), 0);
    assert_ptr_equal(get_now(&q), &v[0]);
    for (int i = 1; i <= 20; i++)
        assert_int_equal(sp_queue_put_nowait(&q, &v[i]), 0);
    assert_int_equal(sp_queue_put_nowait(&q, &v[0]), -EAGAIN);
    for (int i = 1; i <= 20; i++)
        assert_ptr_equal(get_now(&q), &v[i]);
    assert_int_equal(sp_queue_fini(&q), 0);
}

static void test_get_outside_a_task_returns_eperm_instead_of_waiting(void **state) {
    (void)state;
    sp_queue q;
    sp_queue_init(&q, 1);
    void *item;
    assert_int_equal(sp_queue_get(&q, &item), -EPERM);
    assert_int_equal(sp_queue_put(&q, "a"), 0);
    assert_int_equal(sp_queue_put(&q, "b"), -EPERM);
    assert_int_equal(sp_queue_get(&q, &item), 0);
    assert_string_equal(item, "a");
    assert_int_equal(sp_queue_fini(&q), 0);
}

/* ---- waiting and cancellation ---- */

/* Python: three getters wait, then put_nowait a, b, c.
 * Log: g0:a g1:b g2:c */
static int s_getters_fifo(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 0);
    actor a[3] = {{&q, "g0", NULL, 0}, {&q, "g1", NULL, 0}, {&q, "g2", NULL, 0}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(getter, &a[i]);
    sp_yield();
    sp_queue_put_nowait(&q, "a");
    sp_queue_put_nowait(&q, "b");
    sp_queue_put_nowait(&q, "c");
    for (int i = 0; i < 3; i++)
        await_release(t[i]);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_waiting_getters_are_served_in_arrival_order(void **state) {
    (void)state;
    run_main(s_getters_fifo, NULL);
    expect_log("g0:a", "g1:b", "g2:c");
}

/* Python: Queue(1) holding a; putters of b, c, d wait; four awaited gets.
 * Log: got:a p0:putb got:b p1:putc got:c p2:putd got:d */
static int s_putters_fifo(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 1);
    sp_queue_put_nowait(&q, "a");
    actor a[3] = {{&q, "p0", "b", 0}, {&q, "p1", "c", 0}, {&q, "p2", "d", 0}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(putter, &a[i]);
    sp_yield();
    for (int i = 0; i < 4; i++) {
        void *item;
        assert_int_equal(sp_queue_get(&q, &item), 0);
        logf_("got:%s", (char *)item);
    }
    for (int i = 0; i < 3; i++)
        await_release(t[i]);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_put_waits_while_full_and_putters_are_served_in_order(void **state) {
    (void)state;
    run_main(s_putters_fifo, NULL);
    expect_log("got:a", "p0:putb", "got:b", "p1:putc", "got:c", "p2:putd", "got:d");
}

static int s_cancel_get(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 0);
    actor a0 = {&q, "g0", NULL, 0}, a1 = {&q, "g1", NULL, 0};
    sp_task *t0 = spawn(getter, &a0);
    sp_yield();
    sp_task_cancel(t0);
    /* The queue may not be finished while the cancelled getter is queued. */
    assert_int_equal(sp_queue_fini(&q), -EBUSY);
    await_release(t0);
    assert_int_equal(a0.rc, -ECANCELED);
    sp_queue_put_nowait(&q, "a");
    assert_int_equal(sp_queue_qsize(&q), 1);
    sp_task *t1 = spawn(getter, &a1);
    await_release(t1);
    assert_true(sp_queue_empty(&q));
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_cancel_during_queue_get_returns_ecanceled_and_next_getter_gets_item(void **state) {
    (void)state;
    run_main(s_cancel_get, NULL);
    expect_log("g0:cancelled", "g1:a");
}

/* Python: getters g1, g2 wait; put_nowait(a) wakes g1; g1 is cancelled before
 * it runs. Log: g1:cancelled g2:a qsize=0 */
static int s_cancel_getter_after_wakeup(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 0);
    actor a1 = {&q, "g1", NULL, 0}, a2 = {&q, "g2", NULL, 0};
    sp_task *t1 = spawn(getter, &a1), *t2 = spawn(getter, &a2);
    sp_yield();
    sp_queue_put_nowait(&q, "a");
    sp_task_cancel(t1);
    await_release(t1);
    await_release(t2);
    logf_("qsize=%zu", sp_queue_qsize(&q));
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_getter_cancelled_after_wakeup_passes_item_to_next_getter(void **state) {
    (void)state;
    run_main(s_cancel_getter_after_wakeup, NULL);
    expect_log("g1:cancelled", "g2:a", "qsize=0");
}

static int s_cancel_put(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 1);
    sp_queue_put_nowait(&q, "a");
    actor p0 = {&q, "p0", "b", 0}, p1 = {&q, "p1", "c", 0};
    sp_task *t0 = spawn(putter, &p0);
    sp_yield();
    sp_task_cancel(t0);
    await_release(t0);
    assert_int_equal(p0.rc, -ECANCELED);
    assert_int_equal(sp_queue_qsize(&q), 1);
    assert_string_equal(get_now(&q), "a");
    sp_task *t1 = spawn(putter, &p1);
    await_release(t1);
    assert_string_equal(get_now(&q), "c");
    assert_true(sp_queue_empty(&q));
    /* Only a and c were ever put. */
    assert_int_equal(sp_queue_task_done(&q), 0);
    assert_int_equal(sp_queue_task_done(&q), 0);
    assert_int_equal(sp_queue_task_done(&q), -EINVAL);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_cancel_during_queue_put_on_full_queue_puts_nothing(void **state) {
    (void)state;
    run_main(s_cancel_put, NULL);
    expect_log("p0:cancelled", "p1:putc");
}

/* Python: Queue(1) holding a; putters p1(b), p2(c) wait; get_nowait wakes p1,
 * which is cancelled before it runs.
 * Log: got:a p1:cancelled p2:putc got:c qsize=0 */
static int s_cancel_putter_after_wakeup(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 1);
    sp_queue_put_nowait(&q, "a");
    actor p1 = {&q, "p1", "b", 0}, p2 = {&q, "p2", "c", 0};
    sp_task *t1 = spawn(putter, &p1), *t2 = spawn(putter, &p2);
    sp_yield();
    logf_("got:%s", get_now(&q));
    sp_task_cancel(t1);
    await_release(t1);
    await_release(t2);
    logf_("got:%s", get_now(&q));
    logf_("qsize=%zu", sp_queue_qsize(&q));
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_putter_cancelled_after_wakeup_passes_slot_to_next_putter(void **state) {
    (void)state;
    run_main(s_cancel_putter_after_wakeup, NULL);
    expect_log("got:a", "p1:cancelled", "p2:putc", "got:c", "qsize=0");
}

/* ---- many producers and consumers ---- */

enum { NPROD = 8, NCONS = 8, NITEMS = 10000 };

typedef struct mpmc {
    sp_queue q;
    unsigned char seen[NITEMS];
    int next_producer;
    int consumed;
} mpmc;

static int producer(void *arg, void **result) {
    (void)result;
    mpmc *m = arg;
    int id = m->next_producer++;
    for (int i = id; i < NITEMS; i += NPROD) {
        assert_int_equal(sp_queue_put(&m->q, (void *)(uintptr_t)(i + 1)), 0);
        if (i % 7 == 0)
            sp_yield();
    }
    return 0;
}

static int consumer(void *arg, void **result) {
    (void)result;
    mpmc *m = arg;
    for (;;) {
        void *item;
        int rc = sp_queue_get(&m->q, &item);
        if (rc == -ESHUTDOWN)
            return 0;
        assert_int_equal(rc, 0);
        m->seen[(uintptr_t)item - 1]++;
        m->consumed++;
        if (m->consumed % 5 == 0)
            sp_yield();
        assert_int_equal(sp_queue_task_done(&m->q), 0);
    }
}

static int s_mpmc(void *arg, void **result) {
    (void)result;
    mpmc *m = arg;
    sp_queue_init(&m->q, 16);
    sp_task *prods[NPROD], *cons[NCONS];
    for (int i = 0; i < NCONS; i++)
        cons[i] = spawn(consumer, m);
    for (int i = 0; i < NPROD; i++)
        prods[i] = spawn(producer, m);
    for (int i = 0; i < NPROD; i++)
        await_release(prods[i]);
    assert_int_equal(sp_queue_join(&m->q), 0);
    assert_int_equal(m->consumed, NITEMS);
    for (int i = 0; i < NITEMS; i++)
        assert_int_equal(m->seen[i], 1);
    assert_int_equal(sp_queue_task_done(&m->q), -EINVAL);
    sp_queue_shutdown(&m->q, false);
    for (int i = 0; i < NCONS; i++)
        await_release(cons[i]);
    assert_int_equal(sp_queue_fini(&m->q), 0);
    return 0;
}

static void test_many_producers_consumers_each_item_received_once_and_join_returns(void **state) {
    (void)state;
    static mpmc m;
    run_main(s_mpmc, &m);
}

/* ---- task_done and join ---- */

static void test_task_done_more_than_items_returns_einval(void **state) {
    (void)state;
    sp_queue q;
    sp_queue_init(&q, 0);
    assert_int_equal(sp_queue_task_done(&q), -EINVAL);
    sp_queue_put_nowait(&q, "a");
    sp_queue_put_nowait(&q, "b");
    get_now(&q);
    assert_int_equal(sp_queue_task_done(&q), 0);
    /* The count is of items put, not of items got. */
    assert_int_equal(sp_queue_task_done(&q), 0);
    assert_int_equal(sp_queue_task_done(&q), -EINVAL);
    assert_int_equal(sp_queue_fini(&q), 0);
}

static int s_join(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 0);
    assert_int_equal(sp_queue_join(&q), 0); /* nothing put: at once */
    sp_queue_put_nowait(&q, "a");
    sp_queue_put_nowait(&q, "b");
    sp_task *j = spawn(joiner, &q);
    sp_yield();
    get_now(&q);
    get_now(&q);
    logf_("done1");
    sp_queue_task_done(&q);
    sp_yield();
    logf_("done2");
    sp_queue_task_done(&q);
    await_release(j);
    assert_int_equal(sp_queue_join(&q), 0);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_join_waits_until_every_item_is_task_done(void **state) {
    (void)state;
    run_main(s_join, NULL);
    expect_log("done1", "done2", "joined");
}

/* ---- shutdown (Python 3.13) ---- */

/* Python 3.13: three getters wait; shutdown(); then put_nowait.
 * Log: shut g0:shutdown g1:shutdown g2:shutdown put_nowait:shutdown */
static int s_shutdown_getters(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 0);
    actor a[3] = {{&q, "g0", NULL, 0}, {&q, "g1", NULL, 0}, {&q, "g2", NULL, 0}};
    sp_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(getter, &a[i]);
    sp_yield();
    sp_queue_shutdown(&q, false);
    logf_("shut");
    for (int i = 0; i < 3; i++)
        await_release(t[i]);
    if (sp_queue_put_nowait(&q, "x") == -ESHUTDOWN)
        logf_("put_nowait:shutdown");
    void *item;
    assert_int_equal(sp_queue_get_nowait(&q, &item), -ESHUTDOWN);
    assert_int_equal(sp_queue_get(&q, &item), -ESHUTDOWN);
    assert_int_equal(sp_queue_put(&q, "x"), -ESHUTDOWN);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_shutdown_wakes_every_waiting_getter_with_eshutdown(void **state) {
    (void)state;
    run_main(s_shutdown_getters, NULL);
    expect_log("shut", "g0:shutdown", "g1:shutdown", "g2:shutdown", "put_nowait:shutdown");
}

/* Python 3.13: Queue(2) holding a, b; putters of c, d and a joiner wait;
 * shutdown(); the putters finish; three getters; two task_done.
 * Log: p0:shutdown p1:shutdown g0:a g1:b g2:shutdown joined */
static int s_shutdown_putters(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 2);
    sp_queue_put_nowait(&q, "a");
    sp_queue_put_nowait(&q, "b");
    actor p[2] = {{&q, "p0", "c", 0}, {&q, "p1", "d", 0}};
    sp_task *pt[2] = {spawn(putter, &p[0]), spawn(putter, &p[1])};
    sp_task *j = spawn(joiner, &q);
    sp_yield();
    sp_queue_shutdown(&q, false);
    await_release(pt[0]);
    await_release(pt[1]);
    actor g[3] = {{&q, "g0", NULL, 0}, {&q, "g1", NULL, 0}, {&q, "g2", NULL, 0}};
    sp_task *gt[3];
    for (int i = 0; i < 3; i++)
        gt[i] = spawn(getter, &g[i]);
    for (int i = 0; i < 3; i++)
        await_release(gt[i]);
    sp_queue_task_done(&q);
    sp_queue_task_done(&q);
    await_release(j);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_shutdown_fails_waiting_putters_and_lets_getters_drain(void **state) {
    (void)state;
    run_main(s_shutdown_putters, NULL);
    expect_log("p0:shutdown", "p1:shutdown", "g0:a", "g1:b", "g2:shutdown", "joined");
}

/* Python 3.13: Queue(2) holding a, b; a putter and a joiner wait;
 * shutdown(immediate=True); then a getter and one task_done too many.
 * Log: qsize=0 joined p0:shutdown g0:shutdown task_done:ValueError */
static int s_shutdown_immediate(void *arg, void **result) {
    (void)arg, (void)result;
    sp_queue q;
    sp_queue_init(&q, 2);
    sp_queue_put_nowait(&q, "a");
    sp_queue_put_nowait(&q, "b");
    actor p = {&q, "p0", "c", 0}, g = {&q, "g0", NULL, 0};
    sp_task *pt = spawn(putter, &p);
    sp_task *j = spawn(joiner, &q);
    sp_yield();
    sp_queue_shutdown(&q, true);
    logf_("qsize=%zu", sp_queue_qsize(&q));
    await_release(pt);
    await_release(j);
    await_release(spawn(getter, &g));
    if (sp_queue_task_done(&q) == -EINVAL)
        logf_("task_done:ValueError");
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_immediate_shutdown_drops_items_and_releases_join(void **state) {
    (void)state;
    run_main(s_shutdown_immediate, NULL);
    expect_log("qsize=0", "joined", "p0:shutdown", "g0:shutdown", "task_done:ValueError");
}

/* Python 3.13: getters g1, g2 wait; put_nowait(a) wakes g1; shutdown before
 * g1 runs. Plain: g1:a g2:shutdown. Immediate: g1:shutdown g2:shutdown. */
static int s_shutdown_after_wakeup(void *arg, void **result) {
    (void)result;
    bool immediate = *(bool *)arg;
    sp_queue q;
    sp_queue_init(&q, 0);
    actor a1 = {&q, "g1", NULL, 0}, a2 = {&q, "g2", NULL, 0};
    sp_task *t1 = spawn(getter, &a1), *t2 = spawn(getter, &a2);
    sp_yield();
    sp_queue_put_nowait(&q, "a");
    sp_queue_shutdown(&q, immediate);
    await_release(t1);
    await_release(t2);
    assert_int_equal(sp_queue_fini(&q), 0);
    return 0;
}

static void test_shutdown_after_getter_woken_lets_it_take_the_item_unless_immediate(void **state) {
    (void)state;
    bool immediate = false;
    run_main(s_shutdown_after_wakeup, &immediate);
    expect_log("g1:a", "g2:shutdown");
    immediate = true;
    run_main(s_shutdown_after_wakeup, &immediate);
    expect_log("g1:shutdown", "g2:shutdown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_nowait_order_sizes_and_errors),
        cmocka_unit_test(test_lifo_returns_most_recent_first),
        cmocka_unit_test(test_priority_returns_lowest_first_and_ties_in_put_order),
        cmocka_unit_test(test_unbounded_fifo_keeps_order_while_growing_wrapped),
        cmocka_unit_test(test_bounded_queue_fills_to_maxsize_beyond_initial_storage),
        cmocka_unit_test(test_get_outside_a_task_returns_eperm_instead_of_waiting),
        cmocka_unit_test(test_waiting_getters_are_served_in_arrival_order),
        cmocka_unit_test(test_put_waits_while_full_and_putters_are_served_in_order),
        cmocka_unit_test(test_cancel_during_queue_get_returns_ecanceled_and_next_getter_gets_item),
        cmocka_unit_test(test_getter_cancelled_after_wakeup_passes_item_to_next_getter),
        cmocka_unit_test(test_cancel_during_queue_put_on_full_queue_puts_nothing),
        cmocka_unit_test(test_putter_cancelled_after_wakeup_passes_slot_to_next_putter),
        cmocka_unit_test(test_many_producers_consumers_each_item_received_once_and_join_returns),
        cmocka_unit_test(test_task_done_more_than_items_returns_einval),
        cmocka_unit_test(test_join_waits_until_every_item_is_task_done),
        cmocka_unit_test(test_shutdown_wakes_every_waiting_getter_with_eshutdown),
        cmocka_unit_test(test_shutdown_fails_waiting_putters_and_lets_getters_drain),
        cmocka_unit_test(test_immediate_shutdown_drops_items_and_releases_join),
        cmocka_unit_test(test_shutdown_after_getter_woken_lets_it_take_the_item_unless_immediate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
