/* The plain TCP transport under client connections: read, sendmsg with
 * MSG_NOSIGNAL, and a MSG_PEEK check that a pooled connection is still
 * usable. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_internal.h"

static ssize_t tcp_read(sp_hc_conn *c, void *buf, size_t len) {
    return sp_tcp_read(c->fd, buf, len);
}

static ssize_t tcp_writev(sp_hc_conn *c, const struct iovec *iov, int iovcnt) {
    return sp_tcp_writev(c->fd, iov, iovcnt);
}

/* An idle connection has nothing to read: a byte there is a FIN, a reset, or
 * something the upstream sent unasked (a 408 before closing), and in every
 * case the connection must not carry a request. */
static bool tcp_reusable(sp_hc_conn *c) {
    char b;
    for (;;) {
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && errno == EAGAIN;
    }
}

const sp_hc_transport sp_hc_tcp = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .reusable = tcp_reusable,
};
