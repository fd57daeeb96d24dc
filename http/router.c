/* The HTTP router: one tree of path segments per root router, shared by its
 * groups, plus a hash table of the fully static patterns so that most lookups
 * are one hash probe. Groups only carry a prefix and a flattened middleware
 * chain; each route points at the group whose chain wraps it. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <spindle/router.h>

#include "text.h"

enum { M_GET, M_HEAD, M_POST, M_PUT, M_DELETE, M_PATCH, M_OPTIONS, M_CONNECT, M_TRACE, M_COUNT };

static const char *const method_names[M_COUNT] = {"GET",   "HEAD",    "POST",    "PUT",  "DELETE",
                                                  "PATCH", "OPTIONS", "CONNECT", "TRACE"};

typedef struct mw_entry {
    sp_http_middleware *mw;
    void *arg;
} mw_entry;

/* A cursor over the rest of a chain. Each level gets its own copy on the
 * stack, so a middleware may call next more than once (a retry runs the
 * inner chain again). */
struct sp_http_next {
    const mw_entry *chain;
    size_t n;
    sp_http_handler *handler;
    void *arg;
};

/* One method's route; handler == NULL means none. */
typedef struct slot {
    sp_http_handler *handler;
    void *arg;
    const sp_router *group;
    int flags;
} slot;

/* A route for a method outside M_*: matched by exact string, rare. */
typedef struct other_route {
    struct other_route *next;
    slot s;
    size_t mlen;
    char method[];
} other_route;

/* Every route of one pattern. A pattern only exists once it has a route, so
 * reaching an endpoint that lacks the request's method means 405. */
typedef struct endpoint {
    slot std[M_COUNT];
    slot any; /* method "*" */
    other_route *others;
    unsigned mask; /* SP_HTTP_M_* this pattern accepts (HEAD wherever GET) */
    size_t plen;
    char pattern[];
} endpoint;

/* A static child as its parent indexes it: the binary search reads only
 * this array, and mostly settles on len and key (the segment's first 8
 * bytes), calling memcmp only for the bytes after those. Sorted by (len, key,
 * rest): any total order will do. */
typedef struct kid {
    uint64_t key;
    size_t len;
    struct node *n;
} kid;

/* A tree node: the static segment (or, for a parameter node, the parameter's
 * name) that leads to it, and what may follow. */
typedef struct node {
    kid *kids;
    uint32_t nkids;
    struct node *param;
    endpoint *end;    /* routes whose pattern ends here */
    endpoint *wild;   /* routes ending in a wildcard right below this node */
    sp_str wild_name; /* view into wild->pattern */
    size_t len;
    char seg[];
} node;

typedef struct tab_entry {
    uint64_t hash;
    const endpoint *ep; /* NULL: free */
} tab_entry;

struct sp_router {
    sp_router *root, *parent;
    sp_router *groups, *sibling;
    char *prefix; /* full prefix from the root, no trailing '/' */
    size_t plen;
    mw_entry *own; /* middleware added to this router */
    size_t nown;
    mw_entry *chain; /* the parent's chain, then own: what wraps this router's routes */
    size_t nchain;
    /* Root only. */
    node *top;
    tab_entry *tab; /* fully static patterns, linear probing, at most half full */
    size_t tabcap, tabn;
    /* Bit n set: some static pattern is n bytes long (n < 256; longer ones
     * set bit 255). Most paths with parameters skip hashing on this. */
    uint64_t tab_lens[4];
};

/* ---- hashing the full path ---- */

static inline uint64_t load_u32(const char *p) {
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint64_t mix(uint64_t h, uint64_t w) {
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    return h ^ (h >> 32);
}

/* Route patterns are chosen by the application, not by clients, so the table
 * needs no seed: a client can only pick which slot it probes. Eight bytes per
 * multiply; the tail is read as two overlapping words, or three single bytes
 * (as wyhash does) to keep short paths branch-light. */
static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    while (n > 8) {
        uint64_t w;
        memcpy(&w, p, sizeof(w));
        h = mix(h, w);
        p += 8;
        n -= 8;
    }
    uint64_t w;
    if (n >= 4)
        w = load_u32(p) | load_u32(p + n - 4) << 32;
    else if (n > 0)
        w = (uint64_t)(unsigned char)p[0] << 16 | (uint64_t)(unsigned char)p[n / 2] << 8 |
            (unsigned char)p[n - 1];
    else
        w = 0;
    h = mix(h, w);
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

/* The bit of tab_lens for a length. */
static inline size_t len_bit(size_t len) {
    return len < 255 ? len : 255;
}

static const endpoint *tab_find(const sp_router *root, const char *p, size_t len) {
    size_t bit = len_bit(len);
    if (!(root->tab_lens[bit / 64] & (1ull << (bit % 64))))
        return NULL;
    uint64_t h = hash_bytes(p, len);
    size_t mask = root->tabcap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const tab_entry *e = &root->tab[i];
        if (!e->ep)
            return NULL;
        if (e->hash == h && e->ep->plen == len && memcmp(e->ep->pattern, p, len) == 0)
            return e->ep;
    }
}

static void tab_put(tab_entry *tab, size_t cap, uint64_t h, const endpoint *ep) {
    size_t i = (size_t)h & (cap - 1);
    while (tab[i].ep)
        i = (i + 1) & (cap - 1);
    tab[i] = (tab_entry){h, ep};
}

/* Makes room for one more entry, so that the insert itself cannot fail. */
static int tab_reserve(sp_router *root) {
    if (2 * (root->tabn + 1) <= root->tabcap)
        return 0;
    size_t cap = root->tabcap ? 2 * root->tabcap : 16;
    tab_entry *tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return -ENOMEM;
    for (size_t i = 0; i < root->tabcap; i++) {
        if (root->tab[i].ep)
            tab_put(tab, cap, root->tab[i].hash, root->tab[i].ep);
    }
    free(root->tab);
    root->tab = tab;
    root->tabcap = cap;
    return 0;
}

/* ---- methods ---- */

/* Index in M_* of a standard method, -1 for any other token. */
static inline int method_index(const char *p, size_t n) {
    switch (n) {
    case 3:
        if (memcmp(p, "GET", 3) == 0)
            return M_GET;
        if (memcmp(p, "PUT", 3) == 0)
            return M_PUT;
        break;
    case 4:
        if (memcmp(p, "HEAD", 4) == 0)
            return M_HEAD;
        if (memcmp(p, "POST", 4) == 0)
            return M_POST;
        break;
    case 5:
        if (memcmp(p, "PATCH", 5) == 0)
            return M_PATCH;
        if (memcmp(p, "TRACE", 5) == 0)
            return M_TRACE;
        break;
    case 6:
        if (memcmp(p, "DELETE", 6) == 0)
            return M_DELETE;
        break;
    case 7:
        if (memcmp(p, "OPTIONS", 7) == 0)
            return M_OPTIONS;
        if (memcmp(p, "CONNECT", 7) == 0)
            return M_CONNECT;
        break;
    }
    return -1;
}

static bool valid_method(const char *m) {
    return sp_http_token(m, strlen(m));
}

/* The route of ep serving this method: exact, then GET for HEAD, then "*". */
static inline const slot *ep_pick(const endpoint *ep, int midx, sp_str method) {
    if (midx >= 0) {
        if (ep->std[midx].handler)
            return &ep->std[midx];
        if (midx == M_HEAD && ep->std[M_GET].handler)
            return &ep->std[M_GET];
    } else {
        for (const other_route *o = ep->others; o; o = o->next) {
            if (o->mlen == method.len && memcmp(o->method, method.ptr, method.len) == 0)
                return &o->s;
        }
    }
    return ep->any.handler ? &ep->any : NULL;
}

/* ---- patterns ---- */

enum { SEG_STATIC, SEG_PARAM, SEG_WILD };

typedef struct pseg {
    const char *p; /* the static bytes, or the parameter's name */
    size_t len;
    int kind;
} pseg;

static bool valid_name(const char *p, size_t n) {
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* Splits pat (which must start with '/') into its segments, checking every
 * rule of the pattern syntax. An anonymous wildcard is named "*". */
static int parse_pattern(const char *pat, size_t len, bool allow_wild, pseg *segs, size_t *nsegs) {
    if (len == 0 || pat[0] != '/')
        return -EINVAL;
    size_t n = 0, nparams = 0;
    const char *end = pat + len;
    for (const char *s = pat + 1;; s++) {
        const char *e = memchr(s, '/', (size_t)(end - s));
        if (!e)
            e = end;
        if (n == SP_ROUTE_MAX_SEGMENTS)
            return -EINVAL;
        pseg *g = &segs[n++];
        size_t slen = (size_t)(e - s);
        if (slen > 0 && s[0] == ':') {
            *g = (pseg){s + 1, slen - 1, SEG_PARAM};
            if (!valid_name(g->p, g->len))
                return -EINVAL;
        } else if (slen > 0 && s[0] == '*') {
            if (!allow_wild || e != end)
                return -EINVAL;
            *g = slen == 1 ? (pseg){s, 1, SEG_WILD} : (pseg){s + 1, slen - 1, SEG_WILD};
            if (slen > 1 && !valid_name(g->p, g->len))
                return -EINVAL;
        } else {
            if (memchr(s, '*', slen))
                return -EINVAL;
            *g = (pseg){s, slen, SEG_STATIC};
        }
        if (g->kind != SEG_STATIC) {
            if (++nparams > SP_ROUTE_MAX_PARAMS)
                return -EINVAL;
            for (size_t i = 0; i + 1 < n; i++) {
                if (segs[i].kind != SEG_STATIC && segs[i].len == g->len &&
                    memcmp(segs[i].p, g->p, g->len) == 0)
                    return -EINVAL;
            }
        }
        if (e == end)
            break;
        s = e;
    }
    *nsegs = n;
    return 0;
}

/* ---- the tree ---- */

/* A path or pattern segment with its search key. */
typedef struct segkey {
    const char *p;
    size_t len;
    uint64_t key;
} segkey;

static inline segkey seg_key(const char *p, size_t len) {
    segkey k = {p, len, 0};
    if (len >= 8) {
        memcpy(&k.key, p, 8);
    } else {
        for (size_t i = 0; i < len; i++)
            k.key |= (uint64_t)(unsigned char)p[i] << (8 * i);
    }
    return k;
}

static inline int kid_cmp(const kid *k, const segkey *g) {
    if (k->len != g->len)
        return k->len < g->len ? -1 : 1;
    if (k->key != g->key)
        return k->key < g->key ? -1 : 1;
    return g->len > 8 ? memcmp(k->n->seg + 8, g->p + 8, g->len - 8) : 0;
}

/* Index of the first static child not below g. */
static inline uint32_t kid_lower_bound(const node *n, const segkey *g) {
    uint32_t lo = 0, hi = n->nkids;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (kid_cmp(&n->kids[mid], g) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static inline const node *find_static(const node *n, const char *p, size_t len) {
    segkey g = seg_key(p, len);
    uint32_t i = kid_lower_bound(n, &g);
    return i < n->nkids && kid_cmp(&n->kids[i], &g) == 0 ? n->kids[i].n : NULL;
}

static bool same_name(const char *a, size_t alen, const char *b, size_t blen) {
    return alen == blen && memcmp(a, b, alen) == 0;
}

static node *node_new(const char *seg, size_t len) {
    node *n = calloc(1, sizeof(*n) + len + 1);
    if (n) {
        memcpy(n->seg, seg, len);
        n->len = len;
    }
    return n;
}

static void ep_free(endpoint *ep) {
    if (!ep)
        return;
    for (other_route *o = ep->others, *next; o; o = next) {
        next = o->next;
        free(o);
    }
    free(ep);
}

static void node_free(node *n) {
    if (!n)
        return;
    for (uint32_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i].n);
    free(n->kids);
    node_free(n->param);
    ep_free(n->end);
    ep_free(n->wild);
    free(n);
}

/* The child of n for segment g, created if missing. A failed allocation may
 * leave empty nodes behind: without endpoints they never match anything. */
static int node_child(node *n, const pseg *g, node **out) {
    if (g->kind == SEG_PARAM) {
        if (!n->param && !(n->param = node_new(g->p, g->len)))
            return -ENOMEM;
        *out = n->param;
        return 0;
    }
    segkey key = seg_key(g->p, g->len);
    uint32_t i = kid_lower_bound(n, &key);
    if (i < n->nkids && kid_cmp(&n->kids[i], &key) == 0) {
        *out = n->kids[i].n;
        return 0;
    }
    kid *kids = realloc(n->kids, (n->nkids + 1) * sizeof(*kids));
    if (!kids)
        return -ENOMEM;
    n->kids = kids;
    node *k = node_new(g->p, g->len);
    if (!k)
        return -ENOMEM;
    memmove(&kids[i + 1], &kids[i], (n->nkids - i) * sizeof(*kids));
    kids[i] = (kid){key.key, key.len, k};
    n->nkids++;
    *out = k;
    return 0;
}

/* Rejects a pattern naming a parameter or wildcard differently from the
 * routes already in the tree at the same position: a lookup fills in one
 * name per position. Checked before anything is created. */
static int check_names(const node *n, const pseg *segs, size_t nsegs) {
    for (size_t i = 0; i < nsegs && n; i++) {
        const pseg *g = &segs[i];
        if (g->kind == SEG_WILD) {
            if (n->wild && !same_name(n->wild_name.ptr, n->wild_name.len, g->p, g->len))
                return -EINVAL;
        } else if (g->kind == SEG_PARAM) {
            if (n->param && !same_name(n->param->seg, n->param->len, g->p, g->len))
                return -EINVAL;
            n = n->param;
        } else {
            n = find_static(n, g->p, g->len);
        }
    }
    return 0;
}

/* ---- routers ---- */

int sp_router_create(sp_router **out) {
    sp_router *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->top = node_new("", 0);
    if (!r->top) {
        free(r);
        return -ENOMEM;
    }
    r->root = r;
    *out = r;
    return 0;
}

static void group_free(sp_router *g) {
    for (sp_router *k = g->groups, *next; k; k = next) {
        next = k->sibling;
        group_free(k);
    }
    free(g->own);
    free(g->chain);
    free(g->prefix);
    free(g);
}

void sp_router_destroy(sp_router *r) {
    if (!r || r->root != r)
        return;
    node_free(r->top);
    free(r->tab);
    group_free(r);
}

static bool ep_has(const endpoint *ep, bool any, int midx, const char *method, size_t mlen) {
    if (any)
        return ep->any.handler != NULL;
    if (midx >= 0)
        return ep->std[midx].handler != NULL;
    for (const other_route *o = ep->others; o; o = o->next) {
        if (o->mlen == mlen && memcmp(o->method, method, mlen) == 0)
            return true;
    }
    return false;
}

/* Finds (or creates) the endpoint of a parsed pattern, then the slot for
 * the method. Everything that can fail is allocated before anything is
 * linked, so a failure leaves no endpoint without a route. */
static int add_route(sp_router *r, const char *method, const char *full, size_t flen,
                     const pseg *segs, size_t nsegs, const slot *s) {
    sp_router *root = r->root;
    int rc = check_names(root->top, segs, nsegs);
    if (rc != 0)
        return rc;
    bool wild = segs[nsegs - 1].kind == SEG_WILD;
    bool is_static = !wild;
    node *n = root->top;
    for (size_t i = 0; i < (wild ? nsegs - 1 : nsegs); i++) {
        if (segs[i].kind != SEG_STATIC)
            is_static = false;
        if ((rc = node_child(n, &segs[i], &n)) != 0)
            return rc;
    }
    endpoint **epp = wild ? &n->wild : &n->end;
    endpoint *ep = *epp;

    bool any = strcmp(method, "*") == 0;
    size_t mlen = strlen(method);
    int midx = any ? -1 : method_index(method, mlen);
    if (ep && ep_has(ep, any, midx, method, mlen))
        return -EEXIST;

    other_route *o = NULL;
    if (!any && midx < 0) {
        if (!(o = malloc(sizeof(*o) + mlen + 1)))
            return -ENOMEM;
        o->s = *s;
        o->mlen = mlen;
        memcpy(o->method, method, mlen + 1);
    }
    if (!ep) {
        if (is_static && (rc = tab_reserve(root)) != 0) {
            free(o);
            return rc;
        }
        if (!(ep = calloc(1, sizeof(*ep) + flen + 1))) {
            free(o);
            return -ENOMEM;
        }
        memcpy(ep->pattern, full, flen + 1);
        ep->plen = flen;
        if (wild) {
            const pseg *w = &segs[nsegs - 1];
            n->wild_name = (sp_str){ep->pattern + (w->p - full), w->len};
        }
        if (is_static) {
            tab_put(root->tab, root->tabcap, hash_bytes(ep->pattern, flen), ep);
            root->tabn++;
            size_t bit = len_bit(flen);
            root->tab_lens[bit / 64] |= 1ull << (bit % 64);
        }
        *epp = ep;
    }
    if (any) {
        ep->any = *s;
        ep->mask = SP_HTTP_M_ALL;
    } else if (midx >= 0) {
        ep->std[midx] = *s;
        ep->mask |= 1u << midx;
        if (midx == M_GET)
            ep->mask |= SP_HTTP_M_HEAD;
    } else {
        o->next = ep->others;
        ep->others = o;
    }
    return 0;
}

int sp_router_add(sp_router *r, const char *method, const char *pattern, sp_http_handler *h,
                  void *arg, int flags) {
    if (!r || !method || !pattern || !h || (flags & ~SP_ROUTE_BLOCKING))
        return -EINVAL;
    if (strcmp(method, "*") != 0 && !valid_method(method))
        return -EINVAL;
    size_t len = strlen(pattern);
    /* "" on a group routes the prefix itself. */
    if (len == 0 ? r->plen == 0 : pattern[0] != '/')
        return -EINVAL;
    size_t flen = r->plen + len;
    char *full = malloc(flen + 1);
    if (!full)
        return -ENOMEM;
    if (r->plen)
        memcpy(full, r->prefix, r->plen);
    memcpy(full + r->plen, pattern, len + 1);
    pseg segs[SP_ROUTE_MAX_SEGMENTS];
    size_t nsegs;
    int rc = parse_pattern(full, flen, true, segs, &nsegs);
    if (rc == 0) {
        slot s = {h, arg, r, flags};
        rc = add_route(r, method, full, flen, segs, nsegs, &s);
    }
    free(full);
    return rc;
}

/* Grows the chain of g and of every group below it by one entry. Growing
 * changes nothing else, so a failure halfway leaves every router working. */
static int chain_reserve(sp_router *g) {
    mw_entry *c = realloc(g->chain, (g->nchain + 1) * sizeof(*c));
    if (!c)
        return -ENOMEM;
    g->chain = c;
    for (sp_router *k = g->groups; k; k = k->sibling) {
        int rc = chain_reserve(k);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The arrays of a router without middleware are NULL. */
static void copy_entries(mw_entry *dst, const mw_entry *src, size_t n) {
    if (n)
        memcpy(dst, src, n * sizeof(*dst));
}

static void chain_rebuild(sp_router *g) {
    size_t n = 0;
    if (g->parent) {
        copy_entries(g->chain, g->parent->chain, g->parent->nchain);
        n = g->parent->nchain;
    }
    copy_entries(g->chain + n, g->own, g->nown);
    g->nchain = n + g->nown;
    for (sp_router *k = g->groups; k; k = k->sibling)
        chain_rebuild(k);
}

int sp_router_use(sp_router *r, sp_http_middleware *mw, void *arg) {
    if (!r || !mw)
        return -EINVAL;
    int rc = chain_reserve(r);
    if (rc != 0)
        return rc;
    mw_entry *own = realloc(r->own, (r->nown + 1) * sizeof(*own));
    if (!own)
        return -ENOMEM;
    r->own = own;
    own[r->nown++] = (mw_entry){mw, arg};
    chain_rebuild(r);
    return 0;
}

int sp_router_group(sp_router *r, const char *prefix, sp_router **group) {
    if (!r || !prefix || !group)
        return -EINVAL;
    size_t len = strlen(prefix);
    if (len == 0 || prefix[0] != '/')
        return -EINVAL;
    if (prefix[len - 1] == '/')
        len--;
    sp_router *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->plen = r->plen + len;
    g->prefix = malloc(g->plen + 1);
    g->chain = malloc((r->nchain ? r->nchain : 1) * sizeof(*g->chain));
    if (!g->prefix || !g->chain) {
        group_free(g);
        return -ENOMEM;
    }
    if (r->plen)
        memcpy(g->prefix, r->prefix, r->plen);
    memcpy(g->prefix + r->plen, prefix, len);
    g->prefix[g->plen] = '\0';
    if (g->plen > 0) {
        pseg segs[SP_ROUTE_MAX_SEGMENTS];
        size_t nsegs;
        int rc = parse_pattern(g->prefix, g->plen, false, segs, &nsegs);
        if (rc != 0) {
            group_free(g);
            return rc;
        }
    }
    copy_entries(g->chain, r->chain, r->nchain);
    g->nchain = r->nchain;
    g->root = r->root;
    g->parent = r;
    g->sibling = r->groups;
    r->groups = g;
    *group = g;
    return 0;
}

/* ---- lookup ---- */

typedef struct lookup {
    const char *end; /* of the path */
    int midx;
    sp_str method;
    sp_route_match *m;
    unsigned allow; /* methods of the patterns that matched the path but not the method */
    bool seen;      /* some pattern matched the path */
    unsigned neps;  /* those patterns, for their extension methods */
    const endpoint *eps[SP_ROUTE_ALLOW_PATTERNS];
} lookup;

static inline void fill(sp_route_match *m, const endpoint *ep, const slot *s, size_t np) {
    m->handler = s->handler;
    m->arg = s->arg;
    m->flags = s->flags;
    m->pattern = ep->pattern;
    m->nparams = np;
    m->allow = ep->mask;
    m->priv_group = s->group;
    m->priv_eps[0] = ep;
    m->priv_neps = 1;
}

static inline bool try_ep(lookup *lk, const endpoint *ep, size_t np) {
    if (!ep)
        return false;
    const slot *s = ep_pick(ep, lk->midx, lk->method);
    if (!s) {
        lk->allow |= ep->mask;
        lk->seen = true;
        if (lk->neps < SP_ROUTE_ALLOW_PATTERNS)
            lk->eps[lk->neps++] = ep;
        return false;
    }
    fill(lk->m, ep, s, np);
    return true;
}

/* Matches the path from p (at a '/' or the end) below n, np parameters
 * captured so far: static child first, then the parameter, then the
 * wildcard. Only a node offering a second choice recurses, so that it can
 * come back to it; the depth is bounded by SP_ROUTE_MAX_SEGMENTS since the
 * tree is no deeper than its longest pattern. A failed branch leaves stale
 * names/values behind, which the winning branch overwrites. */
static bool walk(lookup *lk, const node *n, const char *p, size_t np) {
    for (;;) {
        if (p == lk->end)
            return try_ep(lk, n->end, np);
        const char *s = p + 1, *e = s;
        while (e != lk->end && *e != '/') /* segments are short: cheaper than memchr */
            e++;
        size_t len = (size_t)(e - s);
        const node *k = n->nkids ? find_static(n, s, len) : NULL;
        const node *param = len > 0 ? n->param : NULL;
        if (k) {
            if (!param && !n->wild) {
                n = k;
                p = e;
                continue;
            }
            if (walk(lk, k, e, np))
                return true;
        }
        if (param) {
            lk->m->names[np] = (sp_str){param->seg, param->len};
            lk->m->values[np] = (sp_str){s, len};
            if (!n->wild) {
                n = param;
                p = e;
                np++;
                continue;
            }
            if (walk(lk, param, e, np + 1))
                return true;
        }
        if (n->wild) {
            lk->m->names[np] = n->wild_name;
            lk->m->values[np] = (sp_str){s, (size_t)(lk->end - s)};
            return try_ep(lk, n->wild, np + 1);
        }
        return false;
    }
}

int sp_router_match(const sp_router *r, sp_str method, sp_str path, sp_route_match *m) {
    const sp_router *root = r->root;
    int midx = method_index(method.ptr, method.len);
    const endpoint *ep = tab_find(root, path.ptr, path.len);
    if (ep) {
        const slot *s = ep_pick(ep, midx, method);
        if (s) {
            fill(m, ep, s, 0);
            return 0;
        }
    }
    /* eps is filled as patterns match: not zeroed on this hot path. */
    lookup lk;
    lk.end = path.ptr + path.len;
    lk.midx = midx;
    lk.method = method;
    lk.m = m;
    lk.allow = 0;
    lk.seen = false;
    lk.neps = 0;
    if (path.len > 0 && path.ptr[0] == '/' && walk(&lk, root->top, path.ptr, 0))
        return 0;
    m->handler = NULL;
    m->arg = NULL;
    m->flags = 0;
    m->pattern = NULL;
    m->nparams = 0;
    m->allow = lk.allow;
    m->priv_group = root;
    m->priv_neps = lk.neps;
    memcpy(m->priv_eps, lk.eps, lk.neps * sizeof(lk.eps[0]));
    return lk.seen ? -EOPNOTSUPP : -ENOENT;
}

int sp_route_match_param(const sp_route_match *m, const char *name, sp_str *value) {
    size_t len = strlen(name);
    for (size_t i = 0; i < m->nparams; i++) {
        if (m->names[i].len == len && memcmp(m->names[i].ptr, name, len) == 0) {
            *value = m->values[i];
            return 0;
        }
    }
    return -ENOENT;
}

/* Appends ", name" (or name first) to buf; false if it does not fit. */
static bool allow_put(char *buf, size_t cap, size_t *len, const char *name, size_t n) {
    if (*len + (*len ? 2 : 0) + n >= cap)
        return false;
    if (*len) {
        memcpy(buf + *len, ", ", 2);
        *len += 2;
    }
    memcpy(buf + *len, name, n);
    *len += n;
    return true;
}

/* True if method (n bytes) is among the patterns' extension routes listed
 * before (ep i, route o): each name is written once. */
static bool allow_listed(const sp_route_match *m, unsigned i, const other_route *o) {
    for (unsigned j = 0; j <= i; j++) {
        const endpoint *ep = m->priv_eps[j];
        for (const other_route *p = ep->others; p && !(j == i && p == o); p = p->next)
            if (p->mlen == o->mlen && memcmp(p->method, o->method, o->mlen) == 0)
                return true;
    }
    return false;
}

int sp_router_allow(const sp_route_match *m, char *buf, size_t cap) {
    size_t len = 0;
    for (int i = 0; i < M_COUNT; i++)
        if ((m->allow & (1u << i)) &&
            !allow_put(buf, cap, &len, method_names[i], strlen(method_names[i])))
            return -ENOSPC;
    for (unsigned i = 0; i < m->priv_neps; i++) {
        const endpoint *ep = m->priv_eps[i];
        for (const other_route *o = ep->others; o; o = o->next)
            if (!allow_listed(m, i, o) && !allow_put(buf, cap, &len, o->method, o->mlen))
                return -ENOSPC;
    }
    if (cap == 0)
        return -ENOSPC;
    buf[len] = '\0';
    return (int)len;
}

/* ---- dispatch ---- */

int sp_http_next_call(sp_http_next *next, sp_http_req *req, sp_http_resp *resp) {
    if (next->n == 0)
        return next->handler(req, resp, next->arg);
    sp_http_next inner = {next->chain + 1, next->n - 1, next->handler, next->arg};
    return next->chain->mw(req, resp, &inner, next->chain->arg);
}

int sp_router_dispatch(const sp_route_match *m, sp_http_handler *handler, void *arg,
                       sp_http_req *req, sp_http_resp *resp) {
    if (!handler || !m->priv_group)
        return -EINVAL;
    sp_http_next next = {m->priv_group->chain, m->priv_group->nchain, handler, arg};
    return sp_http_next_call(&next, req, resp);
}
