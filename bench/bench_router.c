/* Router benchmark on a GitHub-like API (the routes of httprouter's GitHub
 * benchmark, a subset), prints one `name value` line per figure:
 *   router_static_ns    sp_router_match of a static path (hash probe)
 *   router_param_ns     sp_router_match of a path with 1-3 parameters
 *   router_404_ns       sp_router_match of a path no route has
 *   router_dispatch_ns  match + sp_router_dispatch through 2 middlewares
 * Usage: bench_router [lookups]   (default 10000000 per figure) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <spindle/spindle.h>

static const char *const routes[] = {
    "/authorizations",
    "/authorizations/:id",
    "/applications/:client_id/tokens/:access_token",
    "/events",
    "/repos/:owner/:repo/events",
    "/networks/:owner/:repo/events",
    "/orgs/:org/events",
    "/users/:user/received_events",
    "/users/:user/received_events/public",
    "/users/:user/events",
    "/users/:user/events/public",
    "/users/:user/events/orgs/:org",
    "/feeds",
    "/notifications",
    "/repos/:owner/:repo/notifications",
    "/notifications/threads/:id",
    "/notifications/threads/:id/subscription",
    "/repos/:owner/:repo/stargazers",
    "/users/:user/starred",
    "/user/starred",
    "/user/starred/:owner/:repo",
    "/repos/:owner/:repo/subscribers",
    "/users/:user/subscriptions",
    "/user/subscriptions",
    "/user/subscriptions/:owner/:repo",
    "/users/:user/gists",
    "/gists",
    "/gists/public",
    "/gists/starred",
    "/gists/:id",
    "/gists/:id/star",
    "/repos/:owner/:repo/git/blobs/:sha",
    "/repos/:owner/:repo/git/commits/:sha",
    "/repos/:owner/:repo/git/refs",
    "/repos/:owner/:repo/git/tags/:sha",
    "/repos/:owner/:repo/git/trees/:sha",
    "/issues",
    "/user/issues",
    "/orgs/:org/issues",
    "/repos/:owner/:repo/issues",
    "/repos/:owner/:repo/issues/:number",
    "/repos/:owner/:repo/assignees",
    "/repos/:owner/:repo/assignees/:assignee",
    "/repos/:owner/:repo/issues/:number/comments",
    "/repos/:owner/:repo/issues/:number/events",
    "/repos/:owner/:repo/labels",
    "/repos/:owner/:repo/labels/:name",
    "/repos/:owner/:repo/issues/:number/labels",
    "/repos/:owner/:repo/milestones/:number/labels",
    "/repos/:owner/:repo/milestones",
    "/repos/:owner/:repo/milestones/:number",
    "/emojis",
    "/gitignore/templates",
    "/gitignore/templates/:name",
    "/meta",
    "/rate_limit",
    "/users/:user/orgs",
    "/user/orgs",
    "/orgs/:org",
    "/orgs/:org/members",
    "/orgs/:org/members/:user",
    "/orgs/:org/public_members",
    "/orgs/:org/public_members/:user",
    "/orgs/:org/teams",
    "/teams/:id",
    "/teams/:id/members",
    "/teams/:id/members/:user",
    "/teams/:id/repos",
    "/teams/:id/repos/:owner/:repo",
    "/user/teams",
    "/repos/:owner/:repo/pulls",
    "/repos/:owner/:repo/pulls/:number",
    "/repos/:owner/:repo/pulls/:number/commits",
    "/repos/:owner/:repo/pulls/:number/files",
    "/repos/:owner/:repo/pulls/:number/merge",
    "/repos/:owner/:repo/pulls/:number/comments",
    "/user/repos",
    "/users/:user/repos",
    "/orgs/:org/repos",
    "/repositories",
    "/repos/:owner/:repo",
    "/repos/:owner/:repo/contributors",
    "/repos/:owner/:repo/languages",
    "/repos/:owner/:repo/teams",
    "/repos/:owner/:repo/tags",
    "/repos/:owner/:repo/branches",
    "/repos/:owner/:repo/branches/:branch",
    "/repos/:owner/:repo/collaborators",
    "/repos/:owner/:repo/collaborators/:user",
    "/repos/:owner/:repo/comments",
    "/repos/:owner/:repo/commits/:sha/comments",
    "/repos/:owner/:repo/comments/:id",
    "/repos/:owner/:repo/commits",
    "/repos/:owner/:repo/commits/:sha",
    "/repos/:owner/:repo/readme",
    "/repos/:owner/:repo/contents/*path",
    "/repos/:owner/:repo/keys",
    "/repos/:owner/:repo/keys/:id",
    "/repos/:owner/:repo/downloads",
    "/repos/:owner/:repo/downloads/:id",
    "/repos/:owner/:repo/forks",
    "/repos/:owner/:repo/hooks",
    "/repos/:owner/:repo/hooks/:id",
    "/repos/:owner/:repo/releases",
    "/repos/:owner/:repo/releases/:id",
    "/repos/:owner/:repo/releases/:id/assets",
    "/repos/:owner/:repo/stats/contributors",
    "/repos/:owner/:repo/stats/commit_activity",
    "/repos/:owner/:repo/stats/code_frequency",
    "/repos/:owner/:repo/stats/participation",
    "/repos/:owner/:repo/stats/punch_card",
    "/repos/:owner/:repo/statuses/:ref",
    "/search/repositories",
    "/search/code",
    "/search/issues",
    "/search/users",
    "/legacy/issues/search/:owner/:repository/:state/:keyword",
    "/legacy/repos/search/:keyword",
    "/legacy/user/search/:keyword",
    "/legacy/user/email/:email",
    "/users/:user",
    "/user",
    "/users",
    "/user/emails",
    "/users/:user/followers",
    "/user/followers",
    "/users/:user/following",
    "/user/following",
    "/user/following/:user",
    "/users/:user/following/:target_user",
    "/users/:user/keys",
    "/user/keys",
    "/user/keys/:id",
};

static const char *const static_paths[] = {
    "/authorizations", "/events",     "/feeds",        "/notifications",
    "/user/starred",   "/gists",      "/gists/public", "/issues",
    "/emojis",         "/rate_limit", "/user/orgs",    "/repositories",
    "/search/code",    "/user",       "/user/emails",  "/user/following",
};

static const char *const param_paths[] = {
    "/authorizations/12",
    "/users/torvalds/events",
    "/orgs/golang/events",
    "/gists/5a3c/star",
    "/repos/julienschmidt/httprouter/issues/42",
    "/repos/nginx/nginx/pulls/7/files",
    "/repos/lwan/lwan/stargazers",
    "/users/rsc/repos",
    "/teams/9/members/rsc",
    "/repos/aio-libs/aiohttp/git/commits/c0ffee",
    "/repos/libevent/libevent/branches/master",
    "/legacy/user/search/spindle",
    "/users/torvalds/following/rsc",
    "/repos/a/b/contents/src/http/router.c",
    "/orgs/python/public_members/guido",
    "/repos/llhttp/llhttp/releases/3/assets",
};

static const char *const missing_paths[] = {
    "/nope",
    "/users/torvalds/likes",
    "/repos/a/b/issues/1/unknown",
    "/gists/x/y/z",
};

static int handler(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)resp, (void)arg;
    return 0;
}

static int middleware(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg) {
    (void)arg;
    return sp_http_next_call(next, req, resp);
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile size_t sink;

/* Nanoseconds per lookup over n lookups cycling through paths, checking
 * each answer once before timing. */
static double bench_match(const sp_router *r, const char *const *paths, size_t npaths, int want,
                          long n) {
    sp_str ps[16];
    for (size_t i = 0; i < npaths; i++) {
        ps[i] = (sp_str){paths[i], strlen(paths[i])};
        sp_route_match m;
        int rc = sp_router_match(r, (sp_str){"GET", 3}, ps[i], &m);
        if (rc != want) {
            fprintf(stderr, "bench_router: %s gave %d\n", paths[i], rc);
            exit(1);
        }
    }
    const sp_str get = {"GET", 3};
    size_t acc = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        sp_route_match m;
        sp_router_match(r, get, ps[(size_t)i % npaths], &m);
        acc += m.nparams + m.allow;
    }
    double dt = now_ns() - t0;
    sink = acc;
    return dt / (double)n;
}

static double bench_dispatch(const sp_router *r, long n) {
    const sp_str get = {"GET", 3};
    sp_str ps[16];
    for (size_t i = 0; i < 16; i++)
        ps[i] = (sp_str){param_paths[i], strlen(param_paths[i])};
    size_t acc = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        sp_route_match m;
        if (sp_router_match(r, get, ps[(size_t)i % 16], &m) == 0)
            acc += (size_t)sp_router_dispatch(&m, m.handler, m.arg, NULL, NULL) + m.nparams;
    }
    double dt = now_ns() - t0;
    sink = acc;
    return dt / (double)n;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10 * 1000 * 1000;
    sp_router *r;
    if (sp_router_create(&r) != 0)
        return 1;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc = sp_router_add(r, "GET", routes[i], handler, NULL, 0);
        if (rc != 0) {
            fprintf(stderr, "bench_router: add %s: %d\n", routes[i], rc);
            return 1;
        }
    }
    if (sp_router_use(r, middleware, NULL) != 0 || sp_router_use(r, middleware, NULL) != 0)
        return 1;
    bench_match(r, static_paths, 16, 0, n / 10); /* warm the caches */
    printf("router_static_ns %.1f\n", bench_match(r, static_paths, 16, 0, n));
    printf("router_param_ns %.1f\n", bench_match(r, param_paths, 16, 0, n));
    printf("router_404_ns %.1f\n", bench_match(r, missing_paths, 4, -ENOENT, n));
    printf("router_dispatch_ns %.1f\n", bench_dispatch(r, n));
    sp_router_destroy(r);
    return 0;
}
