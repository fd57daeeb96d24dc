/* The byte transport under a connection. conn.c and response.c move bytes
 * only through these calls, so a TLS transport (OpenSSL over the same
 * non-blocking socket) slots in under them without touching handlers, the
 * parser or the responses. Private to http/. */
#ifndef SP_HTTP_TRANSPORT_H
#define SP_HTTP_TRANSPORT_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

struct sp_http_conn;

/* Besides -errno, transport calls return these when they cannot go on until
 * the socket is ready: a read that needs it readable, or a write that needs it
 * writable, get SP_TP_AGAIN; a TLS read that must first write (renegotiation,
 * a pending alert) gets SP_TP_WANT_WRITE, a TLS write that must read first
 * SP_TP_WANT_READ. */
enum { SP_TP_AGAIN = -11 /* -EAGAIN */, SP_TP_WANT_READ = -1001, SP_TP_WANT_WRITE = -1002 };

typedef struct sp_transport_ops {
    const char *name; /* "tcp", "tls" */
    /* A read shorter than asked means the socket is drained, so the next
     * bytes bring a new edge (not so for TLS while the library holds
     * decrypted bytes). */
    bool short_read_drains;
    /* Reads up to len bytes: n > 0, 0 at the end of the stream, or a code
     * above (-ECONNRESET for any failure). */
    ssize_t (*read)(struct sp_http_conn *c, void *buf, size_t len);
    /* Writes from iov: the count written, or a code above (-EPIPE,
     * -ECONNRESET). Never raises SIGPIPE. */
    ssize_t (*writev)(struct sp_http_conn *c, const struct iovec *iov, int iovcnt);
    /* Sends up to len bytes of file fd from *offset (advanced): the count, or
     * a code above. NULL when the transport cannot (TLS): the caller then
     * reads the file and writes it. */
    ssize_t (*sendfile)(struct sp_http_conn *c, int fd, off_t *offset, size_t len);
    /* Whether the peer has closed or reset the connection, checked without
     * consuming anything while a handler runs: 1 gone, 0 not (or unknown). */
    int (*peer_gone)(struct sp_http_conn *c);
    /* Ends our sending side (TLS: close_notify, then the socket's FIN). */
    int (*shutdown_write)(struct sp_http_conn *c);
} sp_transport_ops;

/* read(2) and sendmsg(2) for TCP transports (tcp_io.c): EINTR retried,
 * MSG_NOSIGNAL, results as the ops above. */
ssize_t sp_tcp_read(int fd, void *buf, size_t len);
ssize_t sp_tcp_writev(int fd, const struct iovec *iov, int iovcnt);

/* Plain TCP. */
extern const sp_transport_ops sp_transport_tcp;

#endif
