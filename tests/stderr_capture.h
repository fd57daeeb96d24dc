/* Captures what the code under test writes to stderr, for tests that check
 * Spindle's warnings. */
#ifndef SP_STDERR_CAPTURE_H
#define SP_STDERR_CAPTURE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <spindle/log.h>

typedef struct stderr_capture {
    int saved;
    char path[64];
} stderr_capture;

__attribute__((unused)) static void capture_begin(stderr_capture *c) {
    sp_log_flush(); /* the log writer thread writes to fd 2 itself */
    fflush(stderr);
    snprintf(c->path, sizeof(c->path), "/tmp/sp-stderr-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(c->path);
    c->saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Restores stderr and returns what was written (malloc'ed, NUL-terminated). */
__attribute__((unused)) static char *capture_end(stderr_capture *c) {
    sp_log_flush();
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    char *buf = calloc(1, 65536);
    if (f) {
        size_t n = fread(buf, 1, 65535, f);
        buf[n] = '\0';
        fclose(f);
    }
    unlink(c->path);
    return buf;
}

#endif
