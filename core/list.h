/* Intrusive circular doubly linked list: O(1) insert and removal of a node
 * that knows nothing of the list it sits in. Private to core/. */
#ifndef SP_CORE_LIST_H
#define SP_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <spindle/future.h>

#define sp_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void sp_list_init(sp_list *l) {
    l->next = l->prev = l;
}

static inline bool sp_list_empty(const sp_list *l) {
    return l->next == l;
}

/* A node that was never inserted or has been removed has next == NULL. */
static inline bool sp_list_linked(const sp_list *n) {
    return n->next != NULL;
}

static inline void sp_list_push_back(sp_list *l, sp_list *n) {
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

static inline void sp_list_remove(sp_list *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

static inline sp_list *sp_list_pop_front(sp_list *l) {
    sp_list *n = l->next;
    if (n == l)
        return NULL;
    sp_list_remove(n);
    return n;
}

/* Moves every node of src to the end of dst, leaving src empty. */
static inline void sp_list_splice_back(sp_list *dst, sp_list *src) {
    if (sp_list_empty(src))
        return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    sp_list_init(src);
}

#endif
