/* The rate limiting middleware (spindle/ratelimit_mw.h): one limiter shared by
 * the server's worker threads under a mutex, holding either one bucket that
 * also queues requests (as reservations) or an sp_ratelimit_map of keyed
 * buckets, and the 429 answer with its Retry-After and RateLimit-* headers. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spindle/ratelimit.h>
#include <spindle/ratelimit_mw.h>
#include <spindle/task.h>

#include "loop.h"

/* The single bucket is not an sp_ratelimit: that one queues the tasks of one
 * loop, and the workers each run their own loop. Queued requests are kept as
 * reservations instead: a request that has to wait takes a token that has
 * not come in yet (tokens goes below zero) and sleeps on its own loop until
 * it is due, so requests pass in the order they reserved, at the rate. */
struct sp_ratelimit_mw {
    sp_ratelimit_mw_config cfg;
    pthread_mutex_t lock;
    sp_ratelimit_map *map; /* cfg.by != 0: the keyed buckets */
    double tokens;         /* the single bucket, as of stamp; < 0: reserved ahead */
    int64_t stamp;         /* ns on the monotonic clock */
};

void sp_ratelimit_mw_config_init(sp_ratelimit_mw_config *cfg) {
    *cfg = (sp_ratelimit_mw_config){.rate = 0, .burst = 1, .by = 0, .max_keys = 10000};
}

static bool positive(double x) {
    return x > 0 && isfinite(x);
}

int sp_ratelimit_mw_create(sp_ratelimit_mw **out, const sp_ratelimit_mw_config *cfg) {
    if (!positive(cfg->rate) || !positive(cfg->burst) || cfg->burst < 1 ||
        (cfg->by & ~(unsigned)(SP_RATELIMIT_BY_ROUTE | SP_RATELIMIT_BY_IP)) ||
        (cfg->by && cfg->max_keys == 0) || !(cfg->max_wait >= 0) || !isfinite(cfg->max_wait) ||
        (cfg->by && cfg->max_wait > 0))
        return -EINVAL;
    sp_ratelimit_mw *mw = calloc(1, sizeof(*mw));
    if (!mw)
        return -ENOMEM;
    mw->cfg = *cfg;
    mw->tokens = cfg->burst;
    mw->stamp = sp_now_ns();
    if (cfg->by) {
        int rc = sp_ratelimit_map_create(&mw->map, cfg->rate, cfg->burst, cfg->max_keys);
        if (rc != 0) {
            free(mw);
            return rc;
        }
    }
    pthread_mutex_init(&mw->lock, NULL);
    *out = mw;
    return 0;
}

void sp_ratelimit_mw_destroy(sp_ratelimit_mw *mw) {
    if (!mw)
        return;
    sp_ratelimit_map_destroy(mw->map);
    pthread_mutex_destroy(&mw->lock);
    free(mw);
}

size_t sp_ratelimit_mw_keys(sp_ratelimit_mw *mw) {
    pthread_mutex_lock(&mw->lock);
    size_t n = mw->map ? sp_ratelimit_map_count(mw->map) : 0;
    pthread_mutex_unlock(&mw->lock);
    return n;
}

/* ---- The single bucket (called under the lock) ---- */

static void bucket_refill(sp_ratelimit_mw *mw) {
    int64_t now = sp_now_ns();
    if (now <= mw->stamp)
        return;
    mw->tokens += (double)(now - mw->stamp) * 1e-9 * mw->cfg.rate;
    if (mw->tokens > mw->cfg.burst)
        mw->tokens = mw->cfg.burst;
    mw->stamp = now;
}

static void bucket_info(const sp_ratelimit_mw *mw, sp_ratelimit_info *info) {
    info->limit = mw->cfg.burst;
    info->remaining = mw->tokens > 0 ? floor(mw->tokens + 1e-9) : 0;
    info->reset = (mw->cfg.burst - mw->tokens) / mw->cfg.rate;
}

/* Takes a token now, or reserves the next one if it comes within max_wait.
 * Returns 0 with *wait the seconds until it is due (0: now), or -EAGAIN with
 * *retry the seconds until a request would be taken or queued. */
static int bucket_take(sp_ratelimit_mw *mw, double *wait, double *retry, sp_ratelimit_info *info) {
    bucket_refill(mw);
    double need = 1 - mw->tokens;
    /* The slack keeps float rounding from making a due token wait 1 ns. */
    double secs = need > 1e-9 ? need / mw->cfg.rate : 0;
    int rc = 0;
    if (secs > mw->cfg.max_wait) {
        *retry = secs - mw->cfg.max_wait;
        rc = -EAGAIN;
    } else {
        mw->tokens -= 1;
        *wait = secs;
    }
    bucket_info(mw, info);
    return rc;
}

/* ---- Keys ---- */

/* The map key of req: a tag byte (keys are never empty), the client's address
 * for BY_IP, the address of the route's pattern for BY_ROUTE (owned by the
 * router, one per pattern, stable while it lives). */
static size_t make_key(const sp_ratelimit_mw *mw, const sp_http_req *req, unsigned char *key) {
    size_t len = 0;
    key[len++] = 'k';
    if (mw->cfg.by & SP_RATELIMIT_BY_IP) {
        socklen_t slen;
        const struct sockaddr *sa = sp_http_req_peer(req, &slen);
        if (sa->sa_family == AF_INET) {
            memcpy(key + len, &((const struct sockaddr_in *)sa)->sin_addr, 4);
            len += 4;
        } else if (sa->sa_family == AF_INET6) {
            const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
            if (IN6_IS_ADDR_V4MAPPED(a)) {
                memcpy(key + len, a->s6_addr + 12, 4);
                len += 4;
            } else {
                memcpy(key + len, a->s6_addr, 16);
                len += 16;
            }
        }
    }
    if (mw->cfg.by & SP_RATELIMIT_BY_ROUTE) {
        const char *pattern = sp_http_req_route(req);
        memcpy(key + len, &pattern, sizeof(pattern));
        len += sizeof(pattern);
    }
    return len;
}

/* ---- Headers ---- */

/* Whole seconds, rounded up (a fraction of a second more is a second more),
 * kept printable for absurdly slow rates. */
static long long secs_up(double s) {
    if (!(s > 0))
        return 0;
    return s < 1e12 ? (long long)ceil(s) : 1000000000000LL;
}

static int add_header(sp_http_resp *resp, const char *name, long long value) {
    char v[24];
    snprintf(v, sizeof(v), "%lld", value);
    return sp_http_resp_header(resp, name, v);
}

static int add_ratelimit_headers(sp_http_resp *resp, const sp_ratelimit_info *info) {
    int rc = add_header(resp, "RateLimit-Limit", (long long)floor(info->limit));
    if (rc == 0)
        rc = add_header(resp, "RateLimit-Remaining", (long long)info->remaining);
    if (rc == 0)
        rc = add_header(resp, "RateLimit-Reset", secs_up(info->reset));
    return rc;
}

static int refuse(sp_http_resp *resp, const sp_ratelimit_info *info, double retry) {
    long long after = secs_up(retry);
    int rc = add_header(resp, "Retry-After", after < 1 ? 1 : after);
    if (rc == 0)
        rc = add_ratelimit_headers(resp, info);
    if (rc != 0)
        return rc;
    return sp_http_resp_text(resp, 429, "text/plain", "Too Many Requests\n");
}

/* ---- The middleware ---- */

int sp_ratelimit_mw_handle(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg) {
    sp_ratelimit_mw *mw = arg;
    sp_ratelimit_info info;
    double wait = 0, retry = 0;
    int rc;
    if (mw->map) {
        unsigned char key[1 + 16 + sizeof(const char *)];
        size_t len = make_key(mw, req, key);
        pthread_mutex_lock(&mw->lock);
        rc = sp_ratelimit_map_try_acquire(mw->map, key, len, 1, &retry, &info);
        pthread_mutex_unlock(&mw->lock);
    } else {
        pthread_mutex_lock(&mw->lock);
        rc = bucket_take(mw, &wait, &retry, &info);
        pthread_mutex_unlock(&mw->lock);
    }
    if (rc == -EAGAIN)
        return refuse(resp, &info, retry);
    if (rc != 0)
        return rc;
    if (wait > 0) {
        rc = sp_sleep(wait);
        pthread_mutex_lock(&mw->lock);
        bucket_refill(mw);
        if (rc != 0) {
            /* Gone before its turn: the reservation goes back to the bucket,
             * whose later reservations keep their turns. */
            mw->tokens += 1;
            if (mw->tokens > mw->cfg.burst)
                mw->tokens = mw->cfg.burst;
        }
        bucket_info(mw, &info);
        pthread_mutex_unlock(&mw->lock);
        if (rc != 0)
            return rc;
    }
    rc = add_ratelimit_headers(resp, &info);
    if (rc != 0)
        return rc;
    return sp_http_next_call(next, req, resp);
}
