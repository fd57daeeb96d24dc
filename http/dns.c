/* Name resolution for the HTTP client: libevent's evdns on the loop's own
 * event_base (nameservers from /etc/resolv.conf or the client's setting,
 * names from /etc/hosts), so a lookup never blocks the loop. Numeric hosts
 * never come here: pool.c connects to them directly. */
#include <errno.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

/* One lookup. The waiting task may give up (cancelled, timed out) before
 * evdns answers; evdns still calls back once, so the lookup lives on the heap
 * and the callback frees it then. */
typedef struct lookup {
    sp_future *fut; /* NULL once the task gave up */
    sp_hc_addrs *out;
    int err; /* EVUTIL_EAI_*, 0 */
    bool done;
} lookup;

static void lookup_done(int err, struct evutil_addrinfo *ai, void *arg) {
    lookup *l = arg;
    if (!l->fut) {
        if (ai)
            evutil_freeaddrinfo(ai);
        free(l);
        return;
    }
    l->done = true;
    l->err = err;
    sp_hc_addrs *out = l->out;
    for (struct evutil_addrinfo *a = ai; a && out->n < SP_HC_MAX_ADDRS; a = a->ai_next) {
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            a->ai_addrlen > sizeof(out->addr[0]))
            continue;
        memcpy(&out->addr[out->n], a->ai_addr, a->ai_addrlen);
        out->len[out->n++] = (socklen_t)a->ai_addrlen;
    }
    if (ai)
        evutil_freeaddrinfo(ai);
    /* evdns may answer inside evdns_getaddrinfo (from /etc/hosts), before
     * the task waits: the result is then simply there. */
    if (l->fut->state == SP_FUT_PENDING)
        sp_future_set_result(l->fut, NULL);
}

/* Splits "ip[:port],ip[:port]..." and calls fn on each entry (NUL-terminated
 * in a copy). Returns 0, fn's first error, or -EINVAL for an entry too long. */
static int each_nameserver(const char *list, int (*fn)(const char *entry, void *arg), void *arg) {
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ", ");
        if (n > 0) {
            char entry[80];
            if (n >= sizeof(entry))
                return -EINVAL;
            memcpy(entry, p, n);
            entry[n] = '\0';
            int rc = fn(entry, arg);
            if (rc != 0)
                return rc;
        }
        p += n;
        p += strspn(p, ", ");
    }
    return 0;
}

static int check_entry(const char *entry, void *arg) {
    (void)arg;
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    return evutil_parse_sockaddr_port(entry, (struct sockaddr *)&ss, &len) == 0 ? 0 : -EINVAL;
}

int sp_hc_dns_check_nameservers(const char *list) {
    if (list[strspn(list, ", ")] == '\0')
        return -EINVAL; /* not one entry */
    return each_nameserver(list, check_entry, NULL);
}

static int add_entry(const char *entry, void *arg) {
    return evdns_base_nameserver_ip_add(arg, entry) == 0 ? 0 : -EINVAL;
}

/* The client's resolver, made at the first lookup. Inactive, it keeps no
 * event in the loop (EVDNS_BASE_DISABLE_WHEN_INACTIVE), so an idle client
 * does not hide a deadlock from sp_run. */
static int resolver(sp_http_client *cl, struct evdns_base **out) {
    if (cl->dns) {
        *out = cl->dns;
        return 0;
    }
    int flags = EVDNS_BASE_DISABLE_WHEN_INACTIVE;
    if (!cl->nameservers)
        flags |= EVDNS_BASE_INITIALIZE_NAMESERVERS;
    struct evdns_base *b = evdns_base_new(cl->loop->base, flags);
    if (!b)
        return -ENOMEM;
    if (cl->nameservers) {
        /* A missing hosts file is no error: names then go to the nameservers. */
        evdns_base_load_hosts(b, NULL);
        int rc = each_nameserver(cl->nameservers, add_entry, b);
        if (rc != 0) {
            evdns_base_free(b, 0);
            return rc;
        }
    }
    *out = cl->dns = b;
    return 0;
}

int sp_hc_resolve(sp_hc_call *call, sp_hc_addrs *out) {
    sp_hc_origin *o = call->origin;
    double timeout = call->client->cfg.resolve_timeout;
    struct evdns_base *base;
    int rc = resolver(call->client, &base);
    if (rc != 0)
        return sp_hc_fail(call, rc, "cannot set up name resolution for '%s'", o->host);
    lookup *l = calloc(1, sizeof(*l));
    if (!l)
        return sp_hc_fail(call, -ENOMEM, "out of memory resolving '%s'", o->host);
    sp_future fut;
    sp_future_init(&fut);
    out->n = 0;
    l->fut = &fut;
    l->out = out;
    struct evutil_addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)o->port);
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(base, o->host, port, &hints, lookup_done, l);
    int64_t deadline = sp_hc_deadline(call, timeout);
    if (!l->done)
        rc = sp_future_await_deadline(&fut, deadline, -ETIMEDOUT);
    if (!l->done) {
        /* Given up: the cancel makes evdns call back (later), which frees l. */
        l->fut = NULL;
        evdns_getaddrinfo_cancel(req);
        sp_future_fini(&fut);
        if (rc == -ETIMEDOUT)
            return sp_hc_timed_out(call, deadline, timeout, "resolving");
        return rc;
    }
    int err = l->err;
    free(l);
    sp_future_fini(&fut);
    if (rc != 0)
        return rc; /* cancelled just as the answer came */
    if (err == EVUTIL_EAI_MEMORY)
        return sp_hc_fail(call, -ENOMEM, "out of memory resolving '%s'", o->host);
    if (err != 0)
        return sp_hc_fail(call, -ENXIO, "cannot resolve '%s': %s", o->host,
                          evutil_gai_strerror(err));
    if (out->n == 0)
        return sp_hc_fail(call, -ENXIO, "'%s' has no IPv4 or IPv6 address", o->host);
    return 0;
}

void sp_hc_dns_free(sp_http_client *cl) {
    if (cl->dns)
        evdns_base_free(cl->dns, 1);
    cl->dns = NULL;
}
