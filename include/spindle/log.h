/* Logging that never blocks the caller: an error log with levels and an
 * access log (nginx's common format or JSON lines). Each thread formats its
 * lines into a buffer of its own; one background writer thread does the
 * write(2)s, so a slow disk or a full pipe never stalls a loop thread.
 *
 * Lines reach their file within about 100 ms (error-level lines at once), in
 * order per thread; lines of different threads are never interleaved within a
 * line. When the writer falls behind by more than 16 MiB of buffers, whole
 * buffers of lines are dropped and counted instead of blocking or growing
 * without bound, and the writer reports "N log lines dropped" in the error
 * log once it catches up. Any thread may log. Nothing here is
 * async-signal-safe: never log from a signal handler. */
#ifndef SPINDLE_LOG_H
#define SPINDLE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <spindle/http.h>

typedef enum sp_log_level {
    SP_LOG_DEBUG,
    SP_LOG_INFO,
    SP_LOG_WARN,
    SP_LOG_ERROR,
} sp_log_level;

/* ---- Error log ---- */

/* Logs one line at `level` if it is at or above the minimum level:
 *   2026-11-27T23:40:01.123Z [warn] worker 1: message
 * (UTC with milliseconds; the thread's tag, if set, before the colon). The
 * message is printf-formatted, cut at 4 KiB (ending in "..."), and its control
 * bytes are written as \xHH so one call is always one line. Formats on the
 * caller's thread without taking a lock; hands the buffer to the writer when
 * full, or at once for SP_LOG_ERROR. Never blocks, never suspends; a line
 * that can't be kept is counted in sp_log_dropped(). */
void sp_log(sp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sp_log with a va_list. */
void sp_logv(sp_log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Sets the minimum level of the error log (SP_LOG_INFO at start), for all
 * threads. Returns 0 or -EINVAL. */
int sp_log_set_level(sp_log_level level);

/* Tags the calling thread's error-log lines, e.g. "worker 1"; NULL or ""
 * removes the tag. Copied (at most 63 bytes kept, control bytes become '?').
 * Returns 0 or -ENOMEM. */
int sp_log_set_tag(const char *tag);

/* Sends the error log to `path` (created if needed, opened O_APPEND and
 * O_CLOEXEC), or to stderr (the default) when path is NULL or "-". Lines
 * logged shortly before the call may still go to the previous destination,
 * which is closed once the writer is done with it. Returns 0 or -errno from
 * open(2) (the log then keeps its destination), -ENOMEM. Blocks on open(2):
 * call it at startup, not from a loop thread. */
int sp_log_open_error(const char *path);

/* ---- Access log ---- */

typedef enum sp_access_format {
    /* nginx "combined" plus the duration in seconds, bytes other than
     * printable ASCII written as \xHH (as nginx does), "-" for absent fields:
     * 127.0.0.1 - - [27/Nov/2026:23:40:01 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/7.88.1" 0.000 */
    SP_ACCESS_COMMON,
    /* One JSON object per line; absent fields are null. Strings are escaped
     * per RFC 8259 (control bytes and DEL as \u00XX); valid UTF-8 is kept as
     * is and each byte of an invalid sequence becomes U+FFFD (\ufffd), as Go's
     * encoding/json does, so every line is valid JSON:
     * {"time":"2026-11-27T23:40:01.123Z","remote":"127.0.0.1","method":"GET",
     *  "target":"/","proto":"HTTP/1.1","status":200,"bytes":13,
     *  "duration":0.000123,"referer":null,"user_agent":"curl/7.88.1"} */
    SP_ACCESS_JSON,
} sp_access_format;

/* One request, as the server saw it. Strings are views (not copied beyond the
 * call); a string whose ptr is NULL is absent. Fields longer than a bound
 * (remote 128 bytes, method 64, target 4096, proto 32, referer 2048, user
 * agent 1024) are cut there and end in "...". */
typedef struct sp_access_entry {
    sp_str remote;               /* client address as text; absent: use `peer` */
    const struct sockaddr *peer; /* formatted when remote is absent; may be NULL */
    sp_str method;               /* "GET" */
    sp_str target;               /* "/index.html?q=1" */
    sp_str proto;                /* "HTTP/1.1" */
    int status;                  /* 200 */
    uint64_t bytes;              /* response body bytes sent */
    double duration;             /* seconds from request to response */
    sp_str referer;
    sp_str user_agent;
} sp_access_entry;

/* Logs one request in the current access format, stamped with the current
 * time. Does nothing (one relaxed atomic load) while access logging is off.
 * Formats on the caller's thread without taking a lock; costs well under a
 * microsecond. Never blocks, never suspends; a line that can't be kept is
 * counted in sp_log_dropped(). */
void sp_log_access(const sp_access_entry *e);

/* Whether access logging is on: lets a caller skip building an entry. */
bool sp_log_access_enabled(void);

/* Selects the access log format (SP_ACCESS_COMMON at start), for all
 * threads, from the next line on. Returns 0 or -EINVAL. */
int sp_log_set_access_format(sp_access_format format);

/* Sends the access log to `path` (created if needed, O_APPEND, O_CLOEXEC),
 * to stdout when path is "-", or turns access logging off (the default) when
 * path is NULL. Returns 0 or -errno from open(2) (the log then stays as it
 * was), -ENOMEM. Blocks on open(2): call it at startup, not from a loop
 * thread. */
int sp_log_open_access(const char *path);

/* ---- Rotation, flushing, shutdown ---- */

/* Reopens the error and access logs that were opened by path, as nginx does
 * on SIGUSR1 after the files were renamed: later lines go to new files at
 * those paths (lines logged shortly before may still go to the old ones).
 * Returns 0, or the first -errno from open(2) (that log keeps its current
 * file). Blocks on open(2): call it from a thread that may block (for
 * instance through sp_to_thread), not from a signal handler. */
int sp_log_reopen(void);

/* Blocks until every line logged (by any thread) before the call is written
 * to its file descriptor, or dropped and reported. For tests and shutdown: it
 * waits for the disk or pipe, without limit if nobody reads the pipe, so never
 * call it on a loop thread (use sp_to_thread). Returns 0, or -EAGAIN if the
 * writer thread can't be started. */
int sp_log_flush(void);

/* Flushes, stops the writer thread, closes the files opened by path, and
 * resets the configuration to its start (errors at SP_LOG_INFO to stderr,
 * access log off, common format). Call it once at exit, after sp_run
 * returned; it blocks as sp_log_flush does. Logging afterwards works again
 * (a new writer starts). Nothing is registered with atexit: without this
 * call, lines still buffered at exit are lost. */
void sp_log_shutdown(void);

/* Lines dropped since the process started: the writer fell behind, a write
 * failed, or memory ran out. */
uint64_t sp_log_dropped(void);

#endif
