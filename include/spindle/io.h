/* Waiting for file descriptors: the one I/O primitive under Spindle's
 * sockets, pipes and offload notifications. */
#ifndef SPINDLE_IO_H
#define SPINDLE_IO_H

enum { SP_IO_READ = 1, SP_IO_WRITE = 2 };

/* Suspends the calling task until fd is ready for `events` (SP_IO_READ,
 * SP_IO_WRITE or both), at most `timeout` seconds (negative: no limit).
 * fd stays owned by the caller and should be non-blocking. Returns 0 when
 * ready, -ETIMEDOUT, -ECANCELED, -EINVAL for a bad fd or events, -EPERM
 * outside a task. Suspends. */
int sp_io_wait(int fd, int events, double timeout);

/* Makes fd non-blocking and close-on-exec. Returns 0 or -errno. */
int sp_fd_set_nonblocking(int fd);

#endif
