/* The HTTP router without a server: routes are looked up with
 * sp_router_match and run through sp_router_dispatch with dummy request and
 * response pointers; handlers and middlewares are plain functions that log
 * their calls. Every route's arg is a label naming it, so a lookup is
 * checked by the label it lands on. */
#include <errno.h>
#include <stdint.h>

#include "sp_test.h"

static char dummy_req, dummy_resp;
#define REQ  ((sp_http_req *)&dummy_req)
#define RESP ((sp_http_resp *)&dummy_resp)

static int handler(sp_http_req *req, sp_http_resp *resp, void *arg) {
    assert_ptr_equal(req, REQ);
    assert_ptr_equal(resp, RESP);
    logf_("handler %s", (const char *)arg);
    return 0;
}

static int failing_handler(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)resp;
    logf_("handler %s fails", (const char *)arg);
    return -EIO;
}

static int mw_log(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg) {
    logf_("%s>", (const char *)arg);
    int rc = sp_http_next_call(next, req, resp);
    logf_("<%s %d", (const char *)arg, rc);
    return rc;
}

/* Answers by itself: the inner chain and the handler never run. */
static int mw_deny(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg) {
    (void)req, (void)resp, (void)next;
    logf_("%s answers 403", (const char *)arg);
    return 0;
}

/* Runs the rest of the chain again when it fails. */
static int mw_retry(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg) {
    int rc = sp_http_next_call(next, req, resp);
    if (rc != 0) {
        logf_("%s retries after %d", (const char *)arg, rc);
        rc = sp_http_next_call(next, req, resp);
    }
    return rc;
}

static sp_router *new_router(void) {
    sp_router *r = NULL;
    assert_int_equal(sp_router_create(&r), 0);
    assert_non_null(r);
    return r;
}

/* Routes method + pattern with the label "METHOD pattern" (a string literal
 * built by the macro, so it outlives the router). */
#define ROUTE(r, method, pattern)                                                                  \
    assert_int_equal(sp_router_add(r, method, pattern, handler, method " " pattern, 0), 0)

static int match(const sp_router *r, const char *method, const char *path, sp_route_match *m) {
    memset(m, 0xa5, sizeof(*m));
    return sp_router_match(r, (sp_str){method, strlen(method)}, (sp_str){path, strlen(path)}, m);
}

/* The label of the route method + path lands on, or "404" / "405". */
static const char *lookup(const sp_router *r, const char *method, const char *path) {
    sp_route_match m;
    int rc = match(r, method, path, &m);
    if (rc == -ENOENT)
        return "404";
    if (rc == -EOPNOTSUPP)
        return "405";
    assert_int_equal(rc, 0);
    return m.arg;
}

/* m's parameters as "name=value,name=value". */
static const char *params(const sp_route_match *m) {
    static char buf[256];
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < m->nparams; i++) {
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%.*s=%.*s", i ? "," : "",
                                (int)m->names[i].len, m->names[i].ptr, (int)m->values[i].len,
                                m->values[i].ptr);
    }
    return buf;
}

static const char *allow_text(const sp_route_match *m) {
    static char buf[128];
    assert_true(sp_router_allow(m, buf, sizeof(buf)) >= 0);
    return buf;
}

/* ---- lookups ---- */

static void test_static_routes_match_exact_path_and_trailing_slash_is_significant(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/");
    ROUTE(r, "GET", "/users");
    ROUTE(r, "GET", "/users/");
    ROUTE(r, "GET", "/users/list");
    ROUTE(r, "POST", "/v1/things:batchGet");
    ROUTE(r, "GET", "/a//b");
    assert_string_equal(lookup(r, "GET", "/"), "GET /");
    assert_string_equal(lookup(r, "GET", "/users"), "GET /users");
    assert_string_equal(lookup(r, "GET", "/users/"), "GET /users/");
    assert_string_equal(lookup(r, "GET", "/users/list"), "GET /users/list");
    assert_string_equal(lookup(r, "POST", "/v1/things:batchGet"), "POST /v1/things:batchGet");
    assert_string_equal(lookup(r, "GET", "/a//b"), "GET /a//b");
    assert_string_equal(lookup(r, "GET", "/a/b"), "404");
    assert_string_equal(lookup(r, "GET", "/users/list/"), "404");
    assert_string_equal(lookup(r, "GET", "/user"), "404");
    assert_string_equal(lookup(r, "GET", "/Users"), "404");
    assert_string_equal(lookup(r, "GET", "//"), "404");

    sp_route_match m;
    assert_int_equal(match(r, "GET", "/users/list", &m), 0);
    assert_ptr_equal(m.handler, handler);
    assert_string_equal(m.pattern, "/users/list");
    assert_int_equal(m.nparams, 0);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.allow, SP_HTTP_M_GET | SP_HTTP_M_HEAD);
    sp_router_destroy(r);
}

static void test_path_not_starting_with_slash_is_404(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "*", "/*");
    assert_string_equal(lookup(r, "GET", "/anything"), "* /*");
    assert_string_equal(lookup(r, "OPTIONS", "*"), "404");
    assert_string_equal(lookup(r, "GET", ""), "404");
    assert_string_equal(lookup(r, "GET", "http://host/x"), "404");
    sp_router_destroy(r);
}

static void test_params_are_views_into_the_path(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/users/:id/posts/:post_id");
    static const char path[] = "/users/42/posts/7a";
    sp_route_match m;
    assert_int_equal(match(r, "GET", path, &m), 0);
    assert_string_equal(m.arg, "GET /users/:id/posts/:post_id");
    assert_string_equal(m.pattern, "/users/:id/posts/:post_id");
    assert_string_equal(params(&m), "id=42,post_id=7a");
    assert_ptr_equal(m.values[0].ptr, path + 7);
    assert_ptr_equal(m.values[1].ptr, path + 16);

    sp_str v;
    assert_int_equal(sp_route_match_param(&m, "post_id", &v), 0);
    assert_ptr_equal(v.ptr, path + 16);
    assert_int_equal(v.len, 2);
    assert_int_equal(sp_route_match_param(&m, "post", &v), -ENOENT);
    assert_int_equal(sp_route_match_param(&m, "*", &v), -ENOENT);

    /* A parameter takes exactly one non-empty segment. */
    assert_string_equal(lookup(r, "GET", "/users//posts/7"), "404");
    assert_string_equal(lookup(r, "GET", "/users/42/posts/"), "404");
    assert_string_equal(lookup(r, "GET", "/users/42/posts/7/"), "404");
    assert_string_equal(lookup(r, "GET", "/users/4/2/posts/7"), "404");
    sp_router_destroy(r);
}

static void test_wildcard_captures_rest_empty_or_multi_segment(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/static/*path");
    ROUTE(r, "GET", "/files/:bucket/*");
    sp_route_match m;

    assert_int_equal(match(r, "GET", "/static/css/site/main.css", &m), 0);
    assert_string_equal(params(&m), "path=css/site/main.css");
    assert_string_equal(m.pattern, "/static/*path");
    assert_int_equal(match(r, "GET", "/static/", &m), 0);
    assert_string_equal(params(&m), "path=");
    assert_int_equal(match(r, "GET", "/static//x/", &m), 0);
    assert_string_equal(params(&m), "path=/x/");
    assert_string_equal(lookup(r, "GET", "/static"), "404");

    assert_int_equal(match(r, "GET", "/files/b1/a/b", &m), 0);
    assert_string_equal(params(&m), "bucket=b1,*=a/b");
    sp_str v;
    assert_int_equal(sp_route_match_param(&m, "*", &v), 0);
    assert_int_equal(v.len, 3);
    assert_string_equal(lookup(r, "GET", "/files/b1"), "404");

    /* A catch-all wildcard at the root takes every path, "/" included. */
    ROUTE(r, "GET", "/*");
    assert_int_equal(match(r, "GET", "/", &m), 0);
    assert_string_equal(params(&m), "*=");
    assert_string_equal(lookup(r, "GET", "/files/b1"), "GET /*");
    assert_string_equal(lookup(r, "GET", "/static/x"), "GET /static/*path");
    sp_router_destroy(r);
}

static void test_static_beats_param_beats_wildcard(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/a/*");
    ROUTE(r, "GET", "/a/:x");
    ROUTE(r, "GET", "/a/b");
    ROUTE(r, "GET", "/a/:x/c");
    ROUTE(r, "GET", "/a/b/:y");
    assert_string_equal(lookup(r, "GET", "/a/b"), "GET /a/b");
    assert_string_equal(lookup(r, "GET", "/a/z"), "GET /a/:x");
    assert_string_equal(lookup(r, "GET", "/a/"), "GET /a/*");
    assert_string_equal(lookup(r, "GET", "/a/z/q"), "GET /a/*");
    /* Static first: /a/b/:y wins over /a/:x/c for /a/b/c. */
    assert_string_equal(lookup(r, "GET", "/a/b/c"), "GET /a/b/:y");
    assert_string_equal(lookup(r, "GET", "/a/b/d"), "GET /a/b/:y");
    assert_string_equal(lookup(r, "GET", "/a/z/c"), "GET /a/:x/c");
    sp_router_destroy(r);
}

static void test_backtracks_from_static_to_param_to_wildcard(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/a/b/c");
    ROUTE(r, "GET", "/a/:x/d");
    ROUTE(r, "GET", "/a/*rest");
    ROUTE(r, "GET", "/k/:x/q/:w/v");
    ROUTE(r, "GET", "/k/:x/:y/:z/z");
    sp_route_match m;
    assert_string_equal(lookup(r, "GET", "/a/b/c"), "GET /a/b/c");
    /* The static branch b has no d below it: :x takes b. */
    assert_int_equal(match(r, "GET", "/a/b/d", &m), 0);
    assert_string_equal(m.arg, "GET /a/:x/d");
    assert_string_equal(params(&m), "x=b");
    /* Neither static nor param branch has e: the wildcard, from the start. */
    assert_int_equal(match(r, "GET", "/a/b/e", &m), 0);
    assert_string_equal(m.arg, "GET /a/*rest");
    assert_string_equal(params(&m), "rest=b/e");
    /* A failed deeper branch's captures are dropped. */
    assert_int_equal(match(r, "GET", "/k/1/q/2/z", &m), 0);
    assert_string_equal(m.arg, "GET /k/:x/:y/:z/z");
    assert_string_equal(params(&m), "x=1,y=q,z=2");
    assert_int_equal(match(r, "GET", "/k/1/q/2/v", &m), 0);
    assert_string_equal(params(&m), "x=1,w=2");
    sp_router_destroy(r);
}

static void test_backtracks_when_the_better_pattern_lacks_the_method(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/m/b");
    ROUTE(r, "POST", "/m/:x");
    ROUTE(r, "DELETE", "/m/*");
    assert_string_equal(lookup(r, "GET", "/m/b"), "GET /m/b");
    assert_string_equal(lookup(r, "POST", "/m/b"), "POST /m/:x");
    assert_string_equal(lookup(r, "DELETE", "/m/b"), "DELETE /m/*");
    sp_route_match m;
    assert_int_equal(match(r, "PUT", "/m/b", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "GET, HEAD, POST, DELETE");
    assert_int_equal(match(r, "PUT", "/m/c", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "POST, DELETE");
    sp_router_destroy(r);
}

static void test_unknown_path_is_404_known_path_with_other_method_is_405(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/items");
    ROUTE(r, "POST", "/items");
    ROUTE(r, "TRACE", "/items");
    ROUTE(r, "OPTIONS", "/items");
    ROUTE(r, "PATCH", "/items/:id");
    sp_route_match m;
    assert_int_equal(match(r, "DELETE", "/items", &m), -EOPNOTSUPP);
    assert_null(m.handler);
    assert_null(m.pattern);
    assert_int_equal(m.nparams, 0);
    assert_int_equal(m.allow, SP_HTTP_M_GET | SP_HTTP_M_HEAD | SP_HTTP_M_POST | SP_HTTP_M_OPTIONS |
                                  SP_HTTP_M_TRACE);
    assert_string_equal(allow_text(&m), "GET, HEAD, POST, OPTIONS, TRACE");

    char small[32];
    assert_int_equal(sp_router_allow(&m, small, sizeof(small)), 31);
    assert_int_equal(sp_router_allow(&m, small, 31), -ENOSPC);
    assert_int_equal(sp_router_allow(&m, small, 0), -ENOSPC);

    assert_int_equal(match(r, "GET", "/items/9", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "PATCH");
    assert_int_equal(match(r, "GET", "/nothing", &m), -ENOENT);
    assert_null(m.handler);
    assert_int_equal(m.allow, 0);
    assert_string_equal(allow_text(&m), "");

    /* Every standard method, in bit order. */
    m.allow = SP_HTTP_M_ALL;
    assert_string_equal(allow_text(&m),
                        "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE");
    sp_router_destroy(r);
}

static void test_head_falls_back_to_get_unless_head_is_routed(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/page");
    ROUTE(r, "GET", "/doc/:id");
    ROUTE(r, "POST", "/form");
    ROUTE(r, "*", "/any");
    ROUTE(r, "GET", "/both");
    ROUTE(r, "HEAD", "/both");
    sp_route_match m;
    assert_int_equal(match(r, "HEAD", "/page", &m), 0);
    assert_string_equal(m.arg, "GET /page");
    assert_true(m.allow & SP_HTTP_M_HEAD);
    assert_string_equal(lookup(r, "HEAD", "/doc/1"), "GET /doc/:id");
    assert_string_equal(lookup(r, "HEAD", "/both"), "HEAD /both");
    assert_string_equal(lookup(r, "GET", "/both"), "GET /both");
    assert_string_equal(lookup(r, "HEAD", "/any"), "* /any");
    assert_int_equal(match(r, "HEAD", "/form", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "POST");
    assert_int_equal(match(r, "POST", "/page", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "GET, HEAD");
    /* GET does not fall back to HEAD. */
    ROUTE(r, "HEAD", "/headonly");
    assert_int_equal(match(r, "GET", "/headonly", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "HEAD");
    sp_router_destroy(r);
}

static void test_star_method_matches_every_method_after_exact_ones(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "*", "/any");
    ROUTE(r, "DELETE", "/any");
    ROUTE(r, "GET", "/x/:id");
    ROUTE(r, "*", "/x/me");
    assert_string_equal(lookup(r, "GET", "/any"), "* /any");
    assert_string_equal(lookup(r, "DELETE", "/any"), "DELETE /any");
    assert_string_equal(lookup(r, "PURGE", "/any"), "* /any");
    assert_string_equal(lookup(r, "CONNECT", "/any"), "* /any");
    /* The path's specificity decides before the method. */
    assert_string_equal(lookup(r, "GET", "/x/me"), "* /x/me");
    assert_string_equal(lookup(r, "GET", "/x/you"), "GET /x/:id");
    sp_route_match m;
    assert_int_equal(match(r, "GET", "/any", &m), 0);
    assert_int_equal(m.allow, SP_HTTP_M_ALL);
    sp_router_destroy(r);
}

static void test_nonstandard_methods_route_by_exact_string_and_are_named_in_allow(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "PURGE", "/cache/*");
    ROUTE(r, "MKCOL", "/dav/:dir");
    ROUTE(r, "PROPFIND", "/dav/:dir");
    ROUTE(r, "GET", "/dav/:dir");
    assert_string_equal(lookup(r, "PURGE", "/cache/a/b"), "PURGE /cache/*");
    assert_string_equal(lookup(r, "MKCOL", "/dav/x"), "MKCOL /dav/:dir");
    assert_string_equal(lookup(r, "PROPFIND", "/dav/x"), "PROPFIND /dav/:dir");
    /* Methods are case-sensitive. */
    sp_route_match m;
    assert_int_equal(match(r, "purge", "/cache/a", &m), -EOPNOTSUPP);
    assert_int_equal(m.allow, 0); /* no bit: Allow still names it */
    assert_string_equal(allow_text(&m), "PURGE");
    assert_int_equal(match(r, "get", "/dav/x", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "GET, HEAD, PROPFIND, MKCOL");
    assert_string_equal(lookup(r, "PURGEX", "/cache/a"), "405");
    sp_router_destroy(r);
}

/* ---- registration errors ---- */

static void test_same_method_and_pattern_twice_is_eexist(void **state) {
    (void)state;
    sp_router *r = new_router(), *api;
    ROUTE(r, "GET", "/a");
    ROUTE(r, "*", "/a");
    ROUTE(r, "PURGE", "/a");
    ROUTE(r, "GET", "/u/:id");
    ROUTE(r, "GET", "/s/*rest");
    assert_int_equal(sp_router_add(r, "GET", "/a", handler, "dup", 0), -EEXIST);
    assert_int_equal(sp_router_add(r, "*", "/a", handler, "dup", 0), -EEXIST);
    assert_int_equal(sp_router_add(r, "PURGE", "/a", handler, "dup", 0), -EEXIST);
    assert_int_equal(sp_router_add(r, "GET", "/u/:id", handler, "dup", 0), -EEXIST);
    assert_int_equal(sp_router_add(r, "GET", "/s/*rest", handler, "dup", 0), -EEXIST);
    /* The same full pattern through a group. */
    assert_int_equal(sp_router_group(r, "/u", &api), 0);
    assert_int_equal(sp_router_add(api, "GET", "/:id", handler, "dup", 0), -EEXIST);
    /* HEAD is its own method even though it falls back to GET. */
    ROUTE(r, "HEAD", "/a");
    ROUTE(r, "POST", "/u/:id");
    assert_string_equal(lookup(r, "GET", "/a"), "GET /a");
    assert_string_equal(lookup(r, "GET", "/u/1"), "GET /u/:id");
    sp_router_destroy(r);
}

static void test_bad_patterns_methods_and_arguments_are_einval(void **state) {
    (void)state;
    sp_router *r = new_router();
    static const char *const bad[] = {
        "",
        "users",
        "*",
        "/a/*/b",
        "/a/b*",
        "/a/*b*",
        "/a/x*y",
        "/a/:",
        "/a/:x-y",
        "/a/:x:y",
        "/a/*x-y",
        "/:id/:id",
        "/:id/*id",
        "/*x/",
        "/a/:id/b/*/c",
        "/:p1/:p2/:p3/:p4/:p5/:p6/:p7/:p8/:p9",
        "/:p1/:p2/:p3/:p4/:p5/:p6/:p7/:p8/*",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sp_router_add(r, "GET", bad[i], handler, NULL, 0) != -EINVAL)
            fail_msg("pattern '%s' accepted", bad[i]);
    }
    /* Exactly the limits are fine. */
    ROUTE(r, "GET", "/:p1/:p2/:p3/:p4/:p5/:p6/:p7/*p8");
    char deep[2 * SP_ROUTE_MAX_SEGMENTS + 3];
    for (int i = 0; i < SP_ROUTE_MAX_SEGMENTS; i++)
        memcpy(deep + 2 * i, "/x", 2);
    deep[2 * SP_ROUTE_MAX_SEGMENTS] = '\0';
    assert_int_equal(sp_router_add(r, "GET", deep, handler, "deep", 0), 0);
    strcat(deep, "/x");
    assert_int_equal(sp_router_add(r, "GET", deep, handler, "deeper", 0), -EINVAL);

    /* Another route names the parameter or wildcard at this position differently. */
    ROUTE(r, "GET", "/u/:id");
    ROUTE(r, "GET", "/s/*rest");
    assert_int_equal(sp_router_add(r, "POST", "/u/:name", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(r, "GET", "/u/:name/x", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(r, "POST", "/s/*path", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(r, "POST", "/s/*", handler, NULL, 0), -EINVAL);
    ROUTE(r, "POST", "/u/:id/x");
    ROUTE(r, "POST", "/s/:rest");

    /* Methods, handler, flags. */
    static const char *const bad_methods[] = {"", "GE T", "GET\r\n", "(GET)", "GET/1"};
    for (size_t i = 0; i < sizeof(bad_methods) / sizeof(bad_methods[0]); i++)
        assert_int_equal(sp_router_add(r, bad_methods[i], "/m", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(r, NULL, "/m", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(r, "GET", NULL, handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(r, "GET", "/m", NULL, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(r, "GET", "/m", handler, NULL, 2), -EINVAL);
    assert_int_equal(sp_router_add(NULL, "GET", "/m", handler, NULL, 0), -EINVAL);

    /* Groups: bad prefixes, and patterns that turn bad under a prefix. */
    sp_router *g = NULL;
    assert_int_equal(sp_router_group(r, "api", &g), -EINVAL);
    assert_int_equal(sp_router_group(r, "", &g), -EINVAL);
    assert_int_equal(sp_router_group(r, "/files/*", &g), -EINVAL);
    assert_int_equal(sp_router_group(r, "/a/:", &g), -EINVAL);
    assert_int_equal(sp_router_group(r, "/a/:x/:x", &g), -EINVAL);
    assert_int_equal(sp_router_group(r, NULL, &g), -EINVAL);
    assert_null(g);
    assert_int_equal(sp_router_group(r, "/t/:x", &g), 0);
    sp_router *g2 = NULL;
    assert_int_equal(sp_router_group(g, "/:x", &g2), -EINVAL);
    assert_int_equal(sp_router_add(g, "GET", "/:x", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(g, "GET", "x", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_use(r, NULL, NULL), -EINVAL);

    /* Nothing above was half-added: the good routes still answer, the bad
     * paths are plain 404s, not 405s of an empty pattern. */
    assert_string_equal(lookup(r, "GET", "/u/1"), "GET /u/:id");
    assert_string_equal(lookup(r, "POST", "/u/1/x"), "POST /u/:id/x");
    assert_string_equal(lookup(r, "GET", "/s/a/b"), "GET /s/*rest");
    assert_string_equal(lookup(r, "POST", "/s/a"), "POST /s/:rest");
    assert_string_equal(lookup(r, "GET", "/m"), "404");
    assert_string_equal(lookup(r, "GET", "/t/1/2"), "404");
    assert_string_equal(lookup(r, "GET", "/1/2/3/4/5/6/7/8/9"),
                        "GET /:p1/:p2/:p3/:p4/:p5/:p6/:p7/*p8");
    deep[strlen(deep) - 2] = '\0';
    assert_string_equal(lookup(r, "GET", deep), "deep");
    sp_router_destroy(r);
}

/* ---- groups ---- */

static void test_groups_put_routes_under_prefix_and_nest(void **state) {
    (void)state;
    sp_router *r = new_router(), *api, *v1, *slash, *root_alias, *user;
    assert_int_equal(sp_router_group(r, "/api", &api), 0);
    assert_int_equal(sp_router_group(api, "/v1/", &v1), 0);
    assert_int_equal(sp_router_group(r, "/", &root_alias), 0);
    assert_int_equal(sp_router_group(r, "/s/", &slash), 0);
    assert_int_equal(sp_router_group(api, "/users/:uid", &user), 0);
    ROUTE(api, "GET", "/status");
    ROUTE(api, "GET", "/");
    ROUTE(v1, "GET", "/items/:id");
    ROUTE(slash, "GET", "/x");
    ROUTE(root_alias, "GET", "/home");
    ROUTE(user, "GET", "/posts/:pid");
    ROUTE(r, "GET", "/api");

    sp_route_match m;
    assert_string_equal(lookup(r, "GET", "/api/status"), "GET /status");
    assert_string_equal(lookup(r, "GET", "/api/"), "GET /");
    assert_string_equal(lookup(r, "GET", "/api"), "GET /api");
    assert_string_equal(lookup(r, "GET", "/status"), "404");
    assert_int_equal(match(r, "GET", "/api/v1/items/7", &m), 0);
    assert_string_equal(m.pattern, "/api/v1/items/:id");
    assert_string_equal(params(&m), "id=7");
    assert_string_equal(lookup(r, "GET", "/api/v1//items/7"), "404");
    assert_string_equal(lookup(r, "GET", "/s/x"), "GET /x");
    assert_string_equal(lookup(r, "GET", "/home"), "GET /home");
    assert_int_equal(match(r, "GET", "/api/users/5/posts/9", &m), 0);
    assert_string_equal(m.pattern, "/api/users/:uid/posts/:pid");
    assert_string_equal(params(&m), "uid=5,pid=9");
    /* A group looks up its root's whole tree. */
    assert_string_equal(lookup(v1, "GET", "/home"), "GET /home");
    /* Destroying a group is a no-op: it belongs to its root. */
    sp_router_destroy(v1);
    assert_string_equal(lookup(r, "GET", "/api/v1/items/1"), "GET /items/:id");
    sp_router_destroy(NULL);
    sp_router_destroy(r);
}

/* RFC 9110 15.5.6: a 405's Allow lists every method the resource supports,
 * extension methods too, once each, from every pattern the path matches. */
static void test_allow_lists_extension_methods_of_every_matching_pattern(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "PURGE", "/c/:id");
    ROUTE(r, "GET", "/c/:id");
    ROUTE(r, "PURGE", "/c/7");
    ROUTE(r, "LINK", "/c/7");
    ROUTE(r, "M-SEARCH", "/c/*rest");
    ROUTE(r, "FOO", "/only");
    sp_route_match m;
    assert_int_equal(match(r, "POST", "/c/7", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "GET, HEAD, LINK, PURGE, M-SEARCH");
    assert_int_equal(match(r, "POST", "/c/8", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "GET, HEAD, PURGE, M-SEARCH");
    assert_int_equal(match(r, "GET", "/only", &m), -EOPNOTSUPP);
    assert_string_equal(allow_text(&m), "FOO");
    char small[8];
    assert_int_equal(sp_router_allow(&m, small, sizeof(small)), 3);
    assert_int_equal(sp_router_allow(&m, small, 3), -ENOSPC);
    sp_router_destroy(r);
}

/* A path matched by more patterns than SP_ROUTE_ALLOW_PATTERNS: Allow names
 * the extension methods of that many of them, each once, and no more. */
static void test_allow_looks_at_a_bounded_number_of_patterns(void **state) {
    (void)state;
    sp_router *r = new_router();
    /* /a/b/c matches all 8 static/parameter combinations, then the wildcard pattern. */
    static const char *const pats[] = {"/a/b/c",   "/a/b/:z",  "/a/:y/c",   "/a/:y/:z", "/:x/b/c",
                                       "/:x/b/:z", "/:x/:y/c", "/:x/:y/:z", "/*rest"};
    static const char *const methods[] = {"M0", "M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8"};
    for (int i = 0; i < 9; i++)
        assert_int_equal(sp_router_add(r, methods[i], pats[i], handler, NULL, 0), 0);
    sp_route_match m;
    assert_int_equal(match(r, "GET", "/a/b/c", &m), -EOPNOTSUPP);
    assert_int_equal(m.priv_neps, SP_ROUTE_ALLOW_PATTERNS);
    const char *allow = allow_text(&m);
    int names = 1, seen = 0;
    for (const char *p = allow; *p; p++)
        names += *p == ',';
    for (int i = 0; i < 9; i++)
        seen += strstr(allow, methods[i]) != NULL;
    assert_int_equal(names, SP_ROUTE_ALLOW_PATTERNS);
    assert_int_equal(seen, SP_ROUTE_ALLOW_PATTERNS);
    sp_router_destroy(r);
}

/* Pattern "" on a group routes its bare prefix, under the group's
 * middleware; on the root, or on a prefix-less group, it is refused. */
static void test_group_routes_its_bare_prefix_with_an_empty_pattern(void **state) {
    (void)state;
    sp_router *r = new_router(), *api, *none;
    assert_int_equal(sp_router_group(r, "/api", &api), 0);
    assert_int_equal(sp_router_group(r, "/", &none), 0);
    ROUTE(api, "GET", "");
    ROUTE(api, "GET", "/x");
    assert_int_equal(sp_router_add(api, "GET", "", handler, NULL, 0), -EEXIST);
    assert_int_equal(sp_router_add(r, "GET", "", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(none, "GET", "", handler, NULL, 0), -EINVAL);
    sp_route_match m;
    assert_int_equal(match(r, "GET", "/api", &m), 0);
    assert_string_equal(m.pattern, "/api");
    assert_string_equal(m.arg, "GET ");
    assert_string_equal(lookup(r, "GET", "/api/"), "404");
    assert_string_equal(lookup(r, "GET", "/api/x"), "GET /x");
    assert_string_equal(lookup(r, "POST", "/api"), "405");
    sp_router_destroy(r);
}

/* ---- middleware and dispatch ---- */

static int dispatch(const sp_router *r, const char *method, const char *path) {
    sp_route_match m;
    int rc = match(r, method, path, &m);
    if (rc != 0)
        return sp_router_dispatch(&m, handler, rc == -ENOENT ? "404" : "405", REQ, RESP);
    return sp_router_dispatch(&m, m.handler, m.arg, REQ, RESP);
}

static void test_middleware_runs_root_outer_then_groups_then_handler_and_unwinds(void **state) {
    (void)state;
    sp_router *r = new_router(), *api, *v1;
    assert_int_equal(sp_router_use(r, mw_log, "root1"), 0);
    assert_int_equal(sp_router_group(r, "/api", &api), 0);
    ROUTE(api, "GET", "/v1/x"); /* added before the middlewares that wrap it */
    assert_int_equal(sp_router_group(api, "/v2", &v1), 0);
    ROUTE(v1, "GET", "/y");
    ROUTE(r, "GET", "/plain");
    /* Added after the groups exist: still around all of them, inside root1. */
    assert_int_equal(sp_router_use(r, mw_log, "root2"), 0);
    assert_int_equal(sp_router_use(api, mw_log, "api"), 0);
    assert_int_equal(sp_router_use(v1, mw_log, "v2a"), 0);
    assert_int_equal(sp_router_use(v1, mw_log, "v2b"), 0);

    assert_int_equal(dispatch(r, "GET", "/api/v2/y"), 0);
    expect_log("root1>", "root2>", "api>", "v2a>", "v2b>", "handler GET /y", "<v2b 0", "<v2a 0",
               "<api 0", "<root2 0", "<root1 0");
    assert_int_equal(dispatch(r, "GET", "/api/v1/x"), 0);
    expect_log("root1>", "root2>", "api>", "handler GET /v1/x", "<api 0", "<root2 0", "<root1 0");
    assert_int_equal(dispatch(r, "GET", "/plain"), 0);
    expect_log("root1>", "root2>", "handler GET /plain", "<root2 0", "<root1 0");

    /* A router without middleware calls the handler directly; errors pass through. */
    sp_router *bare = new_router();
    assert_int_equal(sp_router_add(bare, "GET", "/f", failing_handler, "f", 0), 0);
    assert_int_equal(dispatch(bare, "GET", "/f"), -EIO);
    expect_log("handler f fails");
    sp_router_destroy(bare);
    sp_router_destroy(r);
}

static void test_middleware_answering_itself_skips_inner_chain_and_handler(void **state) {
    (void)state;
    sp_router *r = new_router(), *admin;
    assert_int_equal(sp_router_use(r, mw_log, "log"), 0);
    assert_int_equal(sp_router_group(r, "/admin", &admin), 0);
    assert_int_equal(sp_router_use(admin, mw_deny, "auth"), 0);
    assert_int_equal(sp_router_use(admin, mw_log, "inner"), 0);
    ROUTE(admin, "POST", "/reset");
    ROUTE(r, "GET", "/open");
    assert_int_equal(dispatch(r, "POST", "/admin/reset"), 0);
    expect_log("log>", "auth answers 403", "<log 0");
    assert_int_equal(dispatch(r, "GET", "/open"), 0);
    expect_log("log>", "handler GET /open", "<log 0");
    sp_router_destroy(r);
}

static void test_miss_runs_only_the_root_chain_around_the_servers_answer(void **state) {
    (void)state;
    sp_router *r = new_router(), *api;
    assert_int_equal(sp_router_group(r, "/api", &api), 0);
    assert_int_equal(sp_router_use(api, mw_log, "api"), 0);
    ROUTE(api, "GET", "/items");
    /* No root middleware yet: the server's answer runs bare. */
    assert_int_equal(dispatch(r, "GET", "/nowhere"), 0);
    expect_log("handler 404");
    assert_int_equal(sp_router_use(r, mw_log, "root"), 0);
    assert_int_equal(dispatch(r, "GET", "/nowhere"), 0);
    expect_log("root>", "handler 404", "<root 0");
    assert_int_equal(dispatch(r, "DELETE", "/api/items"), 0);
    expect_log("root>", "handler 405", "<root 0");
    assert_int_equal(dispatch(r, "GET", "/api/items"), 0);
    expect_log("root>", "api>", "handler GET /items", "<api 0", "<root 0");
    /* Looked up through a group, a miss still gets the root's chain. */
    sp_route_match m;
    assert_int_equal(match(api, "GET", "/api/none", &m), -ENOENT);
    assert_int_equal(sp_router_dispatch(&m, handler, "404", REQ, RESP), 0);
    expect_log("root>", "handler 404", "<root 0");
    sp_router_destroy(r);
}

static void test_middleware_may_run_the_rest_of_the_chain_twice(void **state) {
    (void)state;
    sp_router *r = new_router();
    assert_int_equal(sp_router_use(r, mw_retry, "retry"), 0);
    assert_int_equal(sp_router_use(r, mw_log, "inner"), 0);
    assert_int_equal(sp_router_add(r, "GET", "/flaky", failing_handler, "flaky", 0), 0);
    assert_int_equal(dispatch(r, "GET", "/flaky"), -EIO);
    expect_log("inner>", "handler flaky fails", "<inner -5", "retry retries after -5", "inner>",
               "handler flaky fails", "<inner -5");
    sp_router_destroy(r);
}

static void test_dispatch_rejects_missing_handler_or_unmatched_result(void **state) {
    (void)state;
    sp_router *r = new_router();
    ROUTE(r, "GET", "/a");
    sp_route_match m;
    assert_int_equal(match(r, "GET", "/a", &m), 0);
    assert_int_equal(sp_router_dispatch(&m, NULL, NULL, REQ, RESP), -EINVAL);
    memset(&m, 0, sizeof(m));
    assert_int_equal(sp_router_dispatch(&m, handler, "x", REQ, RESP), -EINVAL);
    assert_int_equal(sp_log_n, 0);
    sp_router_destroy(r);
}

static void test_route_flags_and_args_are_returned(void **state) {
    (void)state;
    sp_router *r = new_router();
    int token = 0;
    assert_int_equal(sp_router_add(r, "POST", "/resize/:w", handler, &token, SP_ROUTE_BLOCKING), 0);
    sp_route_match m;
    assert_int_equal(match(r, "POST", "/resize/640", &m), 0);
    assert_int_equal(m.flags, SP_ROUTE_BLOCKING);
    assert_ptr_equal(m.arg, &token);
    sp_router_destroy(r);
}

/* A middleware and a handler that suspend: dispatch runs inside a task. */
static int mw_sleepy(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg) {
    logf_("%s sleeps", (const char *)arg);
    int rc = sp_sleep(0.002);
    if (rc != 0)
        return rc;
    rc = sp_http_next_call(next, req, resp);
    logf_("%s done %d", (const char *)arg, rc);
    return rc;
}

static int sleepy_handler(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)resp;
    int rc = sp_sleep(0.001);
    logf_("handler %s slept %d", (const char *)arg, rc);
    return rc;
}

static int suspending_main(void *arg, void **result) {
    (void)result;
    const sp_router *r = arg;
    sp_route_match m;
    if (match(r, "GET", "/slow/1", &m) != 0)
        return -EPROTO;
    return sp_router_dispatch(&m, m.handler, m.arg, REQ, RESP);
}

static void test_dispatch_suspends_with_the_task_in_middleware_and_handler(void **state) {
    (void)state;
    sp_router *r = new_router();
    assert_int_equal(sp_router_use(r, mw_sleepy, "mw"), 0);
    assert_int_equal(sp_router_add(r, "GET", "/slow/:n", sleepy_handler, "slow", 0), 0);
    run_main(suspending_main, r);
    expect_log("mw sleeps", "handler slow slept 0", "mw done 0");
    sp_router_destroy(r);
}

/* ---- scale ---- */

static void test_ten_thousand_static_and_param_routes_all_match(void **state) {
    (void)state;
    enum { N = 10000 };
    sp_router *r = new_router();
    char pat[64], path[64];
    int tags[N];
    for (int i = 0; i < N; i++) {
        tags[i] = i;
        snprintf(pat, sizeof(pat), "/r/%d", i);
        assert_int_equal(sp_router_add(r, "GET", pat, handler, &tags[i], 0), 0);
        snprintf(pat, sizeof(pat), "/p/:id/x%d/:n", i);
        assert_int_equal(
            sp_router_add(r, i % 2 ? "POST" : "GET", pat, failing_handler, &tags[i], 0), 0);
    }
    ROUTE(r, "GET", "/r/:other");
    sp_route_match m;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/r/%d", i);
        assert_int_equal(match(r, "GET", path, &m), 0);
        assert_ptr_equal(m.arg, &tags[i]);
        assert_string_equal(m.pattern, path);

        snprintf(path, sizeof(path), "/p/u%d/x%d/%d", i * 7, i, N - i);
        assert_int_equal(match(r, i % 2 ? "POST" : "GET", path, &m), 0);
        assert_ptr_equal(m.handler, failing_handler);
        assert_ptr_equal(m.arg, &tags[i]);
        assert_int_equal(m.nparams, 2);
        char want[64];
        snprintf(want, sizeof(want), "id=u%d,n=%d", i * 7, N - i);
        assert_string_equal(params(&m), want);
        assert_int_equal(match(r, i % 2 ? "GET" : "POST", path, &m), -EOPNOTSUPP);
    }
    assert_string_equal(lookup(r, "GET", "/r/10000"), "GET /r/:other");
    assert_string_equal(lookup(r, "GET", "/r/01"), "GET /r/:other");
    assert_string_equal(lookup(r, "GET", "/p/1/x10000/2"), "404");
    assert_string_equal(lookup(r, "GET", "/p/1/x1"), "404");
    sp_router_destroy(r);
}

/* Everything a router can own, then destroy: LeakSanitizer checks it is all
 * freed in the ASan build. */
static void test_destroy_frees_routes_groups_and_middleware(void **state) {
    (void)state;
    sp_router *r = new_router(), *g, *g2;
    assert_int_equal(sp_router_use(r, mw_log, "a"), 0);
    assert_int_equal(sp_router_group(r, "/g", &g), 0);
    assert_int_equal(sp_router_group(g, "/h/:id", &g2), 0);
    assert_int_equal(sp_router_use(g2, mw_log, "b"), 0);
    assert_int_equal(sp_router_group(g2, "/empty", &g), 0);
    ROUTE(r, "GET", "/");
    ROUTE(r, "PURGE", "/");
    ROUTE(r, "MKCOL", "/");
    ROUTE(r, "*", "/star/*");
    ROUTE(g2, "GET", "/x/:y/*z");
    ROUTE(g2, "REPORT", "/x/:y/*z");
    for (int i = 0; i < 100; i++) {
        char pat[32];
        snprintf(pat, sizeof(pat), "/many/%d/:k", i);
        assert_int_equal(sp_router_add(r, "GET", pat, handler, NULL, 0), 0);
    }
    assert_string_equal(lookup(r, "REPORT", "/g/h/1/x/2/a/b"), "REPORT /x/:y/*z");
    sp_router_destroy(r);

    /* An empty router too. */
    sp_router_destroy(new_router());
}

/* Methods are RFC 9110 tokens: every tchar and nothing else, as the byte
 * table says. */
static void test_methods_are_tokens_byte_by_byte(void **state) {
    (void)state;
    sp_router *r = new_router();
    const char *tchars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (int ch = 1; ch < 256; ch++) {
        char m[4] = {'G', (char)ch, 'T', '\0'};
        int want = strchr(tchars, ch) ? 0 : -EINVAL;
        assert_int_equal(sp_router_add(r, m, "/t", handler, NULL, 0), want);
    }
    assert_int_equal(sp_router_add(r, "", "/t", handler, NULL, 0), -EINVAL);
    assert_int_equal(sp_router_add(r, "M-SEARCH", "/m", handler, "M-SEARCH /m", 0), 0);
    assert_string_equal(lookup(r, "M-SEARCH", "/m"), "M-SEARCH /m");
    sp_router_destroy(r);
}

/* Field names compare ignoring ASCII case only: bytes 0x20 apart that are
 * not letters ('@' and '`', '[' and '{', '0' and DLE) differ. */
static void test_str_eq_case_folds_letters_only(void **state) {
    (void)state;
    assert_true(sp_str_eq_case(sp_str_c("Content-Length"), sp_str_c("cONTENT-lENGTH")));
    assert_true(sp_str_eq_case(sp_str_c(""), sp_str_c("")));
    assert_false(sp_str_eq_case(sp_str_c("Host"), sp_str_c("Hosts")));
    assert_false(sp_str_eq_case(sp_str_c("a@"), sp_str_c("a`")));
    assert_false(sp_str_eq_case(sp_str_c("x["), sp_str_c("x{")));
    assert_false(sp_str_eq_case(sp_str_c("0"), sp_str_c("\x10")));
    for (int a = 0; a < 256; a++)
        for (int b = 0; b < 256; b++) {
            char x = (char)a, y = (char)b;
            bool letters = ((a | 32) >= 'a' && (a | 32) <= 'z');
            bool want = a == b || (letters && (a ^ b) == 32);
            assert_int_equal(sp_str_eq_case((sp_str){&x, 1}, (sp_str){&y, 1}), want);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods_are_tokens_byte_by_byte),
        cmocka_unit_test(test_str_eq_case_folds_letters_only),
        cmocka_unit_test(test_static_routes_match_exact_path_and_trailing_slash_is_significant),
        cmocka_unit_test(test_path_not_starting_with_slash_is_404),
        cmocka_unit_test(test_params_are_views_into_the_path),
        cmocka_unit_test(test_wildcard_captures_rest_empty_or_multi_segment),
        cmocka_unit_test(test_static_beats_param_beats_wildcard),
        cmocka_unit_test(test_backtracks_from_static_to_param_to_wildcard),
        cmocka_unit_test(test_backtracks_when_the_better_pattern_lacks_the_method),
        cmocka_unit_test(test_unknown_path_is_404_known_path_with_other_method_is_405),
        cmocka_unit_test(test_head_falls_back_to_get_unless_head_is_routed),
        cmocka_unit_test(test_star_method_matches_every_method_after_exact_ones),
        cmocka_unit_test(test_nonstandard_methods_route_by_exact_string_and_are_named_in_allow),
        cmocka_unit_test(test_same_method_and_pattern_twice_is_eexist),
        cmocka_unit_test(test_bad_patterns_methods_and_arguments_are_einval),
        cmocka_unit_test(test_groups_put_routes_under_prefix_and_nest),
        cmocka_unit_test(test_group_routes_its_bare_prefix_with_an_empty_pattern),
        cmocka_unit_test(test_allow_lists_extension_methods_of_every_matching_pattern),
        cmocka_unit_test(test_allow_looks_at_a_bounded_number_of_patterns),
        cmocka_unit_test(test_middleware_runs_root_outer_then_groups_then_handler_and_unwinds),
        cmocka_unit_test(test_middleware_answering_itself_skips_inner_chain_and_handler),
        cmocka_unit_test(test_miss_runs_only_the_root_chain_around_the_servers_answer),
        cmocka_unit_test(test_middleware_may_run_the_rest_of_the_chain_twice),
        cmocka_unit_test(test_dispatch_rejects_missing_handler_or_unmatched_result),
        cmocka_unit_test(test_route_flags_and_args_are_returned),
        cmocka_unit_test(test_dispatch_suspends_with_the_task_in_middleware_and_handler),
        cmocka_unit_test(test_ten_thousand_static_and_param_routes_all_match),
        cmocka_unit_test(test_destroy_frees_routes_groups_and_middleware),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
