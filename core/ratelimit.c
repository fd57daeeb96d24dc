/* Token buckets: sp_ratelimit with its FIFO queue of waiting tasks, and the
 * keyed map (hash table + LRU list) for per-client limits. Tokens are doubles
 * brought up to date from the monotonic clock at each use. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <spindle/ratelimit.h>
#include <spindle/task.h>

#include "loop.h"

/* ---- Bucket arithmetic, shared by sp_ratelimit and the map ---- */

static bool valid_param(double x) {
    return x > 0 && isfinite(x);
}

static bool valid_amount(double n, double burst) {
    return n >= 0 && n <= burst;
}

static void refill(double *tokens, int64_t *stamp, double rate, double burst, int64_t now) {
    if (now <= *stamp)
        return;
    *tokens += (double)(now - *stamp) * 1e-9 * rate;
    if (*tokens > burst)
        *tokens = burst;
    *stamp = now;
}

/* Float slack, so that a timer due at the very moment the tokens are back
 * finds them there despite rounding. */
static bool enough(double tokens, double n) {
    return tokens >= n - 1e-9 * (n > 1 ? n : 1);
}

static void take(double *tokens, double n) {
    *tokens -= n;
    if (*tokens < 0)
        *tokens = 0;
}

/* Nanoseconds until `need` more tokens have come in, rounded up. */
static int64_t wait_ns(double rate, double need) {
    if (!(need > 0))
        return 0;
    double ns = ceil(need / rate * 1e9);
    return ns < 1e18 ? (int64_t)ns : (int64_t)1e18;
}

static void fill_info(sp_ratelimit_info *info, double rate, double burst, double avail) {
    info->limit = burst;
    info->remaining = avail > 0 ? floor(avail + 1e-9) : 0;
    info->reset = (double)wait_ns(rate, burst - avail) / 1e9;
}

/* ---- One bucket ----
 * A waiting task keeps its waiter on its own stack. Only the queue's head
 * has a timer for its tokens; the others have one for their timeout, if any. */

typedef struct rl_waiter {
    sp_future fut;
    sp_list link;   /* in priv_waiters until served, timed out, or dropped */
    sp_timer timer; /* the head: when its tokens are there or its deadline; others: deadline */
    sp_ratelimit *rl;
    double n;
    int64_t deadline; /* INT64_MAX: none */
} rl_waiter;

int sp_ratelimit_init(sp_ratelimit *rl, double rate, double burst) {
    if (!valid_param(rate) || !valid_param(burst))
        return -EINVAL;
    rl->priv_rate = rate;
    rl->priv_burst = burst;
    rl->priv_tokens = burst;
    rl->priv_queued = 0;
    rl->priv_stamp = sp_now_ns();
    sp_list_init(&rl->priv_waiters);
    return 0;
}

int sp_ratelimit_fini(sp_ratelimit *rl) {
    return sp_list_empty(&rl->priv_waiters) ? 0 : -EBUSY;
}

static void rl_refill(sp_ratelimit *rl, int64_t now) {
    refill(&rl->priv_tokens, &rl->priv_stamp, rl->priv_rate, rl->priv_burst, now);
}

static void waiter_unlink(sp_ratelimit *rl, rl_waiter *w) {
    sp_list_remove(&w->link);
    rl->priv_queued -= w->n;
    if (sp_list_empty(&rl->priv_waiters) || rl->priv_queued < 0)
        rl->priv_queued = 0; /* no drift from summing doubles */
}

/* Serves the queue from its head: grants each waiter whose tokens are there,
 * drops those cancelled before they could unlink themselves, and arms the
 * timer of the head that has to wait. */
static void serve(sp_ratelimit *rl) {
    sp_loop *loop = sp_loop_get();
    int64_t now = sp_now_ns();
    rl_refill(rl, now);
    while (!sp_list_empty(&rl->priv_waiters)) {
        rl_waiter *w = sp_container_of(rl->priv_waiters.next, rl_waiter, link);
        if (sp_future_done(&w->fut)) {
            waiter_unlink(rl, w);
            continue;
        }
        if (enough(rl->priv_tokens, w->n)) {
            take(&rl->priv_tokens, w->n);
            waiter_unlink(rl, w);
            sp_future_set_result(&w->fut, NULL);
            continue;
        }
        int64_t when = now + wait_ns(rl->priv_rate, w->n - rl->priv_tokens);
        sp_timer_arm(loop, &w->timer, when < w->deadline ? when : w->deadline);
        return;
    }
}

static void waiter_due(sp_cb *cb) {
    rl_waiter *w = sp_container_of(cb, rl_waiter, timer.cb);
    sp_ratelimit *rl = w->rl;
    if (sp_future_done(&w->fut))
        return;
    /* Tokens there at the deadline still count. */
    serve(rl);
    if (sp_future_done(&w->fut) || sp_now_ns() < w->deadline)
        return;
    bool head = rl->priv_waiters.next == &w->link;
    waiter_unlink(rl, w);
    sp_future_set_error(&w->fut, -ETIMEDOUT, NULL);
    if (head)
        serve(rl);
}

/* Brings the bucket up to date and takes n tokens if nobody waits ahead and
 * they are there. */
static bool take_now(sp_ratelimit *rl, double n) {
    if (sp_list_empty(&rl->priv_waiters))
        rl_refill(rl, sp_now_ns());
    else
        serve(rl);
    if (sp_list_empty(&rl->priv_waiters) && enough(rl->priv_tokens, n)) {
        take(&rl->priv_tokens, n);
        return true;
    }
    return false;
}

int sp_ratelimit_try_acquire(sp_ratelimit *rl, double n, double *retry_after) {
    if (!valid_amount(n, rl->priv_burst))
        return -EINVAL;
    if (take_now(rl, n))
        return 0;
    if (retry_after)
        *retry_after = (double)wait_ns(rl->priv_rate, rl->priv_queued + n - rl->priv_tokens) / 1e9;
    return -EAGAIN;
}

int sp_ratelimit_acquire(sp_ratelimit *rl, double n, double timeout) {
    if (!valid_amount(n, rl->priv_burst) || isnan(timeout))
        return -EINVAL;
    if (take_now(rl, n))
        return 0;
    /* Waiters ahead can only make it later: fail now what can't succeed. */
    if (timeout >= 0 && (double)wait_ns(rl->priv_rate, n - rl->priv_tokens) > timeout * 1e9)
        return -ETIMEDOUT;
    sp_loop *loop = sp_loop_get();
    if (!loop || !loop->current)
        return -EPERM;

    rl_waiter w = {.rl = rl, .n = n, .deadline = INT64_MAX};
    if (timeout >= 0)
        w.deadline = sp_deadline_after(timeout);
    sp_future_init(&w.fut);
    sp_timer_init(&w.timer, waiter_due);
    bool head = sp_list_empty(&rl->priv_waiters);
    sp_list_push_back(&rl->priv_waiters, &w.link);
    rl->priv_queued += n;
    if (head)
        serve(rl);
    else if (w.deadline != INT64_MAX)
        sp_timer_arm(loop, &w.timer, w.deadline);

    int rc = sp_future_await(&w.fut, NULL);
    sp_timer_disarm(loop, &w.timer);
    if (rc != 0 && sp_list_linked(&w.link)) {
        /* Cancelled while queued: leave, and let the next one move up. */
        head = rl->priv_waiters.next == &w.link;
        waiter_unlink(rl, &w);
        if (head)
            serve(rl);
    } else if (rc == -ECANCELED && sp_future_done(&w.fut) && w.fut.err == 0) {
        /* Served, then cancelled before it could run: give the tokens back,
         * as asyncio's Semaphore.acquire does with its slot. */
        rl->priv_tokens += n;
        if (rl->priv_tokens > rl->priv_burst)
            rl->priv_tokens = rl->priv_burst;
        if (!sp_list_empty(&rl->priv_waiters))
            serve(rl);
    }
    sp_future_fini(&w.fut);
    return rc;
}

void sp_ratelimit_query(sp_ratelimit *rl, sp_ratelimit_info *info) {
    rl_refill(rl, sp_now_ns());
    fill_info(info, rl->priv_rate, rl->priv_burst, rl->priv_tokens - rl->priv_queued);
}

/* ---- Buckets by key ---- */

typedef struct rl_entry {
    struct rl_entry *next; /* hash chain */
    sp_list lru;
    uint64_t hash;
    double tokens;
    int64_t stamp; /* last use: the LRU list is in stamp order */
    size_t keylen;
    unsigned char key[];
} rl_entry;

struct sp_ratelimit_map {
    double rate, burst;
    int64_t idle_ns; /* a bucket unused this long is full again */
    size_t max_keys, count;
    rl_entry **table;
    size_t mask;     /* table size - 1; the table doubles up to max_keys */
    sp_list lru;     /* least recently used first */
    uint64_t k0, k1; /* SipHash key: clients choose their keys */
};

static uint64_t rotl(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

static void sipround(uint64_t v[4]) {
    v[0] += v[1];
    v[1] = rotl(v[1], 13) ^ v[0];
    v[0] = rotl(v[0], 32);
    v[2] += v[3];
    v[3] = rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = rotl(v[1], 17) ^ v[2];
    v[2] = rotl(v[2], 32);
}

/* SipHash-2-4 (words read in native order: the hash never leaves the
 * process), so keys an attacker picks can't pile into one chain. */
static uint64_t siphash(const unsigned char *in, size_t len, uint64_t k0, uint64_t k1) {
    uint64_t v[4] = {0x736f6d6570736575ULL ^ k0, 0x646f72616e646f6dULL ^ k1,
                     0x6c7967656e657261ULL ^ k0, 0x7465646279746573ULL ^ k1};
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m;
        memcpy(&m, in + i, 8);
        v[3] ^= m;
        sipround(v);
        sipround(v);
        v[0] ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = whole; i < len; i++)
        b |= (uint64_t)in[i] << (8 * (i - whole));
    v[3] ^= b;
    sipround(v);
    sipround(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

int sp_ratelimit_map_create(sp_ratelimit_map **out, double rate, double burst, size_t max_keys) {
    if (!valid_param(rate) || !valid_param(burst) || max_keys == 0)
        return -EINVAL;
    sp_ratelimit_map *m = calloc(1, sizeof(*m));
    if (!m || !(m->table = calloc(16, sizeof(*m->table)))) {
        free(m);
        return -ENOMEM;
    }
    m->mask = 15;
    m->rate = rate;
    m->burst = burst;
    m->idle_ns = wait_ns(rate, burst);
    m->max_keys = max_keys;
    sp_list_init(&m->lru);
    uint64_t k[2];
    if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
        /* Entropy not ready yet (early boot): still unpredictable enough
         * for spreading keys, if not for a determined attacker. */
        k[0] = (uint64_t)sp_now_ns() ^ (uint64_t)(uintptr_t)m;
        k[1] = rotl(k[0], 29) * 0x9e3779b97f4a7c15ULL;
    }
    m->k0 = k[0];
    m->k1 = k[1];
    *out = m;
    return 0;
}

void sp_ratelimit_map_destroy(sp_ratelimit_map *m) {
    if (!m)
        return;
    sp_list *n;
    while ((n = sp_list_pop_front(&m->lru)) != NULL)
        free(sp_container_of(n, rl_entry, lru));
    free(m->table);
    free(m);
}

size_t sp_ratelimit_map_count(const sp_ratelimit_map *m) {
    return m->count;
}

static void map_remove(sp_ratelimit_map *m, rl_entry *e) {
    rl_entry **pp = &m->table[e->hash & m->mask];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    sp_list_remove(&e->lru);
    m->count--;
    free(e);
}

/* Doubles the table while it holds more entries than chains, up to the size
 * max_keys needs. Failing to grow only makes chains longer. */
static void map_grow(sp_ratelimit_map *m) {
    size_t size = m->mask + 1;
    if (m->count < size || size >= m->max_keys)
        return;
    rl_entry **t = calloc(size * 2, sizeof(*t));
    if (!t)
        return;
    for (size_t i = 0; i < size; i++) {
        rl_entry *e = m->table[i];
        while (e) {
            rl_entry *next = e->next;
            size_t j = e->hash & (size * 2 - 1);
            e->next = t[j];
            t[j] = e;
            e = next;
        }
    }
    free(m->table);
    m->table = t;
    m->mask = size * 2 - 1;
}

int sp_ratelimit_map_try_acquire(sp_ratelimit_map *m, const void *key, size_t keylen, double n,
                                 double *retry_after, sp_ratelimit_info *info) {
    if (!valid_amount(n, m->burst) || !key || keylen == 0 || keylen > SP_RATELIMIT_KEY_MAX)
        return -EINVAL;
    int64_t now = sp_now_ns();
    /* Idle buckets are full, like new ones: dropping them changes nothing. */
    while (!sp_list_empty(&m->lru)) {
        rl_entry *old = sp_container_of(m->lru.next, rl_entry, lru);
        if (now - old->stamp < m->idle_ns)
            break;
        map_remove(m, old);
    }
    uint64_t h = siphash(key, keylen, m->k0, m->k1);
    rl_entry *e = m->table[h & m->mask];
    while (e && !(e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0))
        e = e->next;
    if (e) {
        refill(&e->tokens, &e->stamp, m->rate, m->burst, now);
        sp_list_remove(&e->lru);
    } else {
        if (m->count >= m->max_keys)
            map_remove(m, sp_container_of(m->lru.next, rl_entry, lru));
        if (!(e = malloc(sizeof(*e) + keylen)))
            return -ENOMEM;
        e->hash = h;
        e->tokens = m->burst;
        e->stamp = now;
        e->keylen = keylen;
        memcpy(e->key, key, keylen);
        m->count++;
        map_grow(m);
        e->next = m->table[h & m->mask];
        m->table[h & m->mask] = e;
    }
    sp_list_push_back(&m->lru, &e->lru);
    int rc = 0;
    if (enough(e->tokens, n)) {
        take(&e->tokens, n);
    } else {
        rc = -EAGAIN;
        if (retry_after)
            *retry_after = (double)wait_ns(m->rate, n - e->tokens) / 1e9;
    }
    if (info)
        fill_info(info, m->rate, m->burst, e->tokens);
    return rc;
}
