/* HTTP/1.1 requests and responses. The request head is built with memcpy in
 * the connection's write buffer and sent with the body in one writev; the
 * response is parsed by llhttp (HTTP_RESPONSE mode) into offsets in the
 * connection's read buffer, and its body decoded in place right after the
 * head (Content-Length, chunked, or up to the close). The path:
 * sp_http_client_request -> prepare -> sp_hc_acquire (pool.c) -> send_request
 * -> read_head -> read_whole, or, streamed, sp_http_client_resp_read. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <spindle/io.h>

#include "client_internal.h"
#include "text.h"

#define RBUF_MIN    4096
#define STREAM_ROOM (16 * 1024) /* free bytes after a streamed response's head */

/* ---- Call context ---------------------------------------------------------- */

int sp_hc_fail(sp_hc_call *call, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
    va_end(ap);
    return code;
}

int64_t sp_hc_deadline(const sp_hc_call *call, double timeout) {
    if (timeout < 0)
        return call->total_deadline;
    int64_t d = sp_deadline_after(timeout);
    return d < call->total_deadline ? d : call->total_deadline;
}

int sp_hc_timed_out(sp_hc_call *call, int64_t phase_deadline, double phase_timeout,
                    const char *what) {
    const char *who = strcmp(what, "resolving") == 0 ? call->origin->host : call->origin->authority;
    if (phase_deadline >= call->total_deadline)
        return sp_hc_fail(call, -ETIMEDOUT, "total timeout (%g s) expired while %s %s",
                          call->total_timeout, what, who);
    return sp_hc_fail(call, -ETIMEDOUT, "timed out %s %s after %g s", what, who, phase_timeout);
}

/* Hands the outcome to the caller: the code and message in err, and the
 * message as the task's error message (a cancellation carries none). */
static int publish(sp_hc_call *call, int rc, sp_http_client_error *err) {
    if (rc == 0)
        return 0;
    if (rc == -ECANCELED)
        snprintf(call->msg, sizeof(call->msg), "cancelled");
    else if (!call->msg[0])
        snprintf(call->msg, sizeof(call->msg), "%s", strerror(-rc));
    if (err) {
        err->code = rc;
        memcpy(err->msg, call->msg, sizeof(err->msg));
    }
    if (rc != -ECANCELED)
        sp_fail(rc, "%s", call->msg);
    return rc;
}

/* ---- Parser callbacks ----------------------------------------------------------- */

static llhttp_settings_t g_settings;
static pthread_once_t g_settings_once = PTHREAD_ONCE_INIT;

static sp_http_client_resp *resp_of(llhttp_t *p) {
    return p->data;
}

static uint32_t off_of(sp_http_client_resp *r, const char *at) {
    return (uint32_t)(at - r->conn->rbuf);
}

/* Stops the parser with an error of ours; the message names the upstream. */
__attribute__((format(printf, 3, 4))) static int stop(sp_http_client_resp *r, int code,
                                                      const char *fmt, ...) {
    int n = snprintf(r->errmsg, sizeof(r->errmsg), "%s: ", r->conn->origin->authority);
    if (n < 0 || (size_t)n >= sizeof(r->errmsg))
        return r->cb_err = code, -1; /* a host name too long leaves no room */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg + n, sizeof(r->errmsg) - (size_t)n, fmt, ap);
    va_end(ap);
    r->cb_err = code;
    return -1;
}

/* Trailer fields after a chunked body are dropped, but their bytes count as
 * body bytes, so an endless trailer section ends as a long body does. */
static int trailer_bytes(sp_http_client_resp *r, size_t len) {
    r->body_total += len;
    if (r->body_mode == SP_HC_BODY_WHOLE && r->body_total > r->max_body)
        return stop(r, -EMSGSIZE, "response body exceeds max_response_bytes (%zu)", r->max_body);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
    sp_http_client_resp *r = resp_of(p);
    if (r->head_done)
        return trailer_bytes(r, len);
    if (len == 0)
        return 0; /* an empty span at the end of a read */
    if (!r->in_field) {
        if (r->nhdrs == SP_HTTP_MAX_HEADERS)
            return stop(r, -EMSGSIZE, "more than %d header fields", SP_HTTP_MAX_HEADERS);
        r->names[r->nhdrs] = (sp_hc_span){off_of(r, at), (uint32_t)len};
        r->values[r->nhdrs] = (sp_hc_span){0, 0};
        r->in_field = true;
        return 0;
    }
    r->names[r->nhdrs].len += (uint32_t)len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
    sp_http_client_resp *r = resp_of(p);
    if (r->head_done)
        return trailer_bytes(r, len);
    if (len == 0)
        return 0;
    if (!r->in_field)
        return stop(r, -EPROTO, "a response header without a name");
    /* The pieces of a value follow its colon and each other with only
     * whitespace between; a line break there is an obs-fold, which llhttp
     * would splice into the value (and a proxy forward): refuse it. */
    sp_hc_span *v = &r->values[r->nhdrs], *n = &r->names[r->nhdrs];
    const char *rbuf = r->conn->rbuf;
    const char *from = rbuf + (v->len ? v->off + v->len : n->off + n->len + 1);
    if (memchr(from, '\n', (size_t)(at - from)))
        return stop(r, -EPROTO, "obsolete line folding in a response header");
    if (v->len == 0)
        v->off = off_of(r, at);
    v->len += (uint32_t)len;
    return 0;
}

static int on_header_value_complete(llhttp_t *p) {
    sp_http_client_resp *r = resp_of(p);
    if (r->head_done)
        return 0;
    /* llhttp takes ": value" as a field with an empty name (RFC 9110 5.1:
     * a name is a token, at least one character). */
    if (!r->in_field)
        return stop(r, -EPROTO, "a response header without a name");
    r->nhdrs++;
    r->in_field = false;
    return 0;
}

static int on_headers_complete(llhttp_t *p) {
    sp_http_client_resp *r = resp_of(p);
    int status = p->status_code;
    r->status = status;
    r->version = p->http_major * 10 + p->http_minor;
    if (status == 101)
        return stop(r, -EPROTO, "101 Switching Protocols without an upgrade request");
    bool informational = status >= 100 && status < 200;
    if (!informational)
        r->head_done = true;
    /* No body for these, whatever Content-Length says (RFC 9112 6.3): llhttp
     * would wait for one after a 204 or 304 announcing a length. */
    if (r->head_request || informational || status == 204 || status == 304)
        return 1;
    if (r->body_mode == SP_HC_BODY_WHOLE && (p->flags & F_CONTENT_LENGTH) &&
        p->content_length > r->max_body)
        return stop(r, -EMSGSIZE, "Content-Length %llu exceeds max_response_bytes (%zu)",
                    (unsigned long long)p->content_length, r->max_body);
    /* Pause so that feed() learns where the head ends: the body is decoded
     * right after it. */
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    sp_http_client_resp *r = resp_of(p);
    /* llhttp reports an open body span at the end of each execute, even an
     * empty one. */
    if (len == 0)
        return 0;
    r->body_total += len;
    if (r->body_mode == SP_HC_BODY_WHOLE && r->body_total > r->max_body)
        return stop(r, -EMSGSIZE, "response body exceeds max_response_bytes (%zu)", r->max_body);
    /* Decoded bytes gather at dec_off: the destination never passes `at`,
     * and llhttp never looks back at bytes it has parsed. */
    char *dst = r->conn->rbuf + r->dec_off + r->dec_len;
    if (dst != at)
        memmove(dst, at, len);
    r->dec_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *p) {
    sp_http_client_resp *r = resp_of(p);
    if (!r->head_done) {
        /* A 1xx interim response (103 Early Hints, an unasked 100): its
         * headers are dropped and the real response follows. */
        r->nhdrs = 0;
        r->in_field = false;
        return 0;
    }
    r->msg_done = true;
    r->keep_alive = llhttp_should_keep_alive(p) && !r->close_after;
    return HPE_PAUSED;
}

static void settings_init(void) {
    llhttp_settings_init(&g_settings);
    g_settings.on_header_field = on_header_field;
    g_settings.on_header_value = on_header_value;
    g_settings.on_header_value_complete = on_header_value_complete;
    g_settings.on_headers_complete = on_headers_complete;
    g_settings.on_body = on_body;
    g_settings.on_message_complete = on_message_complete;
}

/* ---- Reading ------------------------------------------------------------------- */

/* Feeds the parser what it has not seen. Returns 0, or -1 when it stopped
 * (r->cb_err set by us, else a malformed response). */
static int feed(sp_http_client_resp *r, size_t max_head) {
    sp_hc_conn *c = r->conn;
    /* After a pause the parser runs once more even without input: a message
     * without a body completes then. */
    bool resumed = false;
    while (!r->msg_done && (r->ppos < c->rlen || resumed)) {
        llhttp_errno_t e = llhttp_execute(&r->parser, c->rbuf + r->ppos, c->rlen - r->ppos);
        resumed = false;
        if (e == HPE_OK) {
            r->ppos = c->rlen;
            break;
        }
        if (e != HPE_PAUSED)
            return -1;
        r->ppos = (size_t)(llhttp_get_error_pos(&r->parser) - c->rbuf);
        llhttp_resume(&r->parser);
        resumed = true;
        if (!r->head_end) {
            r->head_end = r->dec_off = r->ppos;
            if (r->head_end > max_head)
                break;
        }
    }
    if ((r->head_end ? r->head_end : r->ppos) > max_head) {
        stop(r, -EMSGSIZE, "response head exceeds max_header_bytes (%zu)", max_head);
        return -1;
    }
    if (r->msg_done && r->ppos < c->rlen)
        r->extra = true; /* bytes after the response: never reuse this connection */
    return 0;
}

/* After the head, drops the raw bytes parsed since the decoded ones (chunk
 * framing), keeping what the parser has not seen right behind them. */
static void compact(sp_http_client_resp *r) {
    sp_hc_conn *c = r->conn;
    size_t end = r->dec_off + r->dec_len;
    if (!r->head_end || r->msg_done || end == r->ppos)
        return;
    memmove(c->rbuf + end, c->rbuf + r->ppos, c->rlen - r->ppos);
    c->rlen -= r->ppos - end;
    r->ppos = end;
}

/* Makes room at the end of rbuf. A streamed response's buffer never moves
 * once the head is out (header views point into it): compact() and the room
 * left after the head (STREAM_ROOM) always leave space there. */
static int make_room(sp_http_client_resp *r) {
    sp_hc_conn *c = r->conn;
    if (c->rlen < c->rcap)
        return 0;
    size_t cap = c->rcap ? c->rcap * 2 : RBUF_MIN;
    /* A body of known length read whole: one buffer for all of it. */
    if (r->head_end && (r->parser.flags & F_CONTENT_LENGTH) &&
        c->rlen + r->parser.content_length > cap)
        cap = c->rlen + (size_t)r->parser.content_length;
    char *n = realloc(c->rbuf, cap);
    if (!n)
        return -ENOMEM;
    c->rbuf = n;
    c->rcap = cap;
    return 0;
}

/* Reads what the socket has, waiting for an edge up to deadline. A socket
 * known drained (EAGAIN, or the pool's peek before reuse) is not read before
 * the next edge, so a response that fits in one read costs one read. A short
 * read is no proof of that: an end of stream may follow the bytes without a
 * new edge. Returns the count, 0 at the end of stream, -ETIMEDOUT,
 * -ECONNRESET, -ECANCELED, -ENOMEM. */
static ssize_t fill(sp_http_client_resp *r, int64_t deadline) {
    sp_hc_conn *c = r->conn;
    int rc = make_room(r);
    if (rc != 0)
        return rc;
    for (;;) {
        if (!c->readable && (rc = sp_hc_wait(c, SP_IO_READ, deadline)) != 0)
            return rc;
        size_t room = c->rcap - c->rlen;
        ssize_t n = c->tp->read(c, c->rbuf + c->rlen, room);
        if (n >= 0) {
            c->rlen += (size_t)n;
            return n;
        }
        if (n == SP_TP_AGAIN || n == SP_TP_WANT_READ) {
            c->readable = false;
            continue;
        }
        if (n != SP_TP_WANT_WRITE)
            return n;
        c->writable = false;
        if ((rc = sp_hc_wait(c, SP_IO_WRITE, deadline)) != 0)
            return rc;
    }
}

static int at_eof(sp_hc_call *call, sp_http_client_resp *r) {
    const char *who = r->conn->origin->authority;
    if (!r->got_byte)
        return sp_hc_fail(call, -ECONNRESET, "%s closed the connection before responding", who);
    if (!r->head_end)
        return sp_hc_fail(call, -EPROTO, "%s closed the connection in the middle of the head", who);
    llhttp_errno_t e = llhttp_finish(&r->parser);
    if ((e == HPE_OK || e == HPE_PAUSED) && r->msg_done)
        return 0; /* a body delimited by the close */
    if (r->parser.flags & F_CONTENT_LENGTH)
        return sp_hc_fail(call, -EPROTO, "%s closed the connection after %llu of %llu body bytes",
                          who, (unsigned long long)r->body_total,
                          (unsigned long long)(r->body_total + r->parser.content_length));
    return sp_hc_fail(call, -EPROTO, "%s closed the connection in the middle of the body", who);
}

/* Reads the next bytes and parses them. Returns 0 once something was parsed
 * (or the response ended), else a failure recorded in call. */
static int advance(sp_hc_call *call, sp_http_client_resp *r, int64_t deadline, double timeout) {
    sp_hc_conn *c = r->conn;
    ssize_t n = fill(r, deadline);
    if (n > 0) {
        r->got_byte = true;
        if (feed(r, call->client->cfg.max_header_bytes) != 0) {
            if (r->cb_err)
                return sp_hc_fail(call, r->cb_err, "%s", r->errmsg);
            return sp_hc_fail(call, -EPROTO, "malformed response from %s: %s", c->origin->authority,
                              llhttp_get_error_reason(&r->parser));
        }
        compact(r);
        return 0;
    }
    if (n == 0)
        return at_eof(call, r);
    if (n == -ETIMEDOUT)
        return sp_hc_timed_out(call, deadline, timeout,
                               r->got_byte ? "reading the response from"
                                           : "waiting for the first response byte from");
    if (n == -ECANCELED)
        return (int)n;
    if (n == -ENOMEM)
        return sp_hc_fail(call, -ENOMEM, "out of memory reading the response from %s",
                          c->origin->authority);
    return sp_hc_fail(call, -ECONNRESET, "connection reset by %s%s", c->origin->authority,
                      r->got_byte ? "" : " before any response byte");
}

/* ---- Requests ---------------------------------------------------------------------- */

/* A value may not break the head: no CR, LF or NUL. */
static bool value_ok(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            return false;
    return true;
}

/* A view of a string literal, without a strlen per use. */
#define LIT(s) ((sp_str){s, sizeof(s) - 1})

/* What a request needs once checked: the URL's parts and the head's shape. */
typedef struct prepared {
    const char *method;
    size_t mlen;
    const sp_hc_transport *tp; /* by scheme */
    const char *host;          /* bare (no brackets) */
    size_t host_len;
    uint16_t port;
    const char *target; /* path and query; a leading '/' is added when missing */
    size_t target_len;
    bool add_slash;
    bool idempotent, head, send_length, has_host, close_after;
    size_t hdr_bytes;
} prepared;

static int parse_url(sp_hc_call *call, const char *url, prepared *pr) {
    if (!url)
        return sp_hc_fail(call, -EINVAL, "no URL");
    const char *sep = strstr(url, "://");
    if (!sep)
        return sp_hc_fail(call, -EINVAL, "'%s' is not an absolute http:// URL", url);
    size_t slen = (size_t)(sep - url);
    if (slen == 5 && sp_http_ieq(url, "https", 5))
        return sp_hc_fail(call, -EPROTONOSUPPORT, "https is not supported yet ('%s')", url);
    if (slen != 4 || !sp_http_ieq(url, "http", 4))
        return sp_hc_fail(call, -EINVAL, "unsupported URL scheme in '%s'", url);
    pr->tp = &sp_hc_tcp;
    const char *a = sep + 3;
    size_t alen = strcspn(a, "/?#");
    const char *rest = a + alen;
    if (memchr(a, '@', alen))
        return sp_hc_fail(call, -EINVAL, "credentials in URLs are not supported ('%s')", url);
    const char *host = a, *port = NULL;
    size_t hlen;
    if (alen > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close)
            return sp_hc_fail(call, -EINVAL, "unclosed '[' in '%s'", url);
        host = a + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < rest) {
            if (close[1] != ':')
                return sp_hc_fail(call, -EINVAL, "bad host in '%s'", url);
            port = close + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = colon ? (size_t)(colon - a) : alen;
        port = colon ? colon + 1 : NULL;
    }
    if (hlen == 0 || hlen > 253)
        return sp_hc_fail(call, -EINVAL, "bad host in '%s'", url);
    for (size_t i = 0; i < hlen; i++) {
        unsigned char ch = (unsigned char)host[i];
        bool ok = (ch >= '0' && ch <= '9') || ((ch | 32) >= 'a' && (ch | 32) <= 'z') || ch == '-' ||
                  ch == '.' || ch == '_' || (host != a && ch == ':');
        if (!ok)
            return sp_hc_fail(call, -EINVAL, "bad host in '%s'", url);
    }
    unsigned long p = 80;
    if (port) {
        size_t plen = (size_t)(rest - port);
        p = 0;
        for (size_t i = 0; i < plen; i++) {
            if (port[i] < '0' || port[i] > '9' || p > 65535)
                return sp_hc_fail(call, -EINVAL, "bad port in '%s'", url);
            p = p * 10 + (unsigned long)(port[i] - '0');
        }
        if (plen == 0 || p == 0 || p > 65535)
            return sp_hc_fail(call, -EINVAL, "bad port in '%s'", url);
    }
    size_t tlen = strcspn(rest, "#");
    for (size_t i = 0; i < tlen; i++) {
        unsigned char ch = (unsigned char)rest[i];
        if (ch <= 0x20 || ch == 0x7f)
            return sp_hc_fail(call, -EINVAL, "space or control character in URL '%s'", url);
    }
    pr->host = host;
    pr->host_len = hlen;
    pr->port = (uint16_t)p;
    pr->target = rest;
    pr->target_len = tlen;
    pr->add_slash = tlen == 0 || rest[0] != '/';
    return 0;
}

static int prepare(sp_hc_call *call, const sp_http_request *req, prepared *pr) {
    memset(pr, 0, sizeof(*pr));
    int rc = parse_url(call, req->url, pr);
    if (rc != 0)
        return rc;
    pr->method = req->method ? req->method : "GET";
    pr->mlen = strlen(pr->method);
    if (!sp_http_token(pr->method, pr->mlen))
        return sp_hc_fail(call, -EINVAL, "bad method '%s'", pr->method);
    sp_str m = {pr->method, pr->mlen};
    if (sp_str_eq(m, LIT("CONNECT")))
        return sp_hc_fail(call, -EINVAL, "CONNECT is not supported");
    pr->idempotent = sp_str_eq(m, LIT("GET")) || sp_str_eq(m, LIT("HEAD")) ||
                     sp_str_eq(m, LIT("PUT")) || sp_str_eq(m, LIT("DELETE")) ||
                     sp_str_eq(m, LIT("OPTIONS")) || sp_str_eq(m, LIT("TRACE"));
    pr->head = sp_str_eq(m, LIT("HEAD"));
    if (req->body_len > 0 && !req->body)
        return sp_hc_fail(call, -EINVAL, "body_len without a body");
    pr->send_length = req->body_len > 0 || sp_str_eq(m, LIT("POST")) || sp_str_eq(m, LIT("PUT")) ||
                      sp_str_eq(m, LIT("PATCH"));
    if (req->nheaders > 0 && !req->headers)
        return sp_hc_fail(call, -EINVAL, "nheaders without headers");
    for (size_t i = 0; i < req->nheaders; i++) {
        sp_str n = req->headers[i].name, v = req->headers[i].value;
        if (!sp_http_token(n.ptr, n.len) || (v.len && !v.ptr) || !value_ok(v.ptr, v.len))
            return sp_hc_fail(call, -EINVAL, "bad request header '%.*s'", (int)n.len,
                              n.ptr ? n.ptr : "");
        if (sp_str_eq_case(n, LIT("Content-Length")) || sp_str_eq_case(n, LIT("Transfer-Encoding")))
            return sp_hc_fail(call, -EINVAL, "%.*s is set by the client itself", (int)n.len, n.ptr);
        if (sp_str_eq_case(n, LIT("Host")))
            pr->has_host = true;
        /* "close" among the Connection options: the connection is not reused. */
        if (sp_str_eq_case(n, LIT("Connection"))) {
            for (size_t j = 0; j + 5 <= v.len; j++)
                if (sp_http_ieq(v.ptr + j, "close", 5))
                    pr->close_after = true;
        }
        pr->hdr_bytes += n.len + v.len + 4;
    }
    return 0;
}

static size_t fmt_size(char *out, size_t v) {
    char tmp[24];
    size_t n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

#define PUT(p, s, n)  (memcpy(p, s, n), (p) += (n))
#define PUT_LIT(p, s) PUT(p, s, sizeof(s) - 1)

/* Builds the request head in c->wbuf. Returns its length, or 0 on -ENOMEM. */
static size_t build_head(sp_hc_conn *c, const prepared *pr, const sp_http_request *req) {
    const sp_hc_origin *o = c->origin;
    size_t need = pr->mlen + 1 + 1 + pr->target_len + 11 + pr->hdr_bytes + 2;
    if (!pr->has_host)
        need += 6 + o->host_hdr_len + 2;
    if (pr->send_length)
        need += 16 + 20 + 2;
    if (need > c->wcap) {
        size_t cap = need < 512 ? 512 : need;
        char *n = realloc(c->wbuf, cap);
        if (!n)
            return 0;
        c->wbuf = n;
        c->wcap = cap;
    }
    char *p = c->wbuf;
    PUT(p, pr->method, pr->mlen);
    *p++ = ' ';
    if (pr->add_slash)
        *p++ = '/';
    PUT(p, pr->target, pr->target_len);
    PUT_LIT(p, " HTTP/1.1\r\n");
    if (!pr->has_host) {
        PUT_LIT(p, "Host: ");
        PUT(p, o->authority, o->host_hdr_len);
        PUT_LIT(p, "\r\n");
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        const sp_http_field *f = &req->headers[i];
        PUT(p, f->name.ptr, f->name.len);
        PUT_LIT(p, ": ");
        if (f->value.len)
            PUT(p, f->value.ptr, f->value.len);
        PUT_LIT(p, "\r\n");
    }
    if (pr->send_length) {
        PUT_LIT(p, "Content-Length: ");
        p += fmt_size(p, req->body_len);
        PUT_LIT(p, "\r\n");
    }
    PUT_LIT(p, "\r\n");
    return (size_t)(p - c->wbuf);
}

/* Writes iov[0..n) (modified) to c, waiting while the upstream is slow to
 * read, up to deadline. */
static int send_request(sp_hc_call *call, sp_hc_conn *c, struct iovec *iov, int n,
                        int64_t deadline) {
    while (n > 0) {
        ssize_t w = c->tp->writev(c, iov, n);
        int rc = 0;
        if (w >= 0) {
            size_t done = (size_t)w;
            while (n > 0 && done >= iov->iov_len) {
                done -= iov->iov_len;
                iov++;
                n--;
            }
            if (n > 0) {
                iov->iov_base = (char *)iov->iov_base + done;
                iov->iov_len -= done;
            }
            continue;
        }
        if (w == SP_TP_AGAIN || w == SP_TP_WANT_WRITE) {
            c->writable = false;
            rc = sp_hc_wait(c, SP_IO_WRITE, deadline);
        } else if (w == SP_TP_WANT_READ) {
            c->readable = false;
            rc = sp_hc_wait(c, SP_IO_READ, deadline);
        } else {
            return sp_hc_fail(call, -ECONNRESET, "connection to %s %s while sending the request",
                              c->origin->authority, w == -EPIPE ? "closed" : "reset");
        }
        if (rc == -ETIMEDOUT)
            return sp_hc_timed_out(call, deadline, call->first_byte_timeout,
                                   "sending the request to");
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void resp_init(sp_hc_conn *c, const sp_hc_call *call, const prepared *pr,
                      const sp_http_request *req, size_t max_body) {
    sp_http_client_resp *r = &c->resp;
    memset(r, 0, offsetof(sp_http_client_resp, names));
    r->conn = c;
    llhttp_init(&r->parser, HTTP_RESPONSE, &g_settings);
    r->parser.data = r;
    r->head_request = pr->head;
    r->stream = req->stream;
    r->close_after = pr->close_after;
    r->body_mode = req->stream ? SP_HC_BODY_NONE : SP_HC_BODY_WHOLE;
    r->max_body = max_body;
    r->total_deadline = call->total_deadline;
    r->total_timeout = call->total_timeout;
    c->rlen = 0;
}

/* Reads until the head is complete: the first byte within first_byte_timeout
 * (deadline fb), the rest within the total. */
static int read_head(sp_hc_call *call, sp_http_client_resp *r, int64_t fb) {
    while (!r->head_end) {
        int rc = r->got_byte ? advance(call, r, call->total_deadline, call->total_timeout)
                             : advance(call, r, fb, call->first_byte_timeout);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int read_whole(sp_hc_call *call, sp_http_client_resp *r) {
    while (!r->msg_done) {
        int rc = advance(call, r, call->total_deadline, call->total_timeout);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Sends the request and reads the response (its head only if streamed) on a
 * connection of the pool; once more on a fresh connection if a reused one
 * turns out closed before answering an idempotent request. */
static int exchange(sp_hc_call *call, const sp_http_request *req, const prepared *pr,
                    size_t max_body, sp_http_client_resp **out) {
    sp_hc_conn *c;
    int rc = sp_hc_acquire(call, &c);
    if (rc != 0)
        return rc;
    sp_http_client_resp *r;
    for (int attempt = 0;; attempt++) {
        bool reused = c->requests > 0;
        resp_init(c, call, pr, req, max_body);
        r = &c->resp;
        size_t hlen = build_head(c, pr, req);
        int64_t fb = sp_hc_deadline(call, call->first_byte_timeout);
        if (hlen == 0) {
            rc = sp_hc_fail(call, -ENOMEM, "out of memory for the request head");
        } else {
            struct iovec iov[2] = {{c->wbuf, hlen}, {(void *)req->body, req->body_len}};
            rc = send_request(call, c, iov, req->body_len ? 2 : 1, fb);
        }
        if (rc == 0)
            rc = read_head(call, r, fb);
        if (rc == 0)
            break;
        if (rc == -ECONNRESET && reused && !r->got_byte) {
            if (pr->idempotent && attempt == 0) {
                rc = sp_hc_reconnect(call, &c);
                if (rc != 0)
                    return rc;
                continue;
            }
            if (!pr->idempotent)
                sp_hc_fail(call, rc,
                           "%s closed a reused connection before responding; %s is not "
                           "idempotent, so it was not sent again",
                           c->origin->authority, pr->method);
        }
        sp_hc_release(c, false);
        return rc;
    }
    if (r->body_mode == SP_HC_BODY_WHOLE) {
        rc = read_whole(call, r);
    } else if (!r->msg_done && c->rcap < r->dec_off + r->dec_len + STREAM_ROOM) {
        /* Room for the pieces to come, before header views are handed out. */
        size_t cap = r->dec_off + r->dec_len + STREAM_ROOM;
        char *n = realloc(c->rbuf, cap);
        if (n) {
            c->rbuf = n;
            c->rcap = cap;
        } else {
            rc = sp_hc_fail(call, -ENOMEM, "out of memory reading the response");
        }
    }
    if (rc != 0) {
        sp_hc_release(c, false);
        return rc;
    }
    *out = r;
    return 0;
}

static void clear_error(sp_http_client_error *err) {
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

int sp_http_client_request(sp_http_client *cl, const sp_http_request *req,
                           sp_http_client_resp **out, sp_http_client_error *err) {
    pthread_once(&g_settings_once, settings_init);
    sp_hc_call call = {.client = cl};
    if (out)
        *out = NULL;
    clear_error(err);
    if (!cl || !req || !out)
        return publish(&call, sp_hc_fail(&call, -EINVAL, "no client, request or out"), err);
    if (sp_loop_get() != cl->loop || !sp_task_current())
        return publish(&call, sp_hc_fail(&call, -EPERM, "not in a task of the client's loop"), err);
    const sp_http_client_config *cfg = &cl->cfg;
    call.total_timeout = req->total_timeout ? req->total_timeout : cfg->total_timeout;
    call.connect_timeout = req->connect_timeout ? req->connect_timeout : cfg->connect_timeout;
    call.first_byte_timeout =
        req->first_byte_timeout ? req->first_byte_timeout : cfg->first_byte_timeout;
    /* A negative total means none: a century away. */
    call.total_deadline = sp_deadline_after(call.total_timeout < 0 ? 1e12 : call.total_timeout);
    size_t max_body = req->max_response_bytes ? req->max_response_bytes : cfg->max_response_bytes;
    prepared pr;
    int rc = prepare(&call, req, &pr);
    if (rc != 0)
        return publish(&call, rc, err);
    sp_hc_origin *o = sp_hc_origin_get(cl, pr.tp, pr.host, pr.host_len, pr.port);
    if (!o)
        return publish(&call, sp_hc_fail(&call, -ENOMEM, "out of memory"), err);
    call.origin = o;
    o->refs++;
    cl->active++;
    rc = exchange(&call, req, &pr, max_body, out);
    if (rc != 0)
        cl->active--;
    sp_hc_origin_unref(o);
    return publish(&call, rc, err);
}

int sp_http_client_get(sp_http_client *cl, const char *url, sp_http_client_resp **out,
                       sp_http_client_error *err) {
    sp_http_request req = {.url = url};
    return sp_http_client_request(cl, &req, out, err);
}

/* ---- Responses --------------------------------------------------------------------- */

int sp_http_client_resp_status(const sp_http_client_resp *resp) {
    return resp->status;
}

int sp_http_client_resp_version(const sp_http_client_resp *resp) {
    return resp->version;
}

static sp_str view(const sp_http_client_resp *r, sp_hc_span s) {
    return (sp_str){r->conn->rbuf + s.off, s.len};
}

int sp_http_client_resp_header(const sp_http_client_resp *resp, const char *name, sp_str *value) {
    sp_str n = sp_str_c(name);
    for (size_t i = 0; i < resp->nhdrs; i++) {
        if (sp_str_eq_case(view(resp, resp->names[i]), n)) {
            *value = view(resp, resp->values[i]);
            return 0;
        }
    }
    return -ENOENT;
}

size_t sp_http_client_resp_header_count(const sp_http_client_resp *resp) {
    return resp->nhdrs;
}

int sp_http_client_resp_header_at(const sp_http_client_resp *resp, size_t i, sp_str *name,
                                  sp_str *value) {
    if (i >= resp->nhdrs)
        return -ENOENT;
    *name = view(resp, resp->names[i]);
    *value = view(resp, resp->values[i]);
    return 0;
}

/* The call context of a read after the request returned. */
static sp_hc_call resp_call(const sp_http_client_resp *r) {
    sp_hc_origin *o = r->conn->origin;
    return (sp_hc_call){.client = o->client,
                        .origin = o,
                        .total_deadline = r->total_deadline,
                        .total_timeout = r->total_timeout};
}

/* A read failed: every later read fails the same way, except after a
 * cancellation, which interrupts a wait and loses nothing. */
static int read_failed(sp_http_client_resp *r, sp_hc_call *call, int rc,
                       sp_http_client_error *err) {
    if (rc != -ECANCELED) {
        r->err = rc;
        memcpy(r->errmsg, call->msg, sizeof(r->errmsg));
    }
    return publish(call, rc, err);
}

/* Starts a body call: clears *err, then returns the error an earlier read
 * of r failed with (every later read fails the same way), or 0. */
static int resp_begin(sp_http_client_resp *r, sp_http_client_error *err) {
    clear_error(err);
    if (!r->err)
        return 0;
    sp_hc_call call = resp_call(r);
    memcpy(call.msg, r->errmsg, sizeof(call.msg));
    return publish(&call, r->err, err);
}

int sp_http_client_resp_read(sp_http_client_resp *resp, sp_str *piece, sp_http_client_error *err) {
    sp_http_client_resp *r = resp;
    *piece = (sp_str){"", 0};
    int rc = resp_begin(r, err);
    if (rc != 0)
        return rc;
    if (r->body_mode == SP_HC_BODY_WHOLE) {
        /* Read whole already: one piece, then the end. */
        if (!r->piece_out) {
            r->piece_out = true;
            *piece = r->body_buf ? (sp_str){r->body_buf, r->body_len}
                                 : (sp_str){r->conn->rbuf + r->dec_off, r->dec_len};
        }
        return 0;
    }
    r->body_mode = SP_HC_BODY_STREAMING;
    if (r->piece_out) {
        r->piece_out = false;
        r->dec_len = 0;
        compact(r);
    }
    sp_hc_call call = resp_call(r);
    for (;;) {
        if (r->dec_len > 0) {
            *piece = (sp_str){r->conn->rbuf + r->dec_off, r->dec_len};
            r->piece_out = true;
            return 0;
        }
        if (r->msg_done)
            return 0;
        rc = advance(&call, r, r->total_deadline, r->total_timeout);
        if (rc != 0)
            return read_failed(r, &call, rc, err);
    }
}

/* Appends the decoded bytes in rbuf to body_buf (a streamed body read whole). */
static int gather(sp_http_client_resp *r, sp_hc_call *call) {
    size_t need = r->body_len + r->dec_len;
    if (need > r->max_body)
        return sp_hc_fail(call, -EMSGSIZE, "%s: response body exceeds max_response_bytes (%zu)",
                          r->conn->origin->authority, r->max_body);
    if (need > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 16384;
        while (cap < need)
            cap *= 2;
        char *n = realloc(r->body_buf, cap);
        if (!n)
            return sp_hc_fail(call, -ENOMEM, "out of memory reading the response");
        r->body_buf = n;
        r->body_cap = cap;
    }
    memcpy(r->body_buf + r->body_len, r->conn->rbuf + r->dec_off, r->dec_len);
    r->body_len = need;
    r->dec_len = 0;
    compact(r);
    return 0;
}

int sp_http_client_resp_body(sp_http_client_resp *resp, sp_str *body, sp_http_client_error *err) {
    sp_http_client_resp *r = resp;
    *body = (sp_str){"", 0};
    int rc = resp_begin(r, err);
    if (rc != 0)
        return rc;
    if (r->body_mode == SP_HC_BODY_STREAMING)
        return -EALREADY;
    if (r->body_mode == SP_HC_BODY_NONE) {
        /* Streamed so far: header views forbid moving rbuf, so the body
         * gathers in a buffer of its own, unless it all came with the head. */
        sp_hc_call call = resp_call(r);
        for (;;) {
            rc = 0;
            if (r->msg_done && !r->body_buf && r->dec_len <= r->max_body)
                break;
            if (r->dec_len > 0 || r->msg_done)
                rc = gather(r, &call);
            if (rc == 0 && r->msg_done)
                break;
            if (rc == 0)
                rc = advance(&call, r, r->total_deadline, r->total_timeout);
            if (rc != 0)
                return read_failed(r, &call, rc, err);
        }
        r->body_mode = SP_HC_BODY_WHOLE;
    }
    *body = r->body_buf ? (sp_str){r->body_buf, r->body_len}
                        : (sp_str){r->conn->rbuf + r->dec_off, r->dec_len};
    return 0;
}

void sp_http_client_resp_free(sp_http_client_resp *resp) {
    if (!resp)
        return;
    sp_hc_conn *c = resp->conn;
    bool reuse = resp->msg_done && resp->keep_alive && !resp->extra && !resp->err;
    free(resp->body_buf);
    resp->body_buf = NULL;
    c->origin->client->active--;
    sp_hc_release(c, reuse);
}
