/* HTTP request router: maps method + path to a handler and its middleware
 * chain. Built once before serving, then looked up per request without
 * allocating or copying: parameters are views into the request path.
 *
 * Patterns start with '/' and are split into segments at each '/':
 *   - "users"  a static segment, compared byte-wise with the path segment;
 *   - ":name"  captures one non-empty segment (name: letters, digits, '_');
 *              a ':' that does not start a segment is an ordinary byte;
 *   - "*name" or "*" as the last segment captures the rest of the path,
 *              possibly empty and possibly containing '/' (an anonymous
 *              wildcard is reported under the name "*"); a '*' anywhere
 *              else is an error, never a literal byte.
 * Matching rules:
 *   - A path equal to a pattern without parameters or wildcard is found with
 *     one hash lookup before the tree is walked.
 *   - At each segment a static child beats a parameter, which beats a
 *     trailing wildcard. When the better branch finds no route for the
 *     request's method further down, the next one is tried (backtracking):
 *     with /a/b/c and /a/:x/d, /a/b/c goes to the first and /a/b/d to the
 *     second, since the static branch b has no d below it.
 *   - The path's specificity decides first, then the method within the chosen
 *     pattern: an exact method, then (for HEAD only) GET, then "*".
 *   - Trailing slashes are significant: /users and /users/ are different
 *     paths, and ":name" never matches an empty segment (so /users/ does not
 *     match /users/:id). Empty segments ("//") are matched literally.
 *   - The router sees the path the server hands it, already percent-decoded:
 *     whether an encoded slash (%2F) inside a segment is rejected or kept as
 *     an ordinary byte of that segment is the server's decision.
 * The router runs on one thread; lookups only read it, so several threads may
 * look up a router that is no longer being modified. */
#ifndef SPINDLE_ROUTER_H
#define SPINDLE_ROUTER_H

#include <stddef.h>
#include <spindle/http.h>

typedef struct sp_router sp_router;

/* Route flag for the server: run the handler on the to_thread pool. */
enum { SP_ROUTE_BLOCKING = 1 };

/* Most parameters (including the wildcard) one pattern may capture. */
#define SP_ROUTE_MAX_PARAMS 8
/* How many patterns matching one path sp_router_allow looks at for
 * extension methods (a path rarely matches more than a static, a parameter
 * and a wildcard pattern). */
#define SP_ROUTE_ALLOW_PATTERNS 8
/* Most segments in one pattern (group prefix included): bounds the depth of
 * the lookup's backtracking, which runs on the caller's (task) stack. */
#define SP_ROUTE_MAX_SEGMENTS 64

/* Standard methods as bits, for the 405 Allow mask. Any other method token
 * can still be routed (exact string or "*" routes) but has no bit. */
#define SP_HTTP_M_GET     (1u << 0)
#define SP_HTTP_M_HEAD    (1u << 1)
#define SP_HTTP_M_POST    (1u << 2)
#define SP_HTTP_M_PUT     (1u << 3)
#define SP_HTTP_M_DELETE  (1u << 4)
#define SP_HTTP_M_PATCH   (1u << 5)
#define SP_HTTP_M_OPTIONS (1u << 6)
#define SP_HTTP_M_CONNECT (1u << 7)
#define SP_HTTP_M_TRACE   (1u << 8)
#define SP_HTTP_M_ALL     0x1ffu

/* The result of a lookup. Filled by sp_router_match; names and pattern point
 * into the router (valid until it is destroyed), values into the path that
 * was looked up (valid as long as that buffer). */
typedef struct sp_route_match {
    sp_http_handler *handler;
    void *arg;
    int flags;           /* the route's SP_ROUTE_* flags */
    const char *pattern; /* full pattern of the route matched, group prefix included */
    size_t nparams;      /* in pattern order, the wildcard last */
    sp_str names[SP_ROUTE_MAX_PARAMS];
    sp_str values[SP_ROUTE_MAX_PARAMS];
    /* SP_HTTP_M_* bits. After a 405: every method some route accepts for this
     * path (the Allow header). After a hit: the methods of the pattern
     * matched. HEAD is included wherever GET is. */
    unsigned allow;
    const sp_router *priv_group; /* whose middleware chain wraps the handler */
    /* The patterns matched (the first SP_ROUTE_ALLOW_PATTERNS), whose
     * extension-method routes sp_router_allow lists. */
    const void *priv_eps[SP_ROUTE_ALLOW_PATTERNS];
    unsigned priv_neps;
} sp_route_match;

/* Creates an empty router in *out, owned by the caller (sp_router_destroy).
 * Returns 0 or -ENOMEM. Never suspends. */
int sp_router_create(sp_router **out);

/* Frees a router made by sp_router_create with all its routes and groups
 * (every sp_router the groups handed out becomes invalid). Does nothing for
 * NULL or for a group, which belongs to its root router. Must not run while
 * a dispatch through the router is in progress. Never suspends. */
void sp_router_destroy(sp_router *r);

/* Routes method + pattern (see the top of this file) to h(req, resp, arg).
 * method is a method token ("GET", "POST", "PURGE", ... case-sensitive) or
 * "*" for every method; the strings are copied. flags: 0 or
 * SP_ROUTE_BLOCKING. On a group, the group's prefix is put before pattern,
 * and pattern "" routes the prefix itself ("/api" as well as "/api/x").
 * Returns 0; -EINVAL for a NULL handler, unknown flags, an invalid method, or
 * a bad pattern: no leading '/' (or "" outside a group), '*' anywhere but the start of the last
 * segment, an empty, invalid or duplicate parameter name, more than
 * SP_ROUTE_MAX_PARAMS parameters or SP_ROUTE_MAX_SEGMENTS segments, or a
 * parameter (or wildcard) named differently from another route's at the same
 * position (/u/:id then /u/:name); -EEXIST if method + pattern is already
 * routed; -ENOMEM. Must not be called while a dispatch through this router
 * tree is in progress. Never suspends. */
int sp_router_add(sp_router *r, const char *method, const char *pattern, sp_http_handler *h,
                  void *arg, int flags);

/* Adds mw (called with arg) around every route of r and of r's groups, those
 * already added and those to come. Middlewares run in the order they were
 * added, the first one outermost; a group's own run inside its parent's. The
 * root router's middlewares also wrap the server's 404 and 405 answers.
 * Returns 0, -EINVAL if mw is NULL, -ENOMEM. Must not be called while a
 * dispatch is in progress. Never suspends. */
int sp_router_use(sp_router *r, sp_http_middleware *mw, void *arg);

/* Makes in *group a router whose routes go under prefix in r's tree (prefix
 * "/api" and pattern "/users" route "/api/users"; a trailing '/' of prefix is
 * dropped, so "/" is no prefix at all). prefix follows the pattern syntax but
 * may not hold a wildcard. Groups nest; a group belongs to r's root router and
 * is freed with it. Its middleware runs inside r's. Returns 0, -EINVAL for a
 * bad prefix, -ENOMEM. Never suspends. */
int sp_router_group(sp_router *r, const char *prefix, sp_router **group);

/* Looks up method + path (the request path without the query, already
 * percent-decoded) in the router tree of r (a group looks up its root's
 * tree). Returns 0 when a route matches: *m holds its handler, parameters
 * and middleware chain. -ENOENT if no route has this path (404), including
 * paths not starting with '/'. -EOPNOTSUPP if routes have this path but none
 * for this method (405): m->allow lists the methods they accept. On both
 * misses m's chain is the root router's middleware, so the server can run it
 * around its own answer; handler is NULL. HEAD is routed to a GET route when
 * the pattern has no HEAD route. Never allocates, never suspends. */
int sp_router_match(const sp_router *r, sp_str method, sp_str path, sp_route_match *m);

/* Finds the value of parameter name ("*" for an anonymous wildcard) in m.
 * Returns 0 with *value set (a view into the path), or -ENOENT. Never
 * suspends. */
int sp_route_match_param(const sp_route_match *m, const char *name, sp_str *value);

/* Writes the Allow header value for m into buf, NUL-terminated: the
 * standard methods of m->allow in SP_HTTP_M_* bit order, then the extension
 * methods routed for the path ("GET, HEAD, PURGE"), "" for none. Returns its
 * length (without the NUL) or -ENOSPC if buf holds less than length + 1
 * bytes. Never suspends. */
int sp_router_allow(const sp_route_match *m, char *buf, size_t cap);

/* Runs m's middleware chain around handler(req, resp, arg): normally
 * m->handler and m->arg; the server passes its own 404/405 answer or its
 * to_thread wrapper instead. The chain's cursors live on the caller's stack:
 * an sp_http_next is valid only during the middleware call it was handed to.
 * Returns what the outermost middleware (or handler) returns, -EINVAL if
 * handler is NULL or m was not filled by sp_router_match. May suspend (when
 * a middleware or the handler does). */
int sp_router_dispatch(const sp_route_match *m, sp_http_handler *handler, void *arg,
                       sp_http_req *req, sp_http_resp *resp);

#endif
