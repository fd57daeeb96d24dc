/* Request accessors: method, target, path and query, headers, route
 * parameters, and percent-decoding. Everything is a view into the
 * connection's buffer; decoded query values live in the task's arena. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "text.h"

sp_str sp_str_c(const char *s) {
    return (sp_str){s ? s : "", s ? strlen(s) : 0};
}

bool sp_str_eq(sp_str a, sp_str b) {
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

bool sp_str_eq_case(sp_str a, sp_str b) {
    return a.len == b.len && sp_http_ieq(a.ptr, b.ptr, a.len);
}

sp_str sp_http_req_method(const sp_http_req *req) {
    return req->method;
}

sp_str sp_http_req_target(const sp_http_req *req) {
    return req->target;
}

sp_str sp_http_req_path(const sp_http_req *req) {
    return req->path;
}

sp_str sp_http_req_query_string(const sp_http_req *req) {
    return req->query;
}

int sp_http_req_version(const sp_http_req *req) {
    return req->version;
}

int sp_http_req_worker(const sp_http_req *req) {
    return req->conn->w->index;
}

void *sp_http_req_worker_data(const sp_http_req *req) {
    return req->conn->w->data;
}

const char *sp_http_req_route(const sp_http_req *req) {
    return req->match && req->match->pattern ? req->match->pattern : "";
}

const struct sockaddr *sp_http_req_peer(const sp_http_req *req, socklen_t *len) {
    if (len)
        *len = req->conn->peer_len;
    return (const struct sockaddr *)&req->conn->peer;
}

int sp_http_req_header(const sp_http_req *req, const char *name, sp_str *value) {
    sp_str n = sp_str_c(name);
    for (size_t i = 0; i < req->nhdrs; i++) {
        if (sp_str_eq_case(req->hdrs[i].name, n)) {
            *value = req->hdrs[i].value;
            return 0;
        }
    }
    return -ENOENT;
}

size_t sp_http_req_header_count(const sp_http_req *req) {
    return req->nhdrs;
}

int sp_http_req_header_at(const sp_http_req *req, size_t i, sp_str *name, sp_str *value) {
    if (i >= req->nhdrs)
        return -ENOENT;
    *name = req->hdrs[i].name;
    *value = req->hdrs[i].value;
    return 0;
}

int sp_http_req_param(const sp_http_req *req, const char *name, sp_str *value) {
    if (!req->match)
        return -ENOENT;
    return sp_route_match_param(req->match, name, value);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes %XX (and '+' as space when plus_space) from in to out, which may
 * be the same buffer. Returns the decoded length or -EBADMSG. */
static int percent_decode(const char *in, size_t len, char *out, bool plus_space) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -EBADMSG;
            int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -EBADMSG;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        out[o++] = c;
    }
    return (int)o;
}

/* Resolves "." and ".." segments and merges repeated slashes in place, as
 * nginx does for $uri (RFC 3986 5.2.4 on the decoded path). Returns the new
 * length, or -EBADMSG when ".." would climb above the root. */
static int normalize_path(char *p, size_t len) {
    size_t o = 0, i = 0;
    bool dir = len > 0 && p[len - 1] == '/'; /* the result names a directory */
    while (i < len) {
        while (i < len && p[i] == '/')
            i++;
        size_t start = i;
        while (i < len && p[i] != '/')
            i++;
        size_t seg = i - start;
        if (seg == 0)
            break;
        if (seg == 1 && p[start] == '.') {
            dir = true;
        } else if (seg == 2 && p[start] == '.' && p[start + 1] == '.') {
            if (o == 0)
                return -EBADMSG;
            while (p[o - 1] != '/')
                o--;
            o--;
            dir = true;
        } else {
            p[o++] = '/';
            memmove(p + o, p + start, seg);
            o += seg;
            dir = i < len; /* followed by a slash */
        }
    }
    if (dir || o == 0)
        p[o++] = '/';
    return (int)o;
}

int sp_http_decode_path(const char *in, size_t len, char *out) {
    int n = percent_decode(in, len, out, false);
    /* A NUL would truncate the path for C code downstream. An encoded '/'
     * becomes a separator, as nginx's $uri does. */
    if (n >= 0 && memchr(out, '\0', (size_t)n))
        return -EBADMSG;
    return n < 0 ? n : normalize_path(out, (size_t)n);
}

/* Memory valid until the handler returns: the task's arena, or on a blocking
 * handler's thread (no task there) a block freed with the request. */
static void *req_alloc(sp_http_req *req, size_t size) {
    if (sp_task_current())
        return sp_task_alloc(size);
    sp_http_block *b = malloc(sizeof(*b) + size);
    if (!b)
        return NULL;
    b->next = req->blocks;
    req->blocks = b;
    return b->data;
}

int sp_http_req_query(sp_http_req *req, const char *name, sp_str *value) {
    size_t nlen = strlen(name);
    const char *p = req->query.ptr, *end = p + req->query.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        /* Compare the decoded key without allocating: most keys need none. */
        char kbuf[256];
        size_t klen = (size_t)(ke - p);
        if (klen < sizeof(kbuf)) {
            int kd = percent_decode(p, klen, kbuf, true);
            if (kd == (int)nlen && memcmp(kbuf, name, nlen) == 0) {
                const char *vs = eq ? eq + 1 : pe;
                size_t vlen = (size_t)(pe - vs);
                char *out = req_alloc(req, vlen + 1);
                if (!out)
                    return -ENOMEM;
                int vd = percent_decode(vs, vlen, out, true);
                if (vd < 0)
                    return vd;
                out[vd] = '\0';
                *value = (sp_str){out, (size_t)vd};
                return 0;
            }
        }
        p = amp ? amp + 1 : end;
    }
    return -ENOENT;
}
