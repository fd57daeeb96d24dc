/* Character classes and comparisons of HTTP text, shared by the server, the
 * router and the client: RFC 9110 tokens, and ASCII case-insensitive
 * equality (field names are ASCII; strncasecmp consults the locale and costs
 * a call per comparison on the hot path). Private to http/. */
#ifndef SP_HTTP_TEXT_H
#define SP_HTTP_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 1 for the RFC 9110 tchar bytes: ALPHA, DIGIT and !#$%&'*+-.^_`|~ */
extern const uint8_t sp_http_tchar[256];

/* True if p[0..n) is a token: at least one tchar and nothing else. */
static inline bool sp_http_token(const char *p, size_t n) {
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!sp_http_tchar[(unsigned char)p[i]])
            return false;
    return true;
}

/* True if a[0..n) and b[0..n) are equal ignoring ASCII case. */
static inline bool sp_http_ieq(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x != y) {
            /* Equal ignoring case only if they differ in the case bit and
             * are letters. */
            if ((x ^ y) != 0x20)
                return false;
            unsigned char l = x | 0x20;
            if (l < 'a' || l > 'z')
                return false;
        }
    }
    return true;
}

#endif
