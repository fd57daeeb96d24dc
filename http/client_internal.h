/* The HTTP client's private structures: the client, its origins with their
 * connection pools, a connection and the response it carries, the transport
 * under a connection, and the call context of one request. Shared by
 * client.c (requests, responses), pool.c (origins, pools, connections) and
 * dns.c (resolution). Private to http/. */
#ifndef SP_HTTP_CLIENT_INTERNAL_H
#define SP_HTTP_CLIENT_INTERNAL_H

#include <event2/event_struct.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <spindle/client.h>
#include <sys/uio.h>

#include "list.h"
#include "loop.h"
#include "transport.h"

typedef struct sp_hc_conn sp_hc_conn;
typedef struct sp_hc_origin sp_hc_origin;

/* How bytes move on a client connection, with the return conventions of
 * transport.h (SP_TP_AGAIN, SP_TP_WANT_READ, SP_TP_WANT_WRITE, -errno). An
 * origin picks its transport by scheme: TLS adds its own (a handshake after
 * the TCP connect, then these calls over the library). */
typedef struct sp_hc_transport {
    const char *name;
    ssize_t (*read)(sp_hc_conn *c, void *buf, size_t len);
    /* Never raises SIGPIPE. */
    ssize_t (*writev)(sp_hc_conn *c, const struct iovec *iov, int iovcnt);
    /* Whether a pooled connection can carry a request: nothing arrived while
     * it sat idle (no end of stream, no reset, no stray byte). Consumes
     * nothing. */
    bool (*reusable)(sp_hc_conn *c);
} sp_hc_transport;

extern const sp_hc_transport sp_hc_tcp;

/* A header as offsets into the connection's read buffer, which may move
 * while the response is read. */
typedef struct sp_hc_span {
    uint32_t off, len;
} sp_hc_span;

/* The addresses a host resolved to, in the order to try them. */
#define SP_HC_MAX_ADDRS 8
typedef struct sp_hc_addrs {
    size_t n;
    socklen_t len[SP_HC_MAX_ADDRS];
    struct sockaddr_storage addr[SP_HC_MAX_ADDRS];
} sp_hc_addrs;

/* One request under way: its origin, deadlines, and the message of its
 * failure, published once the request gives up (a retry may still succeed). */
typedef struct sp_hc_call {
    sp_http_client *client;
    sp_hc_origin *origin;
    int64_t total_deadline; /* ns */
    double total_timeout, connect_timeout, first_byte_timeout;
    char msg[sizeof(((sp_http_client_error *)0)->msg)];
} sp_hc_call;

enum { SP_HC_BODY_NONE, SP_HC_BODY_WHOLE, SP_HC_BODY_STREAMING };

/* The response a connection carries; embedded in the connection, so a request
 * allocates nothing. Its views point into the connection's rbuf. */
struct sp_http_client_resp {
    sp_hc_conn *conn;
    llhttp_t parser;
    int status, version;
    bool head_request; /* HEAD: no body whatever the headers say */
    bool stream;       /* the request asked for the head only */
    bool close_after;  /* the request said Connection: close */
    bool got_byte;     /* a byte of the response arrived */
    bool head_done, msg_done;
    bool keep_alive;         /* both sides allow another request (known at msg_done) */
    bool extra;              /* bytes followed the response: the connection is not reusable */
    bool in_field;           /* a header name is open */
    bool whole_read;         /* the body is in rbuf[dec_off..dec_off + dec_len) */
    bool piece_out;          /* rbuf[dec_off..) was handed out as a piece */
    uint8_t body_mode;       /* SP_HC_BODY_*: how the caller reads the body */
    int err;                 /* a failed read: every later read fails the same way */
    int cb_err;              /* set by a parser callback that stopped the parser */
    size_t ppos;             /* rbuf bytes fed to the parser */
    size_t head_end;         /* rbuf bytes of the head(s), 0 until known */
    size_t dec_off, dec_len; /* decoded body bytes, moved together after the head */
    uint64_t body_total;     /* decoded body bytes so far */
    size_t max_body;         /* for a body read whole */
    int64_t total_deadline;
    double total_timeout;
    char *body_buf; /* a streamed body read whole by sp_http_client_resp_body */
    size_t body_len, body_cap;
    char errmsg[sizeof(((sp_http_client_error *)0)->msg)]; /* err's message */
    size_t nhdrs;
    sp_hc_span names[SP_HTTP_MAX_HEADERS], values[SP_HTTP_MAX_HEADERS];
};

struct sp_hc_conn {
    sp_hc_origin *origin;
    const sp_hc_transport *tp;
    int fd;
    struct event ev;   /* edge-triggered read and write, added for the whole life */
    sp_future *waiter; /* the task waiting for an edge */
    int wait_events;   /* SP_IO_READ / SP_IO_WRITE it waits for */
    bool readable;     /* an edge arrived since the socket was last seen drained */
    bool writable;
    bool peer_closed;    /* EV_CLOSED seen: the upstream sends no more */
    bool idle;           /* pooled, in origin->idle */
    bool counted;        /* counted in loop->internal_events: no task waits on it */
    unsigned requests;   /* responses completed on it */
    int64_t idle_since;  /* ns */
    sp_list link;        /* in origin->idle while idle */
    sp_timer idle_timer; /* armed lazily: see pool.c */
    char *rbuf;          /* kept across requests; shrunk when it grew large */
    size_t rlen, rcap;
    char *wbuf; /* the request head */
    size_t wcap;
    sp_http_client_resp resp;
};

struct sp_hc_origin {
    sp_hc_origin *next; /* hash chain */
    sp_http_client *client;
    const sp_hc_transport *tp;
    uint32_t hash;
    uint16_t port;
    bool literal;  /* host is an IP address: no resolution */
    size_t refs;   /* requests under way for this origin */
    size_t nconns; /* connections open or being opened (slots taken) */
    sp_list idle;  /* pooled connections, most recently used first */
    sp_list waiters;
    size_t nidle, nwaiters;
    socklen_t lit_len;
    struct sockaddr_storage lit_addr;
    size_t host_len;       /* of host */
    size_t host_hdr_len;   /* of the Host header value, a prefix of authority */
    const char *host;      /* bare name or address, NUL-terminated */
    const char *authority; /* "host:port" (IPv6 in brackets), for messages and Host */
    char strings[];
};

struct sp_http_client {
    sp_loop *loop;
    sp_http_client_config cfg;
    char *nameservers;
    sp_hc_origin **buckets;
    size_t nbuckets, norigins;
    struct evdns_base *dns; /* created at the first name to resolve */
    size_t active;          /* requests under way and responses not freed */
    sp_http_client_stats stats;
};

/* ---- Call context (client.c) ---------------------------------------------- */

/* Records the call's failure message; returns code. */
int sp_hc_fail(sp_hc_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records a timeout: the phase's own (`what`, e.g. "connecting to") or the
 * call's total one, whichever expired; returns -ETIMEDOUT. */
int sp_hc_timed_out(sp_hc_call *call, int64_t phase_deadline, double phase_timeout,
                    const char *what);
/* The earlier of now + timeout (negative: none) and the call's total deadline. */
int64_t sp_hc_deadline(const sp_hc_call *call, double timeout);

/* ---- Origins, pools, connections (pool.c) --------------------------------- */

/* The origin of a scheme (its transport), host (bare, host_len bytes) and
 * port, created if new. NULL on -ENOMEM. */
sp_hc_origin *sp_hc_origin_get(sp_http_client *cl, const sp_hc_transport *tp, const char *host,
                               size_t host_len, uint16_t port);
/* Drops a request's reference; frees the origin once nothing uses it. */
void sp_hc_origin_unref(sp_hc_origin *o);

/* A connection to the call's origin: a pooled one checked for a close while
 * idle, else a new one within max_conns_per_origin, else the first to come
 * back, waiting FIFO. Returns 0 or an error recorded in call. Suspends. */
int sp_hc_acquire(sp_hc_call *call, sp_hc_conn **out);

/* Replaces *c, which failed, by a new connection in the same slot. Returns 0
 * or an error recorded in call (the slot then freed). Suspends. */
int sp_hc_reconnect(sp_hc_call *call, sp_hc_conn **c);

/* Gives c back: to the first waiter or the pool if reusable, else closes it.
 * Never suspends. */
void sp_hc_release(sp_hc_conn *c, bool reusable);

/* Waits for a read or write edge (events: SP_IO_READ, SP_IO_WRITE) on c
 * until deadline (ns). Returns 0, -ETIMEDOUT, -ECANCELED. Suspends. */
int sp_hc_wait(sp_hc_conn *c, int events, int64_t deadline);

/* ---- Resolution (dns.c) ---------------------------------------------------- */

/* Resolves the call's origin (which must not be a literal) into out, within
 * resolve_timeout. Returns 0, -ENXIO, -ETIMEDOUT, -ENOMEM (recorded in call)
 * or -ECANCELED. Suspends. */
int sp_hc_resolve(sp_hc_call *call, sp_hc_addrs *out);

/* Checks a nameservers setting ("ip[:port],..."). Returns 0 or -EINVAL. */
int sp_hc_dns_check_nameservers(const char *list);

/* Frees the client's resolver; resolutions still under way are failed. */
void sp_hc_dns_free(sp_http_client *cl);

#endif
