/* conn.c: TCP connections with deadlines (see conn.h). */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_MS UINT64_C(1000000)

uint64_t conn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

uint64_t conn_deadline_ms(uint64_t ms)
{
    uint64_t now = conn_now_ns();
    if (ms > (UINT64_MAX - now) / NS_PER_MS)
        return UINT64_MAX;
    return now + ms * NS_PER_MS;
}

void conn_sleep_ms(uint64_t ms, uint64_t deadline_ns)
{
    uint64_t until = conn_deadline_ms(ms);
    if (until > deadline_ns)
        until = deadline_ns;
    struct timespec ts = {.tv_sec = (time_t)(until / UINT64_C(1000000000)),
                          .tv_nsec = (long)(until % UINT64_C(1000000000))};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

void conn_init(struct conn *cn)
{
    memset(cn, 0, sizeof(*cn));
    cn->fd = -1;
}

/* Wait until fd is ready for `events` (or has an error to report), or the deadline passes. */
static int conn_wait(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = conn_now_ns();
        if (now >= deadline_ns)
            return TALLY_ETIMEOUT;
        uint64_t ms = (deadline_ns - now + NS_PER_MS - 1) / NS_PER_MS;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (n > 0)
            return 0; /* ready, or POLLERR/POLLHUP: the next call reports which */
        if (n < 0 && errno != EINTR)
            return TALLY_ECLOSED;
    }
}

/* One connect attempt to one resolved address. */
static int conn_try(const struct addrinfo *ai, uint64_t deadline_ns, int *fd_out)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TALLY_ECLOSED;
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS && errno != EINTR)
            rc = TALLY_ECLOSED;
        else if ((rc = conn_wait(fd, POLLOUT, deadline_ns)) == 0) {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
                rc = TALLY_ECLOSED;
        }
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *fd_out = fd;
    return 0;
}

int conn_open(struct conn *cn, const struct addr *address, uint64_t deadline_ns)
{
    char host[ADDR_HOST_SIZE], port[ADDR_PORT_SIZE];
    conn_close(cn);
    if (addr_split(address->text, host, port) != 0)
        return TALLY_ECONFIG;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return TALLY_ECLOSED;
    int rc = TALLY_ECLOSED;
    for (const struct addrinfo *ai = res; ai != NULL && rc == TALLY_ECLOSED; ai = ai->ai_next)
        rc = conn_try(ai, deadline_ns, &cn->fd);
    freeaddrinfo(res);
    if (rc == 0)
        cn->peer = *address;
    return rc;
}

int conn_send(struct conn *cn, const void *bytes, size_t size, uint64_t deadline_ns)
{
    const uint8_t *p = bytes;
    while (size > 0) {
        ssize_t n = send(cn->fd, p, size, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            size -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return TALLY_ECLOSED;
        int rc = conn_wait(cn->fd, POLLOUT, deadline_ns);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int conn_recv(struct conn *cn, void *bytes, size_t size, uint64_t deadline_ns)
{
    uint8_t *p = bytes;
    while (size > 0) {
        ssize_t n = recv(cn->fd, p, size, 0);
        if (n > 0) {
            p += n;
            size -= (size_t)n;
            continue;
        }
        if (n == 0)
            return TALLY_ECLOSED; /* the peer closed the connection */
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return TALLY_ECLOSED;
        int rc = conn_wait(cn->fd, POLLIN, deadline_ns);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void conn_close(struct conn *cn)
{
    if (cn->fd >= 0)
        close(cn->fd);
    cn->fd = -1;
}
