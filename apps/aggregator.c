/* apps/aggregator: an HTTP server in front of upstreams, showing what handlers
 * do with the HTTP client and the offload pools (run with --help for flags):
 *   GET /dashboard  fans out to the upstreams at once and answers one JSON
 *                   object with what came back by the deadline: each payload
 *                   under its name, the missing ones and why
 *   ANY /proxy/...  forwards the request to the proxy upstream and streams its
 *                   answer back (502 when it fails, 504 when it times out)
 *   GET /limited    a route behind the rate limiter (per client address)
 *   GET /blocking   a blocking call run on the to_thread pool
 *   GET /cpu        a CPU-heavy computation run in the process pool
 *   GET /fast       answers at once, whatever the two above are doing
 * Each worker thread runs its own loop, so each has its own HTTP client and
 * its own process pool (both belong to one loop). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spindle/spindle.h>

#define MAX_UPSTREAMS 16

typedef struct upstream {
    char name[65];
    const char *url;
} upstream;

static upstream g_ups[MAX_UPSTREAMS];
static size_t g_nups;
static const char *g_proxy = "http://127.0.0.1:8081";
static size_t g_proxy_len;
static double g_deadline = 0.5, g_proxy_timeout = 10;
static size_t g_upstream_conns = 1024;

/* ---- Per-worker resources ------------------------------------------------ */

/* What belongs to one worker's loop: its HTTP client (pools of upstream
 * connections) and its process pool. Set up and torn down in the loop by the
 * server's worker hooks; handlers reach it with sp_http_req_worker_data. */
typedef struct worker_res {
    sp_http_client *client;
    sp_procpool *pool;
} worker_res;

/* One process pool per worker: main() makes them before the server starts
 * (workers are forked from a clean process), worker N takes pool N. */
static sp_procpool **g_pools;
static int g_npools;

static int worker_start(int worker, void *arg, void **data) {
    (void)arg;
    worker_res *res = calloc(1, sizeof(*res));
    if (!res)
        return -ENOMEM;
    sp_http_client_config cfg;
    sp_http_client_config_init(&cfg);
    cfg.max_conns_per_origin = g_upstream_conns;
    int rc = sp_http_client_create(&res->client, &cfg);
    if (rc != 0) {
        free(res);
        return rc;
    }
    res->pool = worker < g_npools ? g_pools[worker] : NULL;
    *data = res;
    return 0;
}

static void worker_stop(int worker, void *arg, void *data) {
    (void)arg;
    worker_res *res = data;
    /* Every handler has returned, so every response was freed. */
    int rc = sp_http_client_destroy(res->client);
    if (rc != 0)
        sp_log(SP_LOG_WARN, "worker %d: cannot free its HTTP client: %s", worker, strerror(-rc));
    free(res);
}

static sp_http_client *req_client(sp_http_req *req) {
    return ((worker_res *)sp_http_req_worker_data(req))->client;
}

/* ---- JSON ---------------------------------------------------------------- */

/* A growing output buffer, starting in the caller's storage (p and cap set,
 * heap false) or empty; a failed allocation is remembered, not fatal. */
typedef struct jbuf {
    char *p;
    size_t len, cap;
    bool oom, heap;
} jbuf;

static void put(jbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n)
            cap *= 2;
        char *p = b->heap ? realloc(b->p, cap) : malloc(cap);
        if (!p) {
            b->oom = true;
            return;
        }
        if (!b->heap && b->len)
            memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
        b->heap = true;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void jbuf_free(jbuf *b) {
    if (b->heap)
        free(b->p);
}

static void puts_(jbuf *b, const char *s) {
    put(b, s, strlen(s));
}

/* s as a JSON string, quotes included. */
static void put_json_string(jbuf *b, const char *s) {
    put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(b, esc, 6);
        } else {
            put(b, s, 1);
        }
    }
    put(b, "\"", 1);
}

static const char *json_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *json_value(const char *p, const char *e, int depth);

static const char *json_string(const char *p, const char *e) {
    for (p++; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c != '\\')
            continue;
        if (++p == e)
            return NULL;
        if (*p == 'u') {
            for (int i = 0; i < 4; i++)
                if (++p == e || !strchr("0123456789abcdefABCDEF", *p))
                    return NULL;
        } else if (!strchr("\"\\/bfnrt", *p)) {
            return NULL;
        }
    }
    return NULL;
}

static const char *json_digits(const char *p, const char *e) {
    const char *s = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p > s ? p : NULL;
}

static const char *json_number(const char *p, const char *e) {
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (!(p = json_digits(p, e)))
        return NULL;
    if (p < e && *p == '.' && !(p = json_digits(p + 1, e)))
        return NULL;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (!(p = json_digits(p, e)))
            return NULL;
    }
    return p;
}

/* The members of an object (close '}') or elements of an array (']'). */
static const char *json_items(const char *p, const char *e, int depth, char close) {
    p = json_ws(p + 1, e);
    if (p < e && *p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            if (p >= e || *p != '"' || !(p = json_string(p, e)))
                return NULL;
            p = json_ws(p, e);
            if (p >= e || *p++ != ':')
                return NULL;
        }
        if (!(p = json_value(p, e, depth + 1)))
            return NULL;
        if (p < e && *p == ',') {
            p = json_ws(p + 1, e);
            continue;
        }
        return p < e && *p == close ? p + 1 : NULL;
    }
}

/* Validates one JSON value at p (after whitespace); returns its end (after
 * the whitespace that follows) or NULL. Nesting stops at 64 levels. */
static const char *json_value(const char *p, const char *e, int depth) {
    p = json_ws(p, e);
    if (p >= e || depth > 64)
        return NULL;
    static const char *const lits[] = {"true", "false", "null"};
    switch (*p) {
    case '{':
    case '[':
        p = json_items(p, e, depth, *p == '{' ? '}' : ']');
        break;
    case '"':
        p = json_string(p, e);
        break;
    default:
        for (size_t i = 0; i < 3; i++) {
            size_t n = strlen(lits[i]);
            if ((size_t)(e - p) >= n && memcmp(p, lits[i], n) == 0)
                return json_ws(p + n, e);
        }
        p = json_number(p, e);
    }
    return p ? json_ws(p, e) : NULL;
}

static bool json_valid(sp_str s) {
    return json_value(s.ptr, s.ptr + s.len, 0) == s.ptr + s.len;
}

/* ---- /dashboard ------------------------------------------------------------ */

/* Why a fetch gave no usable payload, in why[]; true if it did. */
static bool usable(const sp_fanout_result *r, char *why, size_t cap) {
    if (r->err != 0)
        snprintf(why, cap, "%s", r->msg);
    else if (r->status < 200 || r->status > 299)
        snprintf(why, cap, "upstream answered %d", r->status);
    else if (!json_valid(r->body))
        snprintf(why, cap, "upstream answered something that is not JSON");
    else
        return true;
    return false;
}

/* One JSON object: each payload under its upstream's name, then "errors"
 * (name: why) and "missing" (names) for the others, and "complete". 200 when
 * at least one payload came, 502 when none did. */
static int answer_dashboard(sp_http_resp *resp, const sp_fanout_result *res) {
    jbuf b = {0}, errs = {0}, missing = {0};
    size_t got = 0;
    puts_(&b, "{");
    for (size_t i = 0; i < g_nups; i++) {
        char why[sizeof(res[i].msg) + 32];
        if (usable(&res[i], why, sizeof(why))) {
            sp_str body = res[i].body;
            while (body.len > 0 && strchr(" \t\r\n", body.ptr[body.len - 1]))
                body.len--;
            put_json_string(&b, g_ups[i].name);
            put(&b, ":", 1);
            put(&b, body.ptr, body.len);
            put(&b, ",", 1);
            got++;
            continue;
        }
        if (missing.len) {
            put(&missing, ",", 1);
            put(&errs, ",", 1);
        }
        put_json_string(&missing, g_ups[i].name);
        put_json_string(&errs, g_ups[i].name);
        put(&errs, ":", 1);
        put_json_string(&errs, why);
    }
    puts_(&b, "\"errors\":{");
    put(&b, errs.p, errs.len);
    puts_(&b, "},\"missing\":[");
    put(&b, missing.p, missing.len);
    puts_(&b, got == g_nups ? "],\"complete\":true}\n" : "],\"complete\":false}\n");
    int rc = b.oom || errs.oom || missing.oom
                 ? -ENOMEM
                 : sp_http_resp_send(resp, got > 0 ? 200 : 502, "application/json", b.p, b.len);
    jbuf_free(&b);
    jbuf_free(&errs);
    jbuf_free(&missing);
    return rc;
}

static int dashboard(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_http_client *cl = req_client(req);
    static const sp_http_field accept = SP_HTTP_FIELD("Accept", "application/json");
    sp_fanout_req reqs[MAX_UPSTREAMS];
    for (size_t i = 0; i < g_nups; i++)
        reqs[i] = (sp_fanout_req){.name = g_ups[i].name,
                                  .req = {.url = g_ups[i].url, .headers = &accept, .nheaders = 1}};
    sp_fanout_result res[MAX_UPSTREAMS];
    /* Cancelled (the client left), this returns once every fetch has closed
     * its connection. */
    int rc = sp_fanout_fetch(cl, reqs, g_nups, g_deadline, res);
    if (rc == 0)
        rc = answer_dashboard(resp, res);
    sp_fanout_results_free(res, g_nups);
    return rc;
}

/* ---- /proxy/... --------------------------------------------------------------- */

#define LIT(s)                                                                                     \
    { s, sizeof(s) - 1 }

/* Hop-by-hop fields (RFC 9110 7.6.1) belong to one connection and are not
 * forwarded; nor is Content-Length, which the server and the client write
 * themselves. Called for every field of every request and answer: compares
 * lengths before bytes. */
static bool hop_by_hop(sp_str name, sp_str connection) {
    static const sp_str fields[] = {
        LIT("Connection"),     LIT("Keep-Alive"),       LIT("TE"), LIT("Trailer"), LIT("Upgrade"),
        LIT("Content-Length"), LIT("Transfer-Encoding")};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (name.len == fields[i].len && sp_str_eq_case(name, fields[i]))
            return true;
    if (name.len >= 6 && strncasecmp(name.ptr, "Proxy-", 6) == 0)
        return true;
    /* Fields the Connection header names are hop-by-hop too. */
    const char *p = connection.ptr, *end = connection.ptr + connection.len;
    while (p < end) {
        while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
            p++;
        const char *tok = p;
        while (p < end && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (p > tok && sp_str_eq_case(name, (sp_str){tok, (size_t)(p - tok)}))
            return true;
    }
    return false;
}

static bool is(sp_str name, sp_str lit) {
    return name.len == lit.len && sp_str_eq_case(name, lit);
}

/* Appends the path s percent-encoded where a path needs it. */
static void put_path(jbuf *b, sp_str s) {
    static const char keep[] = "-._~!$&'()*+,;=:@/";
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c && strchr(keep, c))) {
            put(b, (const char *)&c, 1);
        } else {
            static const char hex[] = "0123456789ABCDEF";
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            put(b, esc, 3);
        }
    }
}

/* The client's address as text, for X-Forwarded-For; IPv4 by hand, since it
 * runs for every request. Returns its length. */
static size_t peer_text(sp_http_req *req, char *out, size_t cap) {
    socklen_t len;
    const struct sockaddr *sa = sp_http_req_peer(req, &len);
    if (sa->sa_family == AF_INET) {
        const unsigned char *a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        char *p = out;
        for (int i = 0; i < 4; i++) {
            unsigned v = a[i];
            if (v >= 100)
                *p++ = (char)('0' + v / 100);
            if (v >= 10)
                *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
            *p++ = '.';
        }
        return (size_t)(p - 1 - out);
    }
    if (!inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap))
        return (size_t)snprintf(out, cap, "unknown");
    return strlen(out);
}

/* Answers for an upstream that failed before its answer began, as nginx:
 * 504 when it timed out, 502 for anything else (refused, reset, malformed,
 * unresolvable). The details go to the error log, not to the client. */
static int bad_gateway(sp_http_resp *resp, const char *url, const sp_http_client_error *e) {
    bool timeout = e->code == -ETIMEDOUT;
    sp_log(SP_LOG_WARN, "proxy: %s: %s", url, e->msg);
    return sp_http_resp_text(resp, timeout ? 504 : 502, "text/plain",
                             timeout ? "504 Gateway Timeout\n" : "502 Bad Gateway\n");
}

/* Bodies up to this size that announce their length are read whole and sent
 * with their Content-Length in one write; longer ones are streamed through
 * with their length, unannounced ones chunked, as they arrive. */
#define PROXY_WHOLE_MAX (64 * 1024)

/* A Content-Length value as a number; false if it is not one (the client
 * already refused a malformed one). */
static bool parse_length(sp_str v, uint64_t *out) {
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9' || n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(v.ptr[i] - '0');
    }
    *out = n;
    return v.len > 0;
}

/* Sends the upstream's answer: its status, end-to-end headers and body (none
 * for a HEAD request, whose answer keeps the upstream's framing headers). */
static int relay(sp_http_resp *resp, sp_http_client_resp *up, const char *url, bool head) {
    static const sp_str connection = LIT("Connection"), content_type = LIT("Content-Type"),
                        content_length = LIT("Content-Length"), date = LIT("Date"),
                        server = LIT("Server");
    size_t n = sp_http_client_resp_header_count(up);
    sp_str conn = {"", 0}, ctype = {NULL, 0}, clen = {NULL, 0}, name, value;
    for (size_t i = 0; i < n; i++) {
        sp_http_client_resp_header_at(up, i, &name, &value);
        if (is(name, connection))
            conn = value;
        else if (is(name, content_type))
            ctype = value;
        else if (is(name, content_length))
            clen = value;
    }
    /* The server writes its own Date, Server and Content-Type. Names and
     * values are copied NUL-terminated into a scratch buffer. */
    char small[1024], *scratch = small;
    size_t scap = sizeof(small);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        sp_http_client_resp_header_at(up, i, &name, &value);
        if (hop_by_hop(name, conn) || is(name, date) || is(name, server) || is(name, content_type))
            continue;
        if (name.len + value.len + 2 > scap) {
            if (scratch != small)
                free(scratch);
            scap = name.len + value.len + 2;
            if (!(scratch = malloc(scap)))
                return -ENOMEM;
        }
        memcpy(scratch, name.ptr, name.len);
        scratch[name.len] = '\0';
        memcpy(scratch + name.len + 1, value.ptr, value.len);
        scratch[name.len + 1 + value.len] = '\0';
        /* A field the server refuses (-EINVAL) is dropped. */
        if (sp_http_resp_header(resp, scratch, scratch + name.len + 1) == -ENOMEM)
            rc = -ENOMEM;
    }
    if (scratch != small)
        free(scratch);
    char type[256];
    bool has_type = ctype.ptr && ctype.len < sizeof(type);
    if (has_type) {
        memcpy(type, ctype.ptr, ctype.len);
        type[ctype.len] = '\0';
    }
    if (rc != 0)
        return rc;
    int status = sp_http_client_resp_status(up);
    sp_http_client_error e;
    sp_str body;
    uint64_t length = 0;
    bool sized = clen.ptr && parse_length(clen, &length);
    if (sized && length <= PROXY_WHOLE_MAX && !head) {
        rc = sp_http_client_resp_body(up, &body, &e);
        if (rc == -ECANCELED)
            return rc;
        if (rc != 0)
            return bad_gateway(resp, url, &e);
        return sp_http_resp_send(resp, status, has_type ? type : NULL, body.ptr, body.len);
    }
    if (sized)
        rc = sp_http_resp_start_length(resp, status, has_type ? type : NULL, length);
    else
        rc = sp_http_resp_start(resp, status, has_type ? type : NULL);
    while (rc == 0) {
        rc = sp_http_client_resp_read(up, &body, &e);
        if (rc != 0 && rc != -ECANCELED)
            sp_log(SP_LOG_WARN, "proxy: %s: %s (the response was cut)", url, e.msg);
        if (rc != 0 || body.len == 0)
            break;
        rc = sp_http_resp_write(resp, body.ptr, body.len);
    }
    /* A failure once the head is out closes the connection: the client sees
     * the body cut short, as from nginx. */
    return rc ? rc : sp_http_resp_end(resp);
}

static int proxy(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    static const sp_str host = LIT("Host"), xff_name = LIT("X-Forwarded-For"),
                        expect = LIT("Expect"), connection = LIT("Connection");
    sp_http_client *cl = req_client(req);
    int rc;
    sp_str m = sp_http_req_method(req), rest = {"", 0}, query = sp_http_req_query_string(req);
    char method[32];
    if (m.len >= sizeof(method))
        return sp_http_resp_text(resp, 501, "text/plain", "method not proxied\n");
    memcpy(method, m.ptr, m.len);
    method[m.len] = '\0';
    /* The body is read whole first: the client sends bodies with a length. */
    sp_str body;
    if ((rc = sp_http_req_body(req, &body)) != 0)
        return rc;

    /* The URL: the proxy upstream, then the rest of the path (decoded and
     * normalised by the server, encoded again) and the query as sent. */
    sp_http_req_param(req, "*", &rest);
    char url_buf[2048];
    jbuf url = {.p = url_buf, .cap = sizeof(url_buf)};
    put(&url, g_proxy, g_proxy_len);
    put(&url, "/", 1);
    put_path(&url, rest);
    if (query.len) {
        put(&url, "?", 1);
        put(&url, query.ptr, query.len);
    }
    put(&url, "", 1);
    if (url.oom)
        return -ENOMEM;

    /* Headers: the request's end-to-end ones, then X-Forwarded-For. The
     * client writes Host (the upstream's) and Content-Length itself; Expect
     * was answered by the server, and the body goes whole. */
    sp_http_field fields[SP_HTTP_MAX_HEADERS + 1];
    size_t nh = sp_http_req_header_count(req), nf = 0;
    sp_str conn = {"", 0}, xff = {"", 0}, name, value;
    for (size_t i = 0; i < nh; i++) {
        sp_http_req_header_at(req, i, &name, &value);
        if (is(name, connection))
            conn = value;
        else if (is(name, xff_name))
            xff = value;
    }
    for (size_t i = 0; i < nh && nf < SP_HTTP_MAX_HEADERS; i++) {
        sp_http_req_header_at(req, i, &name, &value);
        if (!hop_by_hop(name, conn) && !is(name, host) && !is(name, xff_name) && !is(name, expect))
            fields[nf++] = (sp_http_field){name, value};
    }
    char xff_value[1024];
    size_t xn = 0;
    if (xff.len && xff.len + 2 + INET6_ADDRSTRLEN < sizeof(xff_value)) {
        memcpy(xff_value, xff.ptr, xff.len);
        memcpy(xff_value + xff.len, ", ", 2);
        xn = xff.len + 2;
    }
    xn += peer_text(req, xff_value + xn, sizeof(xff_value) - xn);
    fields[nf++] = (sp_http_field){xff_name, {xff_value, xn}};

    sp_http_request r = {.method = method,
                         .url = url.p,
                         .headers = fields,
                         .nheaders = nf,
                         .body = body.len ? body.ptr : NULL,
                         .body_len = body.len,
                         .stream = true,
                         .connect_timeout = g_proxy_timeout,
                         .first_byte_timeout = g_proxy_timeout,
                         .total_timeout = -1};
    sp_http_client_resp *up = NULL;
    sp_http_client_error e;
    rc = sp_http_client_request(cl, &r, &up, &e);
    if (rc == 0)
        rc = relay(resp, up, url.p, sp_str_eq(m, sp_str_c("HEAD")));
    else if (rc != -ECANCELED)
        rc = bad_gateway(resp, url.p, &e);
    sp_http_client_resp_free(up);
    jbuf_free(&url);
    return rc;
}

/* ---- Offloaded work and the fast route ----------------------------------- */

/* A query parameter as a whole number in [min, max] (def when absent); false
 * when malformed or out of range. */
static bool query_long(sp_http_req *req, const char *name, long def, long min, long max,
                       long *out) {
    sp_str v;
    *out = def;
    if (sp_http_req_query(req, name, &v) != 0)
        return true;
    char buf[24], *end;
    if (v.len == 0 || v.len >= sizeof(buf))
        return false;
    snprintf(buf, sizeof(buf), "%.*s", (int)v.len, v.ptr);
    errno = 0;
    *out = strtol(buf, &end, 10);
    return !*end && !errno && *out >= min && *out <= max;
}

/* Runs on a to_thread worker: a blocking library call, as a database
 * driver's or getaddrinfo would be; the loop keeps serving meanwhile. */
static int blocking_call(void *arg, void **result) {
    (void)result;
    long ms = (long)(intptr_t)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

static int blocking(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    long ms;
    if (!query_long(req, "ms", 100, 0, 60000, &ms))
        return sp_http_resp_text(resp, 400, "text/plain", "ms must be 0..60000\n");
    int rc = sp_to_thread(blocking_call, (void *)(intptr_t)ms, NULL, NULL);
    if (rc != 0)
        return rc;
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"blocked_ms\":%ld}\n", ms);
    return sp_http_resp_send(resp, 200, "application/json", body, (size_t)n);
}

/* Runs in a worker process: counts the primes below n by trial division, on
 * purpose the slow way (n = 1,000,000 takes some 100 ms). In: n as text. */
static int count_primes(const void *in, size_t in_len, void **out, size_t *out_len) {
    char buf[24];
    snprintf(buf, sizeof(buf), "%.*s", (int)(in_len < 23 ? in_len : 23), (const char *)in);
    long n = atol(buf), count = n > 2 ? 1 : 0;
    for (long k = 3; k < n; k += 2) {
        bool prime = true;
        for (long d = 3; d * d <= k; d += 2) {
            if (k % d == 0) {
                prime = false;
                break;
            }
        }
        count += prime;
    }
    char *res = malloc(24);
    if (!res)
        return -ENOMEM;
    *out_len = (size_t)snprintf(res, 24, "%ld", count);
    *out = res;
    return 0;
}

static int cpu(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    long n;
    if (!query_long(req, "n", 1000000, 0, 100000000, &n))
        return sp_http_resp_text(resp, 400, "text/plain", "n must be 0..100000000\n");
    sp_procpool *pool = ((worker_res *)sp_http_req_worker_data(req))->pool;
    if (!pool)
        return sp_fail(-ENXIO, "no process pool for this worker");
    char in[24];
    int len = snprintf(in, sizeof(in), "%ld", n);
    void *out;
    size_t out_len;
    int rc = sp_procpool_run(pool, count_primes, in, (size_t)len, &out, &out_len);
    if (rc != 0)
        return rc;
    char body[96];
    int m = snprintf(body, sizeof(body), "{\"n\":%ld,\"primes\":%.*s}\n", n, (int)out_len,
                     (const char *)out);
    free(out);
    return sp_http_resp_send(resp, 200, "application/json", body, (size_t)m);
}

static int fast(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "fast\n", 5);
}

static int limited(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_text(resp, 200, "application/json", "{\"ok\":true}\n");
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: aggregator [--host ADDR] [--port N] [--workers N] [--upstream [NAME=]URL]...\n"
        "                  [--upstreams LIST] [--proxy URL] [--deadline S]\n"
        "                  [--proxy-timeout S] [--upstream-conns N] [--rate R] [--procs N]\n"
        "  --host ADDR         address to listen on (default 127.0.0.1)\n"
        "  --port N            port (default 8080; 0 picks a free one)\n"
        "  --workers N         worker threads (default: the number of cores)\n"
        "  --upstream [NAME=]URL  a /dashboard upstream (repeatable, at most %d); NAME\n"
        "                      defaults to the URL's name= parameter, else upstreamN\n"
        "  --upstreams LIST    several at once, comma-separated\n"
        "                      (default: users, orders and stock from apps/upstream on\n"
        "                      127.0.0.1:8081, answering after 20, 50 and 80 ms)\n"
        "  --proxy URL         where /proxy/* goes (default http://127.0.0.1:8081)\n"
        "  --deadline S        /dashboard answers after at most S seconds (default 0.5)\n"
        "  --proxy-timeout S   /proxy/*: connect and first-byte timeout, else 504 (default 10)\n"
        "  --upstream-conns N  connections per upstream and worker, 0: no limit (default "
        "1024)\n"
        "  --rate R            /limited: R requests/s per client address, burst R (default 5)\n"
        "  --procs N           processes per worker's pool for /cpu (default: cores/workers)\n"
        "routes: GET /dashboard, * /proxy/*, GET /limited, GET /blocking?ms=N, GET /cpu?n=N,\n"
        "        GET /fast\n",
        MAX_UPSTREAMS);
}

static bool valid_name(const char *s, size_t n) {
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
            c != '.' && c != '_' && c != '-')
            return false;
    }
    /* The answer's own keys. */
    return !(n == 6 && memcmp(s, "errors", 6) == 0) && !(n == 7 && memcmp(s, "missing", 7) == 0) &&
           !(n == 8 && memcmp(s, "complete", 8) == 0);
}

/* Adds "[NAME=]URL" (spec is kept: it lives in argv or a static string).
 * Returns false with a message on stderr. */
static bool add_upstream(char *spec) {
    if (g_nups == MAX_UPSTREAMS) {
        fprintf(stderr, "aggregator: at most %d upstreams\n", MAX_UPSTREAMS);
        return false;
    }
    upstream *u = &g_ups[g_nups];
    char *scheme = strstr(spec, "://"), *eq = strchr(spec, '=');
    const char *name = NULL;
    size_t nlen = 0;
    if (eq && scheme && eq < scheme) {
        name = spec;
        nlen = (size_t)(eq - spec);
        spec = eq + 1;
    }
    u->url = spec;
    if (strncmp(spec, "http://", 7) != 0) {
        fprintf(stderr, "aggregator: '%s' is not an http:// URL\n", spec);
        return false;
    }
    const char *q = strstr(spec, "?name=");
    if (!q)
        q = strstr(spec, "&name=");
    if (!name && q) {
        name = q + 6;
        nlen = strcspn(name, "&#");
    }
    if (name && !valid_name(name, nlen)) {
        fprintf(stderr,
                "aggregator: name '%.*s': 1..64 of [A-Za-z0-9._-], not errors, missing or "
                "complete\n",
                (int)nlen, name);
        return false;
    }
    if (name)
        snprintf(u->name, sizeof(u->name), "%.*s", (int)nlen, name);
    else
        snprintf(u->name, sizeof(u->name), "upstream%zu", g_nups + 1);
    for (size_t i = 0; i < g_nups; i++) {
        if (strcmp(g_ups[i].name, u->name) == 0) {
            fprintf(stderr, "aggregator: two upstreams named '%s'\n", u->name);
            return false;
        }
    }
    g_nups++;
    return true;
}

static bool parse_seconds(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    sp_http_config cfg;
    sp_http_config_init(&cfg);
    double rate = 5;
    int procs = 0;
    static char default_ups[] = "http://127.0.0.1:8081/data?name=users&delay_ms=20,"
                                "http://127.0.0.1:8081/data?name=orders&delay_ms=50,"
                                "http://127.0.0.1:8081/data?name=stock&delay_ms=80";
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"workers", required_argument, NULL, 'w'},
                                         {"upstream", required_argument, NULL, 'u'},
                                         {"upstreams", required_argument, NULL, 'U'},
                                         {"proxy", required_argument, NULL, 'x'},
                                         {"deadline", required_argument, NULL, 'd'},
                                         {"proxy-timeout", required_argument, NULL, 't'},
                                         {"upstream-conns", required_argument, NULL, 'c'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"procs", required_argument, NULL, 'P'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    bool ok = true;
    char *list = NULL;
    while (ok && (c = getopt_long(argc, argv, "H:p:w:u:U:x:d:t:c:r:P:h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            cfg.host = optarg;
            break;
        case 'p':
            cfg.port = atoi(optarg);
            break;
        case 'w':
            cfg.workers = atoi(optarg);
            break;
        case 'u':
            ok = add_upstream(optarg);
            break;
        case 'U':
            for (char *tok = strtok_r(optarg, ",", &list); ok && tok;
                 tok = strtok_r(NULL, ",", &list))
                ok = add_upstream(tok);
            break;
        case 'x':
            g_proxy = optarg;
            break;
        case 'd':
            ok = parse_seconds(optarg, &g_deadline);
            break;
        case 't':
            ok = parse_seconds(optarg, &g_proxy_timeout) && g_proxy_timeout > 0;
            break;
        case 'c':
            g_upstream_conns = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rate = atof(optarg);
            ok = isfinite(rate) && rate > 0;
            break;
        case 'P':
            procs = atoi(optarg);
            ok = procs > 0;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            ok = false;
        }
    }
    if (!ok || optind < argc || strncmp(g_proxy, "http://", 7) != 0 || cfg.workers < 1) {
        usage(stderr);
        return 2;
    }
    for (char *tok = g_nups ? NULL : strtok_r(default_ups, ",", &list); tok;
         tok = strtok_r(NULL, ",", &list))
        add_upstream(tok);
    g_proxy_len = strlen(g_proxy);
    while (g_proxy_len > 7 && g_proxy[g_proxy_len - 1] == '/')
        g_proxy_len--;

    /* The process pools first, before any thread exists. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (procs == 0)
        procs = cores / cfg.workers > 0 ? (int)(cores / cfg.workers) : 1;
    g_pools = calloc((size_t)cfg.workers, sizeof(*g_pools));
    for (; g_pools && g_npools < cfg.workers; g_npools++) {
        int rc = sp_procpool_create(&g_pools[g_npools], procs);
        if (rc != 0) {
            fprintf(stderr, "aggregator: cannot start a process pool: %s\n", strerror(-rc));
            return 1;
        }
    }

    sp_ratelimit_mw_config rl;
    sp_ratelimit_mw_config_init(&rl);
    rl.rate = rate;
    rl.burst = rate < 1 ? 1 : rate;
    rl.by = SP_RATELIMIT_BY_IP;
    sp_ratelimit_mw *limiter = NULL;
    /* The limiter wraps the /limited group (its bare prefix routed by ""):
     * no other route is limited. */
    sp_router *r = NULL, *lim = NULL;
    if (!g_pools || sp_ratelimit_mw_create(&limiter, &rl) != 0 || sp_router_create(&r) != 0 ||
        sp_router_group(r, "/limited", &lim) != 0 ||
        sp_router_use(lim, sp_ratelimit_mw_handle, limiter) != 0 ||
        sp_router_add(r, "GET", "/dashboard", dashboard, NULL, 0) != 0 ||
        sp_router_add(r, "*", "/proxy/*", proxy, NULL, 0) != 0 ||
        sp_router_add(lim, "GET", "", limited, NULL, 0) != 0 ||
        sp_router_add(r, "GET", "/blocking", blocking, NULL, 0) != 0 ||
        sp_router_add(r, "GET", "/cpu", cpu, NULL, 0) != 0 ||
        sp_router_add(r, "GET", "/fast", fast, NULL, 0) != 0) {
        fprintf(stderr, "aggregator: cannot set the routes up\n");
        return 1;
    }

    cfg.worker_start = worker_start;
    cfg.worker_stop = worker_stop;
    sp_http_server *srv;
    int rc = sp_http_server_create(&srv, &cfg, r);
    if (rc != 0) {
        fprintf(stderr, "aggregator: cannot listen on %s:%d: %s\n", cfg.host, cfg.port,
                strerror(-rc));
        return 1;
    }
    bool v6 = strchr(cfg.host, ':') != NULL;
    printf("aggregator: listening on http://%s%s%s:%d/ with %d workers\n", v6 ? "[" : "", cfg.host,
           v6 ? "]" : "", sp_http_server_port(srv), cfg.workers);
    for (size_t i = 0; i < g_nups; i++)
        printf("aggregator: upstream %s = %s\n", g_ups[i].name, g_ups[i].url);
    printf("aggregator: /proxy/* -> %.*s/, deadline %g s\n", (int)g_proxy_len, g_proxy, g_deadline);
    fflush(stdout);
    rc = sp_http_server_run(srv);
    sp_http_server_destroy(srv);
    sp_router_destroy(r);
    sp_ratelimit_mw_destroy(limiter);
    for (int i = 0; i < g_npools; i++)
        sp_procpool_destroy(g_pools[i]);
    free(g_pools);
    sp_log_shutdown();
    return rc == 0 ? 0 : 1;
}
