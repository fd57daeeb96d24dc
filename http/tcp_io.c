/* Socket reads and writes shared by the server's and the client's TCP
 * transports: retried on EINTR, never raising SIGPIPE, failures folded into
 * the transport codes of transport.h. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

static ssize_t fail_code(void) {
    if (errno == EAGAIN)
        return SP_TP_AGAIN;
    return errno == EPIPE ? -EPIPE : -ECONNRESET;
}

ssize_t sp_tcp_read(int fd, void *buf, size_t len) {
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return fail_code();
    }
}

ssize_t sp_tcp_writev(int fd, const struct iovec *iov, int iovcnt) {
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    for (;;) {
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return fail_code();
    }
}
