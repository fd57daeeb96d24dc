/* The plain TCP transport: read, sendmsg with MSG_NOSIGNAL, sendfile, and a
 * MSG_PEEK check for a client that went away. */
#include <errno.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static ssize_t tcp_read(sp_http_conn *c, void *buf, size_t len) {
    return sp_tcp_read(c->fd, buf, len);
}

static ssize_t tcp_writev(sp_http_conn *c, const struct iovec *iov, int iovcnt) {
    return sp_tcp_writev(c->fd, iov, iovcnt);
}

static ssize_t tcp_sendfile(sp_http_conn *c, int fd, off_t *offset, size_t len) {
    for (;;) {
        ssize_t n = sendfile(c->fd, fd, offset, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        /* Errors of the file itself stay what they are. */
        if (errno == EAGAIN)
            return SP_TP_AGAIN;
        if (errno == EPIPE || errno == ECONNRESET)
            return -errno;
        return -errno;
    }
}

static int tcp_peer_gone(sp_http_conn *c) {
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static int tcp_shutdown_write(sp_http_conn *c) {
    return shutdown(c->fd, SHUT_WR) == 0 ? 0 : -errno;
}

const sp_transport_ops sp_transport_tcp = {
    .name = "tcp",
    .short_read_drains = true,
    .read = tcp_read,
    .writev = tcp_writev,
    .sendfile = tcp_sendfile,
    .peer_gone = tcp_peer_gone,
    .shutdown_write = tcp_shutdown_write,
};
