/* The client object and its connection pools. A client keeps its origins
 * (scheme, host, port) in a hash table; each origin has its pooled idle
 * connections (most recently used first), a cap on connections open at once,
 * and a FIFO of requests waiting for one (a connection or a free slot is
 * handed to the first waiter directly, as asyncio.Semaphore wakes its first
 * waiter). A connection holds an edge-triggered event for its whole life:
 * while pooled, readability means the upstream closed it (or spoke unasked),
 * checked with a peek, and the connection is dropped at once; in use, it
 * wakes the task that waits. The event also reports the peer's close
 * (EV_CLOSED), so a close that came with the last response's bytes, which
 * brings no edge of its own, keeps the connection out of the pool.
 *
 * Reuse trusts that state, as nginx and HAProxy do, while it is recent: the
 * loop looked at I/O less than REUSE_PEEK_NS ago (the case under load, where
 * a syscall per request counts). Otherwise (a loop that was busy or blocked
 * for a while) the connection is peeked at first. What slips through, a
 * close within the last iteration, fails the request before any byte of a
 * response, and an idempotent one is sent again on a fresh connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <spindle/io.h>

#include "client_internal.h"
#include "text.h"

/* A pooled connection whose read buffer grew past this gives it back. */
#define RBUF_KEEP (64 * 1024)

/* Pooled connections are peeked at before reuse once the loop's last look
 * at I/O is older than this. */
#define REUSE_PEEK_NS 1000000

/* ---- Client ---------------------------------------------------------------- */

void sp_http_client_config_init(sp_http_client_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_conns_per_origin = 100;
    cfg->idle_timeout = 15;
    cfg->resolve_timeout = 5;
    cfg->connect_timeout = 10;
    cfg->first_byte_timeout = 30;
    cfg->total_timeout = 300;
    cfg->max_header_bytes = 64 * 1024;
    cfg->max_response_bytes = 64 * 1024 * 1024;
    cfg->nameservers = NULL;
}

static bool timeout_ok(double t) {
    return t < 0 || t > 0; /* 0 and NaN are not timeouts */
}

int sp_http_client_create(sp_http_client **out, const sp_http_client_config *cfg) {
    *out = NULL;
    sp_loop *loop = sp_loop_get();
    if (!loop)
        return -EPERM;
    sp_http_client_config defaults;
    if (!cfg) {
        sp_http_client_config_init(&defaults);
        cfg = &defaults;
    }
    if (!timeout_ok(cfg->idle_timeout) || !timeout_ok(cfg->resolve_timeout) ||
        !timeout_ok(cfg->connect_timeout) || !timeout_ok(cfg->first_byte_timeout) ||
        !timeout_ok(cfg->total_timeout) || cfg->max_header_bytes < 256 ||
        cfg->max_header_bytes > UINT32_MAX / 2 || cfg->max_response_bytes < 1)
        return -EINVAL;
    if (cfg->nameservers && sp_hc_dns_check_nameservers(cfg->nameservers) != 0)
        return -EINVAL;
    sp_http_client *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return -ENOMEM;
    cl->loop = loop;
    cl->cfg = *cfg;
    if (cfg->nameservers && !(cl->nameservers = strdup(cfg->nameservers))) {
        free(cl);
        return -ENOMEM;
    }
    cl->cfg.nameservers = cl->nameservers;
    *out = cl;
    return 0;
}

static void conn_free(sp_hc_conn *c);

int sp_http_client_destroy(sp_http_client *cl) {
    if (!cl)
        return 0;
    if (cl->active > 0)
        return -EBUSY;
    for (size_t i = 0; i < cl->nbuckets; i++) {
        sp_hc_origin *o = cl->buckets[i];
        while (o) {
            sp_hc_origin *next = o->next;
            sp_list *n;
            while ((n = sp_list_pop_front(&o->idle)) != NULL)
                conn_free(sp_container_of(n, sp_hc_conn, link));
            free(o);
            o = next;
        }
    }
    free(cl->buckets);
    sp_hc_dns_free(cl);
    free(cl->nameservers);
    free(cl);
    return 0;
}

void sp_http_client_get_stats(const sp_http_client *cl, sp_http_client_stats *out) {
    *out = cl->stats;
}

/* ---- Origins ----------------------------------------------------------------- */

/* FNV-1a over the lower-cased host, then the port. */
static uint32_t origin_hash(const char *host, size_t len, uint16_t port) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)host[i];
        h = (h ^ (ch >= 'A' && ch <= 'Z' ? ch + 32u : ch)) * 16777619u;
    }
    h = (h ^ (port & 0xff)) * 16777619u;
    return (h ^ (port >> 8)) * 16777619u;
}

static int table_grow(sp_http_client *cl) {
    size_t nb = cl->nbuckets ? cl->nbuckets * 2 : 16;
    sp_hc_origin **b = calloc(nb, sizeof(*b));
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < cl->nbuckets; i++) {
        sp_hc_origin *o = cl->buckets[i];
        while (o) {
            sp_hc_origin *next = o->next;
            o->next = b[o->hash & (nb - 1)];
            b[o->hash & (nb - 1)] = o;
            o = next;
        }
    }
    free(cl->buckets);
    cl->buckets = b;
    cl->nbuckets = nb;
    return 0;
}

/* An IP address needs no resolution: parse it once, here. */
static void origin_set_literal(sp_hc_origin *o) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&o->lit_addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&o->lit_addr;
    if (inet_pton(AF_INET, o->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(o->port);
        o->lit_len = sizeof(*v4);
        o->literal = true;
    } else if (inet_pton(AF_INET6, o->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(o->port);
        o->lit_len = sizeof(*v6);
        o->literal = true;
    }
}

sp_hc_origin *sp_hc_origin_get(sp_http_client *cl, const sp_hc_transport *tp, const char *host,
                               size_t host_len, uint16_t port) {
    uint32_t h = origin_hash(host, host_len, port);
    if (cl->nbuckets) {
        for (sp_hc_origin *o = cl->buckets[h & (cl->nbuckets - 1)]; o; o = o->next)
            if (o->hash == h && o->tp == tp && o->port == port && o->host_len == host_len &&
                sp_http_ieq(o->host, host, host_len))
                return o;
    }
    if (cl->norigins >= cl->nbuckets && table_grow(cl) != 0)
        return NULL;
    /* strings: host NUL, then the authority "host:port" ("[v6]:port") NUL. */
    size_t cap = host_len + 1 + host_len + 2 + 7 + 1;
    sp_hc_origin *o = calloc(1, sizeof(*o) + cap);
    if (!o)
        return NULL;
    o->client = cl;
    o->tp = tp;
    o->hash = h;
    o->port = port;
    o->host_len = host_len;
    sp_list_init(&o->idle);
    sp_list_init(&o->waiters);
    char *s = o->strings;
    memcpy(s, host, host_len);
    s[host_len] = '\0';
    o->host = s;
    char *a = s + host_len + 1;
    bool v6 = memchr(host, ':', host_len) != NULL;
    int n = snprintf(a, cap - host_len - 1, v6 ? "[%s]" : "%s", o->host);
    o->host_hdr_len = port == 80 ? (size_t)n : 0;
    n += snprintf(a + n, cap - host_len - 1 - (size_t)n, ":%u", (unsigned)port);
    if (!o->host_hdr_len)
        o->host_hdr_len = (size_t)n;
    o->authority = a;
    origin_set_literal(o);
    o->next = cl->buckets[h & (cl->nbuckets - 1)];
    cl->buckets[h & (cl->nbuckets - 1)] = o;
    cl->norigins++;
    return o;
}

/* An origin nobody uses (no request, no connection, no waiter) is freed, so
 * a client calling many hosts keeps only those it holds connections to. */
static void origin_maybe_free(sp_hc_origin *o) {
    if (o->refs > 0 || o->nconns > 0 || !sp_list_empty(&o->waiters))
        return;
    sp_http_client *cl = o->client;
    sp_hc_origin **pp = &cl->buckets[o->hash & (cl->nbuckets - 1)];
    while (*pp != o)
        pp = &(*pp)->next;
    *pp = o->next;
    cl->norigins--;
    free(o);
}

void sp_hc_origin_unref(sp_hc_origin *o) {
    o->refs--;
    origin_maybe_free(o);
}

/* ---- Waiters ------------------------------------------------------------------ */

/* A request queued for a connection, on its task's stack. */
typedef struct pool_waiter {
    sp_list link; /* in origin->waiters until granted or gone */
    sp_future fut;
    sp_hc_conn *conn; /* handed over; NULL with granted: a free slot */
    bool granted;
} pool_waiter;

/* Hands c (or, with c NULL, a free slot) to the first waiter still waiting.
 * Waiters whose wait already ended (timed out, cancelled) are dropped from
 * the queue: they leave on their own when they run. False if none waits. */
static bool grant(sp_hc_origin *o, sp_hc_conn *c) {
    sp_list *n;
    while ((n = sp_list_pop_front(&o->waiters)) != NULL) {
        o->nwaiters--;
        o->client->stats.waiting--;
        pool_waiter *w = sp_container_of(n, pool_waiter, link);
        if (w->fut.state != SP_FUT_PENDING)
            continue;
        w->granted = true;
        w->conn = c;
        sp_future_set_result(&w->fut, NULL);
        return true;
    }
    return false;
}

/* A slot (the right to have one connection open) is free again. */
static void slot_release(sp_hc_origin *o) {
    if (grant(o, NULL))
        return;
    o->nconns--;
    origin_maybe_free(o);
}

/* ---- Connections --------------------------------------------------------------- */

/* A connection's event counts among the loop's internal events while no task
 * waits on it: it cannot wake anyone, so sp_run's deadlock check ignores it. */
static void set_counted(sp_hc_conn *c, bool on) {
    if (c->counted == on)
        return;
    c->counted = on;
    sp_loop_get()->internal_events += on ? 1 : -1;
}

static void idle_take(sp_hc_conn *c) {
    sp_list_remove(&c->link);
    c->idle = false;
    c->origin->nidle--;
    c->origin->client->stats.idle--;
}

/* Closes the socket and frees c; its slot stays with the caller. */
static void conn_free(sp_hc_conn *c) {
    sp_http_client *cl = c->origin->client;
    if (c->fd >= 0) {
        event_del(&c->ev);
        set_counted(c, false);
        close(c->fd);
        cl->stats.connections--;
    }
    sp_timer_disarm(cl->loop, &c->idle_timer);
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

static void conn_close(sp_hc_conn *c) {
    sp_hc_origin *o = c->origin;
    conn_free(c);
    slot_release(o);
}

static void conn_event(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    sp_hc_conn *c = arg;
    if (what & (EV_READ | EV_CLOSED))
        c->readable = true;
    if (what & EV_CLOSED)
        c->peer_closed = true;
    if (what & EV_WRITE)
        c->writable = true;
    if (c->idle) {
        /* Readable while pooled: the upstream closed, reset, or spoke unasked,
         * unless the edge is a late one for bytes already read. */
        if (c->peer_closed || ((what & EV_READ) && !c->tp->reusable(c))) {
            idle_take(c);
            conn_close(c);
        }
        return;
    }
    sp_future *w = c->waiter;
    if (w && w->state == SP_FUT_PENDING &&
        (((c->wait_events & SP_IO_READ) && c->readable) ||
         ((c->wait_events & SP_IO_WRITE) && c->writable)))
        sp_future_set_result(w, NULL);
}

/* The idle timer is armed when a connection is pooled and not already armed,
 * and not disarmed when it is taken: a busy pool then touches the timer heap
 * once per idle_timeout, not twice per request. When it fires, a connection
 * in use is left alone (its next pooling re-arms it), one pooled since is
 * given the rest of its time. */
static void idle_expired(sp_cb *cb) {
    sp_hc_conn *c = sp_container_of(cb, sp_hc_conn, idle_timer.cb);
    if (!c->idle)
        return;
    sp_http_client *cl = c->origin->client;
    int64_t due = c->idle_since + (int64_t)(cl->cfg.idle_timeout * 1e9);
    if (sp_loop_now(cl->loop) < due) {
        sp_timer_arm(cl->loop, &c->idle_timer, due);
        return;
    }
    idle_take(c);
    conn_close(c);
}

int sp_hc_wait(sp_hc_conn *c, int events, int64_t deadline) {
    if (((events & SP_IO_READ) && c->readable) || ((events & SP_IO_WRITE) && c->writable))
        return 0;
    sp_future fut;
    sp_future_init(&fut);
    c->waiter = &fut;
    c->wait_events = events;
    set_counted(c, false);
    int rc = sp_future_await_deadline(&fut, deadline, -ETIMEDOUT);
    set_counted(c, true);
    c->waiter = NULL;
    sp_future_fini(&fut);
    return rc;
}

/* One non-blocking connect to one address, the event added once it is under
 * way. Returns 0 (c->fd open), -ETIMEDOUT, -ECANCELED, or the connect's
 * -errno (c->fd closed). */
static int connect_addr(sp_hc_conn *c, const struct sockaddr *sa, socklen_t len, int64_t deadline) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = 0;
    if (connect(fd, sa, len) != 0 && errno != EINPROGRESS && errno != EINTR)
        rc = -errno;
    c->fd = fd;
    c->readable = c->writable = false;
    if (rc == 0) {
        event_assign(&c->ev, sp_loop_get()->base, fd,
                     EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, conn_event, c);
        if (event_add(&c->ev, NULL) != 0) {
            close(fd);
            c->fd = -1;
            return -ENOMEM;
        }
        set_counted(c, true);
        rc = sp_hc_wait(c, SP_IO_WRITE, deadline);
        if (rc == 0) {
            int soerr = 0;
            socklen_t l = sizeof(soerr);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0)
                soerr = errno;
            rc = -soerr;
        }
        if (rc != 0) {
            event_del(&c->ev);
            set_counted(c, false);
        }
    }
    if (rc != 0) {
        close(fd);
        c->fd = -1;
    }
    return rc;
}

/* Opens a connection in a slot the caller holds: resolves (unless the host
 * is an address), then tries each address in turn within connect_timeout.
 * On failure the slot is released. */
static int conn_open(sp_hc_call *call, sp_hc_conn **out) {
    sp_hc_origin *o = call->origin;
    sp_http_client *cl = call->client;
    sp_hc_addrs addrs;
    int rc = 0;
    if (o->literal) {
        addrs.n = 1;
        addrs.len[0] = o->lit_len;
        memcpy(&addrs.addr[0], &o->lit_addr, o->lit_len);
    } else {
        rc = sp_hc_resolve(call, &addrs);
    }
    sp_hc_conn *c = NULL;
    if (rc == 0 && !(c = calloc(1, sizeof(*c))))
        rc = sp_hc_fail(call, -ENOMEM, "out of memory connecting to %s", o->authority);
    if (rc != 0) {
        slot_release(o);
        return rc;
    }
    c->origin = o;
    c->tp = o->tp;
    c->fd = -1;
    sp_timer_init(&c->idle_timer, idle_expired);
    int64_t deadline = sp_hc_deadline(call, call->connect_timeout);
    for (size_t i = 0; i < addrs.n; i++) {
        rc = connect_addr(c, (const struct sockaddr *)&addrs.addr[i], addrs.len[i], deadline);
        if (rc == 0 || rc == -ETIMEDOUT || rc == -ECANCELED)
            break;
    }
    if (rc != 0) {
        if (rc == -ETIMEDOUT)
            sp_hc_timed_out(call, deadline, call->connect_timeout, "connecting to");
        else if (rc == -ECONNREFUSED)
            sp_hc_fail(call, rc, "connection refused by %s", o->authority);
        else if (rc != -ECANCELED)
            sp_hc_fail(call, rc, "cannot connect to %s: %s", o->authority, strerror(-rc));
        free(c);
        slot_release(o);
        return rc;
    }
    cl->stats.connections++;
    cl->stats.opened++;
    *out = c;
    return 0;
}

/* A pooled connection handed over (idle or by a releaser) is checked before
 * use (see the top of the file); a stale one is dropped and a new one opened
 * in its slot. */
static int take_checked(sp_hc_call *call, sp_hc_conn *c, sp_hc_conn **out) {
    bool fresh = sp_now_ns() - call->client->loop->io_polled_ns < REUSE_PEEK_NS;
    if (!c->peer_closed && (fresh || c->tp->reusable(c))) {
        c->readable = false; /* nothing to read: the response brings an edge */
        call->client->stats.reused++;
        *out = c;
        return 0;
    }
    conn_free(c);
    return conn_open(call, out);
}

int sp_hc_acquire(sp_hc_call *call, sp_hc_conn **out) {
    sp_hc_origin *o = call->origin;
    sp_http_client *cl = call->client;
    if (!sp_list_empty(&o->idle)) {
        sp_hc_conn *c = sp_container_of(o->idle.next, sp_hc_conn, link);
        idle_take(c);
        return take_checked(call, c, out);
    }
    size_t max = cl->cfg.max_conns_per_origin;
    if (sp_list_empty(&o->waiters) && (max == 0 || o->nconns < max)) {
        o->nconns++;
        return conn_open(call, out);
    }
    pool_waiter w = {0};
    sp_future_init(&w.fut);
    sp_list_push_back(&o->waiters, &w.link);
    o->nwaiters++;
    cl->stats.waiting++;
    int64_t deadline = sp_hc_deadline(call, call->connect_timeout);
    int rc = sp_future_await_deadline(&w.fut, deadline, -ETIMEDOUT);
    sp_future_fini(&w.fut);
    if (!w.granted) {
        if (sp_list_linked(&w.link)) {
            sp_list_remove(&w.link);
            o->nwaiters--;
            cl->stats.waiting--;
        }
        if (rc == -ETIMEDOUT)
            return sp_hc_timed_out(call, deadline, call->connect_timeout,
                                   "waiting for a pooled connection to");
        return rc;
    }
    if (rc != 0) {
        /* Cancelled after being served: pass it on, as asyncio's
         * Semaphore.acquire does. */
        if (w.conn)
            sp_hc_release(w.conn, true);
        else
            slot_release(o);
        return rc;
    }
    if (w.conn)
        return take_checked(call, w.conn, out);
    return conn_open(call, out);
}

int sp_hc_reconnect(sp_hc_call *call, sp_hc_conn **c) {
    conn_free(*c);
    *c = NULL;
    return conn_open(call, c);
}

void sp_hc_release(sp_hc_conn *c, bool reusable) {
    if (!reusable || c->peer_closed) {
        conn_close(c);
        return;
    }
    sp_hc_origin *o = c->origin;
    sp_http_client *cl = o->client;
    c->requests++;
    c->rlen = 0;
    if (c->rcap > RBUF_KEEP) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
    if (grant(o, c))
        return;
    c->idle = true;
    c->idle_since = sp_loop_now(cl->loop);
    /* Most recently used first: the front stays warm, the back expires. */
    c->link.next = o->idle.next;
    c->link.prev = &o->idle;
    o->idle.next->prev = &c->link;
    o->idle.next = &c->link;
    o->nidle++;
    cl->stats.idle++;
    if (cl->cfg.idle_timeout > 0 && c->idle_timer.heap_idx == SIZE_MAX &&
        !sp_list_linked(&c->idle_timer.cb.priv_link))
        sp_timer_arm(cl->loop, &c->idle_timer,
                     c->idle_since + (int64_t)(cl->cfg.idle_timeout * 1e9));
}
