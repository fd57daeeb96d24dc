/* Task-owned memory and cleanups (lwan's coro_malloc / coro_defer): a bump
 * arena and a LIFO list of deferred calls, both released when the task ends,
 * whatever path it ends by. Nothing to free by hand, nothing leaks when a
 * task is cancelled. */
#include <errno.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#include "task_impl.h"

#define ARENA_CHUNK 4096

typedef struct arena_chunk {
    struct arena_chunk *prev;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} arena_chunk;

typedef struct deferred {
    struct deferred *next;
    void (*fn)(void *arg);
    void *arg;
} deferred;

static void *arena_alloc(sp_task *t, size_t size) {
    const size_t align = alignof(max_align_t);
    size = (size + align - 1) & ~(align - 1);
    if (size == 0)
        size = align;
    arena_chunk *c = t->arena;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > ARENA_CHUNK - sizeof(*c) ? size : ARENA_CHUNK - sizeof(*c);
        arena_chunk *n = malloc(sizeof(*n) + cap);
        if (!n)
            return NULL;
        n->prev = c;
        n->used = 0;
        n->cap = cap;
        t->arena = c = n;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

void *sp_task_alloc(size_t size) {
    sp_task *t = sp_task_current();
    return t ? arena_alloc(t, size) : NULL;
}

int sp_task_defer(void (*fn)(void *arg), void *arg) {
    sp_task *t = sp_task_current();
    if (!t)
        return -EPERM;
    deferred *d = arena_alloc(t, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = t->deferred;
    t->deferred = d;
    return 0;
}

void sp_task_run_cleanups(sp_task *t) {
    while (t->deferred) {
        deferred *d = t->deferred;
        t->deferred = d->next;
        d->fn(d->arg);
    }
    while (t->arena) {
        arena_chunk *c = t->arena;
        t->arena = c->prev;
        free(c);
    }
}
