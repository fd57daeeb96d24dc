/* The error and access logs. A thread formats lines into its own 64 KiB
 * buffer, owned through an atomic slot, and hands full buffers to one writer
 * thread that does the write(2)s; the writer also collects the buffers of
 * idle threads every 100 ms. Callers never wait for the writer: past 16 MiB
 * of queued buffers, buffers are dropped and counted. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <spindle/log.h>

#define BUF_CAP       (64 * 1024)
#define QUEUE_MAX     256 /* queued buffers: 16 MiB */
#define FREE_MAX      16  /* spare buffers kept for reuse */
#define TICK_NS       (100 * 1000 * 1000LL)
#define MSG_MAX       4096
#define TAG_MAX       64
#define LINE_FIXED    320 /* bytes of a line besides its escaped strings */
#define TRUNC_MARK    "..."
#define TRUNC_MARK_SZ 3
/* Access fields are cut at these lengths (bytes in). */
#define MAX_REMOTE  128
#define MAX_METHOD  64
#define MAX_TARGET  4096
#define MAX_PROTO   32
#define MAX_REFERER 2048
#define MAX_UA      1024

enum { ERR_STREAM, ACC_STREAM, NSTREAMS };

/* The longest line fits an empty buffer: an access line escapes each byte of
 * its clipped fields into at most 6, a message's into at most 4. */
_Static_assert(LINE_FIXED +
                       6 * (MAX_REMOTE + MAX_METHOD + MAX_TARGET + MAX_PROTO + MAX_REFERER +
                            MAX_UA) +
                       6 * TRUNC_MARK_SZ <=
                   BUF_CAP,
               "access line bound");
_Static_assert(LINE_FIXED + TAG_MAX + 4 * MSG_MAX + TRUNC_MARK_SZ <= BUF_CAP, "error line bound");

typedef struct log_buf {
    struct log_buf *next;
    int stream;
    uint32_t lines;
    size_t len;
    uint64_t seq; /* position in the queue, for sp_log_flush */
    char data[BUF_CAP];
} log_buf;

/* A thread's slot holds its buffer: 0 (none yet), SLOT_BUSY while the owner
 * formats into it, else the buffer's address with SLOT_DATA set when it holds
 * lines. Only the owner stores SLOT_BUSY and only the owner replaces it, so
 * the writer can take a buffer with one compare-and-swap and never waits for
 * a busy owner; the owner pays one exchange and one store per line. */
#define SLOT_BUSY ((uintptr_t)1)
#define SLOT_DATA ((uintptr_t)1)

typedef struct log_thread {
    _Atomic uintptr_t slot[NSTREAMS];
    struct log_thread *next;      /* the registry: never unlinked, immutable once published */
    struct log_thread *next_free; /* states of exited threads, for reuse (under mu) */
    int64_t clock_sec;            /* the second iso and clf spell */
    char iso[19];                 /* 2026-11-27T23:40:01 */
    char clf[26];                 /* 27/Nov/2026:23:40:01 +0000 */
    size_t tag_len;
    char tag[TAG_MAX];
    char msg[MSG_MAX];
} log_thread;

typedef struct log_stream {
    int fd;     /* -1: lines are discarded (access log off) */
    bool owned; /* opened from path: ours to close */
    char *path; /* for sp_log_reopen; NULL for stdout, stderr, off */
    /* A new fd waiting to replace fd: the writer swaps it in between batches,
     * since it may be writing to fd outside the lock. */
    bool swap;
    int next_fd;
    bool next_owned;
} log_stream;

static struct {
    pthread_mutex_t mu;  /* everything below but the atomics */
    pthread_cond_t wake; /* the writer waits here */
    pthread_cond_t done; /* sp_log_flush waits here */
    log_buf *head, *tail;
    size_t nqueued;
    uint64_t enq_seq, written_seq;
    log_buf *spare;
    size_t nspare;
    bool writer_running, stop, kicked;
    pthread_t writer;
    log_stream streams[NSTREAMS];
    uint64_t drop_total, drop_taken, drop_reported; /* lines lost, taken for / written in reports */
    log_thread *free_threads;
    _Atomic(log_thread *) threads;
    _Atomic int level;
    _Atomic int access_on;
    _Atomic int access_format;
    _Atomic int writer_idle; /* 1 when no writer runs or it sleeps without a timeout */
    _Atomic int64_t fixed_ns;
} g = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .streams = {{.fd = STDERR_FILENO}, {.fd = -1}},
    .level = SP_LOG_INFO,
    .access_format = SP_ACCESS_COMMON,
    .writer_idle = 1,
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static _Thread_local log_thread *tl_thread;

static const char level_names[][6] = {"debug", "info", "warn", "error"};
static const char month_names[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char hex_upper[] = "0123456789ABCDEF";
static const char hex_lower[] = "0123456789abcdef";

/* ---- Clock ---- */

/* Tests fix the clock to compare exact lines; 0 restores the real one. */
void sp_log_test_set_time(int64_t unix_ns);
void sp_log_test_set_time(int64_t unix_ns) {
    atomic_store(&g.fixed_ns, unix_ns);
}

static int64_t wall_ns(void) {
    int64_t fixed = atomic_load_explicit(&g.fixed_ns, memory_order_relaxed);
    if (fixed != 0)
        return fixed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Writes the low n decimal digits of v, zero-padded. */
static char *put_digits(char *p, unsigned v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

/* Spells second `sec` into the thread's cache: the calendar is worked out at
 * most once a second per thread instead of once a line. */
static void clock_spell(log_thread *t, int64_t sec) {
    if (sec == t->clock_sec)
        return;
    time_t tt = (time_t)sec;
    struct tm tm;
    gmtime_r(&tt, &tm);
    unsigned year = (unsigned)(tm.tm_year + 1900), mon = (unsigned)tm.tm_mon + 1;
    unsigned day = (unsigned)tm.tm_mday;
    char hms[8], *p = hms;
    p = put_digits(p, (unsigned)tm.tm_hour, 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)tm.tm_min, 2);
    *p++ = ':';
    put_digits(p, (unsigned)tm.tm_sec, 2);

    p = put_digits(t->iso, year, 4);
    *p++ = '-';
    p = put_digits(p, mon, 2);
    *p++ = '-';
    p = put_digits(p, day, 2);
    *p++ = 'T';
    memcpy(p, hms, 8);

    p = put_digits(t->clf, day, 2);
    *p++ = '/';
    memcpy(p, month_names[tm.tm_mon], 3);
    p += 3;
    *p++ = '/';
    p = put_digits(p, year, 4);
    *p++ = ':';
    memcpy(p, hms, 8);
    memcpy(p + 8, " +0000", 6);
    t->clock_sec = sec;
}

/* ---- Writing bytes ---- */

static char *put(char *p, const char *s, size_t n) {
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static char *put_int(char *p, int v) {
    if (v < 0)
        *p++ = '-';
    return put_u64(p, v < 0 ? -(uint64_t)v : (uint64_t)v);
}

/* Writes v / 10^digits with exactly `digits` decimals. */
static char *put_fixed(char *p, uint64_t v, int digits) {
    uint64_t scale = 1;
    for (int i = 0; i < digits; i++)
        scale *= 10;
    p = put_u64(p, v / scale);
    *p++ = '.';
    uint64_t frac = v % scale;
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    return p + digits;
}

/* A duration in seconds as an integer count of 10^-digits s, rounded;
 * negative and NaN become 0, huge values a day-sized bound. */
static uint64_t duration_units(double seconds, double per_second) {
    if (!(seconds > 0))
        return 0;
    if (seconds > 1e9)
        seconds = 1e9;
    return (uint64_t)(seconds * per_second + 0.5);
}

static char *put_ms(char *p, int64_t ns) {
    int ms = (int)((ns / 1000000) % 1000);
    *p++ = '.';
    *p++ = (char)('0' + ms / 100);
    *p++ = (char)('0' + ms / 10 % 10);
    *p++ = (char)('0' + ms % 10);
    return p;
}

/* Copies s escaping what isn't printable ASCII, '"' and '\' as \xHH, as
 * nginx's access log does; at most 4 bytes out per byte in. */
static char *put_clf_bytes(char *p, const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *p++ = (char)c;
        } else {
            p[0] = '\\';
            p[1] = 'x';
            p[2] = hex_upper[c >> 4];
            p[3] = hex_upper[c & 15];
            p += 4;
        }
    }
    return p;
}

/* The length of the valid UTF-8 sequence starting at s (n bytes left), or 0
 * (RFC 3629: no overlongs, surrogates or code points past U+10FFFF). */
static size_t utf8_valid(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0xc2 || c > 0xf4)
        return 0;
    size_t len = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (n < len)
        return 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* Copies s as the inside of a JSON string: '"' and '\' escaped, control
 * bytes and DEL as \u00XX, valid UTF-8 kept, each byte of an invalid sequence
 * replaced by \ufffd; at most 6 bytes out per byte in. */
static char *put_json_bytes(char *p, const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *p++ = (char)c;
            i++;
        } else if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
            i++;
        } else if (c < 0x80) {
            p = put(p, "\\u00", 4);
            *p++ = hex_lower[c >> 4];
            *p++ = hex_lower[c & 15];
            i++;
        } else {
            size_t len = utf8_valid(s + i, n - i);
            if (len == 0) {
                p = put(p, "\\ufffd", 6);
                i++;
            } else {
                p = put(p, (const char *)s + i, len);
                i += len;
            }
        }
    }
    return p;
}

/* ---- Access lines ---- */

/* A field of the entry, clipped to its bound. */
typedef struct field {
    const unsigned char *ptr; /* NULL: absent */
    size_t len;
    bool cut;
} field;

static field clip(sp_str s, size_t max) {
    field f = {(const unsigned char *)s.ptr, s.ptr != NULL ? s.len : 0, false};
    if (f.len > max) {
        f.len = max;
        f.cut = true;
    }
    return f;
}

static char *put_clf_field(char *p, field f) {
    p = put_clf_bytes(p, f.ptr, f.len);
    return f.cut ? put(p, TRUNC_MARK, TRUNC_MARK_SZ) : p;
}

/* A JSON string value, or null when the field is absent. */
static char *put_json_field(char *p, field f) {
    if (f.ptr == NULL)
        return put(p, "null", 4);
    *p++ = '"';
    p = put_json_bytes(p, f.ptr, f.len);
    if (f.cut)
        p = put(p, TRUNC_MARK, TRUNC_MARK_SZ);
    *p++ = '"';
    return p;
}

static size_t put_ipv4(char *p, const unsigned char *a) {
    char *start = p;
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            *p++ = '.';
        p = put_u64(p, a[i]);
    }
    return (size_t)(p - start);
}

/* Spells a socket address into buf (MAX_REMOTE bytes); returns its
 * length, 0 for an unknown family. */
static size_t spell_peer(const struct sockaddr *sa, char *buf) {
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return put_ipv4(buf, (const unsigned char *)&in->sin_addr);
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, buf, INET6_ADDRSTRLEN) == NULL)
            return 0;
        return strlen(buf);
    }
    case AF_UNIX:
        memcpy(buf, "unix:", 5);
        return 5;
    default:
        return 0;
    }
}

typedef struct access_fields {
    field remote, method, target, proto, referer, user_agent;
    char peer[MAX_REMOTE];
} access_fields;

/* Clips the entry's fields and returns the most bytes its line can take. */
static size_t access_prepare(const sp_access_entry *e, access_fields *a, size_t per_byte) {
    a->remote = clip(e->remote, MAX_REMOTE);
    if (a->remote.ptr == NULL && e->peer != NULL) {
        size_t n = spell_peer(e->peer, a->peer);
        if (n > 0)
            a->remote = (field){(const unsigned char *)a->peer, n, false};
    }
    a->method = clip(e->method, MAX_METHOD);
    a->target = clip(e->target, MAX_TARGET);
    a->proto = clip(e->proto, MAX_PROTO);
    a->referer = clip(e->referer, MAX_REFERER);
    a->user_agent = clip(e->user_agent, MAX_UA);
    size_t in = a->remote.len + a->method.len + a->target.len + a->proto.len + a->referer.len +
                a->user_agent.len;
    return LINE_FIXED + in * per_byte + 6 * TRUNC_MARK_SZ;
}

static char *format_clf(char *p, const log_thread *t, const sp_access_entry *e,
                        const access_fields *a) {
    if (a->remote.ptr != NULL && a->remote.len > 0)
        p = put_clf_field(p, a->remote);
    else
        *p++ = '-';
    p = put(p, " - - [", 6);
    p = put(p, t->clf, 26);
    p = put(p, "] \"", 3);
    const field *parts[] = {&a->method, &a->target, &a->proto};
    bool any = false;
    for (size_t i = 0; i < 3; i++) {
        if (parts[i]->ptr == NULL)
            continue;
        if (any)
            *p++ = ' ';
        p = put_clf_field(p, *parts[i]);
        any = true;
    }
    if (!any)
        *p++ = '-';
    p = put(p, "\" ", 2);
    p = put_int(p, e->status);
    *p++ = ' ';
    p = put_u64(p, e->bytes);
    const field *quoted[] = {&a->referer, &a->user_agent};
    for (size_t i = 0; i < 2; i++) {
        p = put(p, " \"", 2);
        if (quoted[i]->ptr != NULL)
            p = put_clf_field(p, *quoted[i]);
        else
            *p++ = '-';
        *p++ = '"';
    }
    *p++ = ' ';
    p = put_fixed(p, duration_units(e->duration, 1e3), 3);
    *p++ = '\n';
    return p;
}

static char *format_json(char *p, const log_thread *t, int64_t ns, const sp_access_entry *e,
                         const access_fields *a) {
    p = put(p, "{\"time\":\"", 9);
    p = put(p, t->iso, 19);
    p = put_ms(p, ns);
    p = put(p, "Z\",\"remote\":", 12);
    p = put_json_field(p, a->remote);
    p = put(p, ",\"method\":", 10);
    p = put_json_field(p, a->method);
    p = put(p, ",\"target\":", 10);
    p = put_json_field(p, a->target);
    p = put(p, ",\"proto\":", 9);
    p = put_json_field(p, a->proto);
    p = put(p, ",\"status\":", 10);
    p = put_int(p, e->status);
    p = put(p, ",\"bytes\":", 9);
    p = put_u64(p, e->bytes);
    p = put(p, ",\"duration\":", 12);
    p = put_fixed(p, duration_units(e->duration, 1e6), 6);
    p = put(p, ",\"referer\":", 11);
    p = put_json_field(p, a->referer);
    p = put(p, ",\"user_agent\":", 14);
    p = put_json_field(p, a->user_agent);
    p = put(p, "}\n", 2);
    return p;
}

/* ---- The queue (all under g.mu) ---- */

static void *writer_main(void *arg);

static int writer_start_locked(void) {
    sigset_t all, old;
    sigfillset(&all);
    /* The writer takes no signal: a process-directed one goes to a thread
     * that handles it, and a SIGPIPE from a write to a closed pipe stays
     * pending on the writer, whose write then fails with EPIPE. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&g.writer, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    g.writer_running = true;
    atomic_store(&g.writer_idle, 0);
    return 0;
}

/* Wakes the writer, starting it if none runs. If it can't start, the queue
 * waits for the next attempt (and overflows into drops meanwhile). */
static void writer_kick_locked(void) {
    if (!g.writer_running) {
        writer_start_locked();
        return;
    }
    g.kicked = true;
    pthread_cond_signal(&g.wake);
}

static void buf_recycle_locked(log_buf *b) {
    if (g.nspare >= FREE_MAX) {
        free(b);
        return;
    }
    b->next = g.spare;
    g.spare = b;
    g.nspare++;
}

static log_buf *buf_spare_locked(void) {
    log_buf *b = g.spare;
    if (b != NULL) {
        g.spare = b->next;
        g.nspare--;
    }
    return b;
}

static void buf_reset(log_buf *b, int stream) {
    b->next = NULL;
    b->stream = stream;
    b->lines = 0;
    b->len = 0;
}

/* Queues b for the writer, or counts its lines as dropped and keeps it for
 * reuse when the queue is full. */
static void enqueue_locked(log_buf *b) {
    if (g.nqueued >= QUEUE_MAX) {
        g.drop_total += b->lines;
        buf_recycle_locked(b);
        return;
    }
    b->next = NULL;
    b->seq = ++g.enq_seq;
    if (g.tail != NULL)
        g.tail->next = b;
    else
        g.head = b;
    g.tail = b;
    g.nqueued++;
}

/* Takes the buffers holding lines out of every thread's slots and queues
 * them. With `wait`, a slot whose owner is formatting is retried (g.mu is
 * released meanwhile, since the owner may need it); else *busy is set. */
static size_t steal_locked(bool wait, bool *busy) {
    size_t n = 0;
    for (log_thread *t = atomic_load_explicit(&g.threads, memory_order_acquire); t != NULL;
         t = t->next) {
        for (int s = 0; s < NSTREAMS; s++) {
            uintptr_t v = atomic_load_explicit(&t->slot[s], memory_order_acquire);
            for (;;) {
                if (v == SLOT_BUSY) {
                    if (!wait) {
                        *busy = true;
                        break;
                    }
                    pthread_mutex_unlock(&g.mu);
                    sched_yield();
                    pthread_mutex_lock(&g.mu);
                    v = atomic_load_explicit(&t->slot[s], memory_order_acquire);
                    continue;
                }
                if (!(v & SLOT_DATA))
                    break;
                if (atomic_compare_exchange_weak_explicit(&t->slot[s], &v, 0, memory_order_acquire,
                                                          memory_order_acquire)) {
                    enqueue_locked((log_buf *)(v & ~SLOT_DATA));
                    n++;
                    break;
                }
            }
        }
    }
    return n;
}

static bool slots_hold_lines(void) {
    for (log_thread *t = atomic_load_explicit(&g.threads, memory_order_acquire); t != NULL;
         t = t->next)
        for (int s = 0; s < NSTREAMS; s++) {
            uintptr_t v = atomic_load_explicit(&t->slot[s], memory_order_relaxed);
            if (v == SLOT_BUSY || (v & SLOT_DATA))
                return true;
        }
    return false;
}

/* ---- Destinations (under g.mu) ---- */

static void stream_apply_locked(log_stream *s) {
    if (!s->swap)
        return;
    if (s->owned)
        close(s->fd);
    s->fd = s->next_fd;
    s->owned = s->next_owned;
    s->swap = false;
}

/* Points the stream at fd from now on; the writer swaps it in between
 * batches, or it is swapped here when no writer runs. */
static void stream_set_locked(log_stream *s, int fd, bool owned) {
    if (s->swap && s->next_owned)
        close(s->next_fd);
    s->next_fd = fd;
    s->next_owned = owned;
    s->swap = true;
    if (!g.writer_running)
        stream_apply_locked(s);
}

static int open_append(const char *path, int *fd) {
    *fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    return *fd < 0 ? -errno : 0;
}

/* Sets stream `which` to fd; path (copied) is what sp_log_reopen reopens. */
static int stream_configure(int which, int fd, bool owned, const char *path) {
    char *copy = NULL;
    if (path != NULL && (copy = strdup(path)) == NULL) {
        if (owned)
            close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(&g.mu);
    log_stream *s = &g.streams[which];
    free(s->path);
    s->path = copy;
    stream_set_locked(s, fd, owned);
    pthread_mutex_unlock(&g.mu);
    return 0;
}

/* ---- The writer thread ---- */

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                /* Someone made the fd non-blocking (a shared stdout pipe):
                 * this thread is the one that may wait. */
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                poll(&pfd, 1, -1);
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void write_drop_report(int fd, uint64_t lines) {
    char line[128];
    int64_t ns = wall_ns();
    time_t sec = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [warn] spindle: %llu log lines "
                     "dropped\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(ns / 1000000 % 1000), (unsigned long long)lines);
    if (fd >= 0)
        write_all(fd, line, (size_t)n);
}

/* Writes the queue (and a report of drops since the last one) with g.mu
 * released, so callers can keep handing over buffers meanwhile. */
static void writer_drain_locked(void) {
    log_buf *batch = g.head;
    g.head = g.tail = NULL;
    uint64_t report = g.drop_total - g.drop_taken;
    uint64_t taken = g.drop_total;
    g.drop_taken = taken;
    int fds[NSTREAMS];
    for (int s = 0; s < NSTREAMS; s++)
        fds[s] = g.streams[s].fd;
    pthread_mutex_unlock(&g.mu);

    size_t nbufs = 0;
    uint64_t lost = 0, last_seq = 0;
    for (log_buf *b = batch; b != NULL; b = b->next) {
        int fd = fds[b->stream];
        if (fd >= 0 && write_all(fd, b->data, b->len) != 0)
            lost += b->lines;
        last_seq = b->seq;
        nbufs++;
    }
    if (report > 0)
        write_drop_report(fds[ERR_STREAM], report);

    pthread_mutex_lock(&g.mu);
    while (batch != NULL) {
        log_buf *next = batch->next;
        buf_recycle_locked(batch);
        batch = next;
    }
    g.nqueued -= nbufs;
    if (nbufs > 0)
        g.written_seq = last_seq;
    g.drop_total += lost;
    g.drop_reported = taken;
    pthread_cond_broadcast(&g.done);
}

static void cond_wait_until(int64_t deadline) {
    struct timespec ts = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
    pthread_cond_timedwait(&g.wake, &g.mu, &ts);
}

/* Sleeps without a timeout when no thread holds lines; returns false (not
 * slept) otherwise. An owner that puts its first line into an empty buffer
 * checks writer_idle after publishing it, and here the slots are checked
 * after writer_idle is set: with the fences, one of the two sees the other. */
static bool writer_sleep_locked(void) {
    atomic_store(&g.writer_idle, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (slots_hold_lines()) {
        atomic_store(&g.writer_idle, 0);
        return false;
    }
    g.kicked = false;
    while (!g.kicked && g.head == NULL && !g.stop)
        pthread_cond_wait(&g.wake, &g.mu);
    atomic_store(&g.writer_idle, 0);
    return true;
}

static void *writer_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g.mu);
    int64_t next_scan = mono_ns() + TICK_NS;
    for (;;) {
        for (int s = 0; s < NSTREAMS; s++)
            stream_apply_locked(&g.streams[s]);
        if (g.head != NULL || g.drop_total != g.drop_taken) {
            writer_drain_locked();
            continue;
        }
        if (g.stop)
            break;
        int64_t now = mono_ns();
        if (now >= next_scan) {
            bool busy = false;
            size_t n = steal_locked(false, &busy);
            next_scan = now + TICK_NS;
            if (n > 0)
                continue;
            /* After a wake-up from idle, wait a tick before collecting so a
             * burst of lines goes out in one write. */
            if (!busy && writer_sleep_locked()) {
                next_scan = mono_ns() + TICK_NS;
                continue;
            }
        }
        cond_wait_until(next_scan);
    }
    g.writer_running = false;
    g.stop = false;
    atomic_store(&g.writer_idle, 1);
    pthread_cond_broadcast(&g.done);
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

/* ---- Thread states ---- */

/* At thread exit: hands the thread's lines over and keeps its state for the
 * next thread (the writer may be walking the registry). */
static void thread_exit(void *arg) {
    log_thread *t = arg;
    tl_thread = NULL;
    pthread_mutex_lock(&g.mu);
    bool queued = false;
    for (int s = 0; s < NSTREAMS; s++) {
        uintptr_t v = atomic_exchange(&t->slot[s], 0);
        log_buf *b = (log_buf *)(v & ~SLOT_DATA);
        if (b == NULL)
            continue;
        if (b->len > 0) {
            enqueue_locked(b);
            queued = true;
        } else {
            buf_recycle_locked(b);
        }
    }
    if (queued)
        writer_kick_locked();
    t->tag_len = 0;
    t->next_free = g.free_threads;
    g.free_threads = t;
    pthread_mutex_unlock(&g.mu);
}

static void conds_init(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g.wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&g.done, NULL);
}

static void atfork_prepare(void) {
    pthread_mutex_lock(&g.mu);
}

static void atfork_parent(void) {
    pthread_mutex_unlock(&g.mu);
}

/* The child has no writer and no other threads: their lines, and the
 * parent's queue, are the parent's to write. */
static void atfork_child(void) {
    while (g.head != NULL) {
        log_buf *b = g.head;
        g.head = b->next;
        free(b);
    }
    g.tail = NULL;
    g.nqueued = 0;
    g.written_seq = g.enq_seq;
    g.writer_running = g.stop = g.kicked = false;
    atomic_store(&g.writer_idle, 1);
    for (log_thread *t = atomic_load(&g.threads); t != NULL; t = t->next) {
        bool dead = t != tl_thread;
        for (int s = 0; s < NSTREAMS; s++) {
            uintptr_t v = atomic_load(&t->slot[s]);
            log_buf *b = v == SLOT_BUSY ? NULL : (log_buf *)(v & ~SLOT_DATA);
            if (b != NULL && dead)
                free(b);
            else if (b != NULL)
                buf_reset(b, s);
            atomic_store(&t->slot[s], dead || b == NULL ? 0 : (uintptr_t)b);
        }
        bool listed = false;
        for (log_thread *f = g.free_threads; f != NULL; f = f->next_free)
            listed |= f == t;
        if (dead && !listed) {
            t->next_free = g.free_threads;
            g.free_threads = t;
        }
    }
    /* The parent's writer may have been waiting on the conditions: start
     * them afresh. The forking thread holds g.mu since atfork_prepare. */
    conds_init();
    pthread_mutex_unlock(&g.mu);
}

static void global_init(void) {
    conds_init();
    pthread_key_create(&g_key, thread_exit);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static log_thread *thread_init(void) {
    pthread_once(&g_once, global_init);
    pthread_mutex_lock(&g.mu);
    log_thread *t = g.free_threads;
    if (t != NULL)
        g.free_threads = t->next_free;
    pthread_mutex_unlock(&g.mu);
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL)
            return NULL;
        t->clock_sec = INT64_MIN;
        t->next = atomic_load(&g.threads);
        while (!atomic_compare_exchange_weak(&g.threads, &t->next, t))
            ;
    }
    pthread_setspecific(g_key, t);
    tl_thread = t;
    return t;
}

static inline log_thread *thread_get(void) {
    log_thread *t = tl_thread;
    return t != NULL ? t : thread_init();
}

static void count_drop(void) {
    pthread_mutex_lock(&g.mu);
    g.drop_total++;
    pthread_mutex_unlock(&g.mu);
}

/* Takes the thread's buffer for `stream` with room for `need` bytes, handing
 * a fuller one to the writer. NULL only when memory runs out (the slot is
 * then left empty). */
static log_buf *slot_take(log_thread *t, int stream, size_t need) {
    uintptr_t v = atomic_exchange_explicit(&t->slot[stream], SLOT_BUSY, memory_order_acquire);
    log_buf *b = (log_buf *)(v & ~SLOT_DATA);
    if (b != NULL && BUF_CAP - b->len >= need)
        return b;
    pthread_mutex_lock(&g.mu);
    if (b != NULL) {
        enqueue_locked(b);
        writer_kick_locked();
    }
    b = buf_spare_locked();
    pthread_mutex_unlock(&g.mu);
    if (b == NULL && (b = malloc(sizeof(*b))) == NULL) {
        atomic_store_explicit(&t->slot[stream], 0, memory_order_release);
        return NULL;
    }
    buf_reset(b, stream);
    return b;
}

/* Gives the buffer back after a line of `n` bytes went in at b->len. */
static void slot_put(log_thread *t, int stream, log_buf *b, size_t n, bool now) {
    bool first = b->len == 0;
    b->len += n;
    b->lines++;
    if (now) {
        pthread_mutex_lock(&g.mu);
        enqueue_locked(b);
        writer_kick_locked();
        pthread_mutex_unlock(&g.mu);
        atomic_store_explicit(&t->slot[stream], 0, memory_order_release);
        return;
    }
    atomic_store_explicit(&t->slot[stream], (uintptr_t)b | SLOT_DATA, memory_order_release);
    if (first) {
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&g.writer_idle, memory_order_relaxed)) {
            pthread_mutex_lock(&g.mu);
            writer_kick_locked();
            pthread_mutex_unlock(&g.mu);
        }
    }
}

/* ---- Public API ---- */

void sp_logv(sp_log_level level, const char *fmt, va_list ap) {
    int lv = (int)level;
    lv = lv < SP_LOG_DEBUG ? SP_LOG_DEBUG : lv > SP_LOG_ERROR ? SP_LOG_ERROR : lv;
    if (lv < atomic_load_explicit(&g.level, memory_order_relaxed))
        return;
    log_thread *t = thread_get();
    if (t == NULL) {
        count_drop();
        return;
    }
    int len = vsnprintf(t->msg, MSG_MAX, fmt, ap);
    bool cut = len >= MSG_MAX;
    size_t n = len < 0 ? 0 : cut ? MSG_MAX - 1 : (size_t)len;

    int64_t ns = wall_ns();
    clock_spell(t, ns / 1000000000);
    log_buf *b = slot_take(t, ERR_STREAM, LINE_FIXED + t->tag_len + 4 * n);
    if (b == NULL) {
        count_drop();
        return;
    }
    char *start = b->data + b->len, *p = start;
    p = put(p, t->iso, 19);
    p = put_ms(p, ns);
    p = put(p, "Z [", 3);
    p = put(p, level_names[lv], strlen(level_names[lv]));
    p = put(p, "] ", 2);
    if (t->tag_len > 0) {
        p = put(p, t->tag, t->tag_len);
        p = put(p, ": ", 2);
    }
    /* Messages keep their bytes but not their control characters: one call
     * is one line, whatever a message quotes. */
    const unsigned char *m = (const unsigned char *)t->msg;
    for (size_t i = 0; i < n; i++) {
        if (m[i] >= 0x20 && m[i] != 0x7f) {
            *p++ = (char)m[i];
        } else {
            p = put(p, "\\x", 2);
            *p++ = hex_upper[m[i] >> 4];
            *p++ = hex_upper[m[i] & 15];
        }
    }
    if (cut)
        p = put(p, TRUNC_MARK, TRUNC_MARK_SZ);
    *p++ = '\n';
    slot_put(t, ERR_STREAM, b, (size_t)(p - start), lv == SP_LOG_ERROR);
}

void sp_log(sp_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sp_logv(level, fmt, ap);
    va_end(ap);
}

int sp_log_set_level(sp_log_level level) {
    if ((int)level < SP_LOG_DEBUG || (int)level > SP_LOG_ERROR)
        return -EINVAL;
    atomic_store(&g.level, (int)level);
    return 0;
}

int sp_log_set_tag(const char *tag) {
    log_thread *t = thread_get();
    if (t == NULL)
        return -ENOMEM;
    size_t n = tag != NULL ? strnlen(tag, TAG_MAX - 1) : 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)tag[i];
        t->tag[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    t->tag_len = n;
    return 0;
}

int sp_log_open_error(const char *path) {
    pthread_once(&g_once, global_init);
    if (path == NULL || strcmp(path, "-") == 0)
        return stream_configure(ERR_STREAM, STDERR_FILENO, false, NULL);
    int fd, rc = open_append(path, &fd);
    return rc != 0 ? rc : stream_configure(ERR_STREAM, fd, true, path);
}

void sp_log_access(const sp_access_entry *e) {
    if (!atomic_load_explicit(&g.access_on, memory_order_relaxed))
        return;
    log_thread *t = thread_get();
    if (t == NULL) {
        count_drop();
        return;
    }
    bool json = atomic_load_explicit(&g.access_format, memory_order_relaxed) == SP_ACCESS_JSON;
    access_fields a;
    size_t need = access_prepare(e, &a, json ? 6 : 4);
    int64_t ns = wall_ns();
    clock_spell(t, ns / 1000000000);
    log_buf *b = slot_take(t, ACC_STREAM, need);
    if (b == NULL) {
        count_drop();
        return;
    }
    char *start = b->data + b->len;
    char *end = json ? format_json(start, t, ns, e, &a) : format_clf(start, t, e, &a);
    slot_put(t, ACC_STREAM, b, (size_t)(end - start), false);
}

bool sp_log_access_enabled(void) {
    return atomic_load_explicit(&g.access_on, memory_order_relaxed) != 0;
}

int sp_log_set_access_format(sp_access_format format) {
    if (format != SP_ACCESS_COMMON && format != SP_ACCESS_JSON)
        return -EINVAL;
    atomic_store(&g.access_format, (int)format);
    return 0;
}

int sp_log_open_access(const char *path) {
    pthread_once(&g_once, global_init);
    int rc;
    if (path == NULL) {
        atomic_store(&g.access_on, 0);
        return stream_configure(ACC_STREAM, -1, false, NULL);
    }
    if (strcmp(path, "-") == 0) {
        rc = stream_configure(ACC_STREAM, STDOUT_FILENO, false, NULL);
    } else {
        int fd;
        rc = open_append(path, &fd);
        if (rc == 0)
            rc = stream_configure(ACC_STREAM, fd, true, path);
    }
    if (rc == 0)
        atomic_store(&g.access_on, 1);
    return rc;
}

int sp_log_reopen(void) {
    pthread_once(&g_once, global_init);
    int first = 0;
    for (int s = 0; s < NSTREAMS; s++) {
        pthread_mutex_lock(&g.mu);
        char *path = g.streams[s].path ? strdup(g.streams[s].path) : NULL;
        bool had = g.streams[s].path != NULL;
        pthread_mutex_unlock(&g.mu);
        if (!had)
            continue;
        int fd, rc = path == NULL ? -ENOMEM : open_append(path, &fd);
        if (rc == 0) {
            pthread_mutex_lock(&g.mu);
            /* The path may have been changed meanwhile: that change wins. */
            log_stream *st = &g.streams[s];
            if (st->path != NULL && strcmp(st->path, path) == 0)
                stream_set_locked(st, fd, true);
            else
                close(fd);
            pthread_mutex_unlock(&g.mu);
        }
        free(path);
        if (rc != 0 && first == 0)
            first = rc;
    }
    return first;
}

int sp_log_flush(void) {
    pthread_once(&g_once, global_init);
    pthread_mutex_lock(&g.mu);
    bool busy = false;
    steal_locked(true, &busy);
    uint64_t target = g.enq_seq, drops = g.drop_total;
    int rc = 0;
    while (g.written_seq < target || g.drop_reported < drops) {
        if (!g.writer_running && (rc = writer_start_locked()) != 0)
            break;
        g.kicked = true;
        pthread_cond_signal(&g.wake);
        pthread_cond_wait(&g.done, &g.mu);
    }
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void sp_log_shutdown(void) {
    sp_log_flush();
    pthread_mutex_lock(&g.mu);
    if (g.writer_running) {
        pthread_t w = g.writer;
        g.stop = true;
        pthread_cond_signal(&g.wake);
        pthread_mutex_unlock(&g.mu);
        pthread_join(w, NULL);
        pthread_mutex_lock(&g.mu);
    }
    atomic_store(&g.access_on, 0);
    atomic_store(&g.level, SP_LOG_INFO);
    atomic_store(&g.access_format, SP_ACCESS_COMMON);
    const int fds[NSTREAMS] = {STDERR_FILENO, -1};
    for (int s = 0; s < NSTREAMS; s++) {
        free(g.streams[s].path);
        g.streams[s].path = NULL;
        stream_set_locked(&g.streams[s], fds[s], false);
    }
    pthread_mutex_unlock(&g.mu);
}

uint64_t sp_log_dropped(void) {
    pthread_mutex_lock(&g.mu);
    uint64_t n = g.drop_total;
    pthread_mutex_unlock(&g.mu);
    return n;
}
