/* Socket reads and writes shared by the server's and the client's TCP
 * transports: retried on EINTR, never raising SIGPIPE, failures folded into
 * the transport codes of transport.h.
 *
 * They call the kernel through syscall(2), not libc's read and sendmsg: those
 * are pthread cancellation points, and in a process with threads (the logger,
 * the offload pool) each call switches asynchronous cancellation on and off
 * around the system call. Spindle never cancels its threads, and the two
 * calls carry every byte of every request: measured 1.6% of a proxied
 * request's CPU (bench/RESULTS.md). */
#include <errno.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "transport.h"

static ssize_t fail_code(void) {
    if (errno == EAGAIN)
        return SP_TP_AGAIN;
    return errno == EPIPE ? -EPIPE : -ECONNRESET;
}

ssize_t sp_tcp_read(int fd, void *buf, size_t len) {
    for (;;) {
        ssize_t n = syscall(SYS_read, fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return fail_code();
    }
}

ssize_t sp_tcp_writev(int fd, const struct iovec *iov, int iovcnt) {
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    for (;;) {
        ssize_t n = syscall(SYS_sendmsg, fd, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return fail_code();
    }
}
