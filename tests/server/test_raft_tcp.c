/* test_raft_tcp.c: server/raft_tcp.h: the streams raft_uv's TCP transport delivers have
 * TCP_NODELAY set once the wrapper is installed, on both ends, and everything else passes
 * through; without it (libraft's own transport) they do not, which is why it exists.
 *
 * Two real raft_uv_tcp transports on one libuv loop, on loopback: one listens, the other
 * connects to it (the transport's handshake included), each end reads the option off its
 * socket. Every wait is bounded by a 5 s timer.
 */
#include "../support.h"
#include "../../server/raft_tcp.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

struct pair {
    uv_loop_t loop;
    uv_timer_t timeout;
    struct raft_uv_transport listener, connector;
    struct raft_uv_connect req;
    struct uv_stream_s *accepted, *connected;
    raft_id accepted_id;
    int connect_status;
    bool connect_done, timed_out;
    int closing;
};

static struct pair *the_pair; /* the accept callback has only the transport */

/* A loopback port nothing listens on now (bound to port 0 and released). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int nodelay_of(struct uv_stream_s *stream)
{
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno((uv_handle_t *)stream, &fd), 0);
    int on = -1;
    socklen_t len = sizeof(on);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    return on;
}

static void accept_cb(struct raft_uv_transport *t, raft_id id, const char *address,
                      struct uv_stream_s *stream)
{
    (void)t;
    (void)address;
    the_pair->accepted = stream;
    the_pair->accepted_id = id;
}

static void connect_cb(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    struct pair *p = req->data;
    p->connected = stream;
    p->connect_status = status;
    p->connect_done = true;
}

static void timeout_cb(uv_timer_t *t)
{
    struct pair *p = t->data;
    p->timed_out = true;
}

/* Run the loop until cond holds or the 5 s timer fires. */
static void run_until(struct pair *p, bool (*cond)(const struct pair *))
{
    p->timed_out = false;
    uv_timer_start(&p->timeout, timeout_cb, 5000, 0);
    while (!cond(p) && !p->timed_out)
        uv_run(&p->loop, UV_RUN_ONCE);
    uv_timer_stop(&p->timeout);
    assert_false(p->timed_out);
}

static bool both_ends(const struct pair *p)
{
    return p->connect_done && p->accepted != NULL;
}

static bool all_closed(const struct pair *p)
{
    return p->closing == 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct pair *p = h->data;
    p->closing--;
    free(h);
}

static void transport_closed(struct raft_uv_transport *t)
{
    the_pair->closing--;
    (void)t;
}

static struct pair *pair_new(void)
{
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    the_pair = p;
    assert_int_equal(uv_loop_init(&p->loop), 0);
    uv_timer_init(&p->loop, &p->timeout);
    p->timeout.data = p;
    p->req.data = p;
    return p;
}

/* Close the transports given (already closing their streams), then the loop. */
static void pair_free(struct pair *p, struct raft_uv_transport *t[], int n)
{
    p->closing += n;
    for (int i = 0; i < n; i++)
        t[i]->close(t[i], transport_closed);
    run_until(p, all_closed);
    for (int i = 0; i < n; i++)
        raft_uv_tcp_close(t[i]);
    uv_close((uv_handle_t *)&p->timeout, NULL);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
    free(p);
    the_pair = NULL;
}

/* Connect one transport to the other; with_nodelay installs the wrapper on both first. Returns
 * the option as each end sees it: accepted end in *on_accepted, connecting end in *on_connected. */
static void connect_pair(bool with_nodelay, int *on_accepted, int *on_connected)
{
    struct pair *p = pair_new();
    assert_int_equal(raft_uv_tcp_init(&p->listener, &p->loop), 0);
    assert_int_equal(raft_uv_tcp_init(&p->connector, &p->loop), 0);
    if (with_nodelay) {
        raft_tcp_nodelay_install(&p->listener);
        raft_tcp_nodelay_install(&p->connector);
        raft_tcp_nodelay_install(&p->connector); /* a second install changes nothing */
    }
    char a1[32], a2[32];
    snprintf(a1, sizeof(a1), "127.0.0.1:%u", free_port());
    snprintf(a2, sizeof(a2), "127.0.0.1:%u", free_port());
    assert_int_equal(p->listener.init(&p->listener, 1, a1), 0);
    assert_int_equal(p->connector.init(&p->connector, 2, a2), 0);
    assert_int_equal(p->listener.listen(&p->listener, accept_cb), 0);
    assert_int_equal(p->connector.connect(&p->connector, &p->req, 1, a1, connect_cb), 0);
    run_until(p, both_ends);
    assert_int_equal(p->connect_status, 0);
    assert_non_null(p->connected);
    assert_int_equal(p->accepted_id, 2); /* the handshake passed through unchanged */
    *on_accepted = nodelay_of(p->accepted);
    *on_connected = nodelay_of(p->connected);

    p->accepted->data = p->connected->data = p;
    p->closing = 2;
    uv_close((uv_handle_t *)p->accepted, handle_closed);
    uv_close((uv_handle_t *)p->connected, handle_closed);
    pair_free(p, (struct raft_uv_transport *[]){&p->listener, &p->connector}, 2);
}

static void test_libraft_leaves_nagle_on(void **state)
{
    (void)state;
    int on[2];
    connect_pair(false, &on[0], &on[1]);
    assert_true(on[0] == 0 && on[1] == 0);
}

static void test_the_wrapper_turns_it_off_on_both_ends(void **state)
{
    (void)state;
    int on[2];
    connect_pair(true, &on[0], &on[1]);
    assert_true(on[0] != 0 && on[1] != 0);
}

static void test_a_failed_connect_is_passed_on(void **state)
{
    (void)state;
    struct pair *p = pair_new();
    assert_int_equal(raft_uv_tcp_init(&p->connector, &p->loop), 0);
    raft_tcp_nodelay_install(&p->connector);
    char self[32], nobody[32];
    snprintf(self, sizeof(self), "127.0.0.1:%u", free_port());
    snprintf(nobody, sizeof(nobody), "127.0.0.1:%u", free_port()); /* nothing listens */
    assert_int_equal(p->connector.init(&p->connector, 2, self), 0);
    int rc = p->connector.connect(&p->connector, &p->req, 1, nobody, connect_cb);
    if (rc == 0) {
        p->accepted = (struct uv_stream_s *)1; /* both_ends then waits for the connect alone */
        run_until(p, both_ends);
        assert_int_not_equal(p->connect_status, 0);
    }
    pair_free(p, (struct raft_uv_transport *[]){&p->connector}, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libraft_leaves_nagle_on),
        cmocka_unit_test(test_the_wrapper_turns_it_off_on_both_ends),
        cmocka_unit_test(test_a_failed_connect_is_passed_on),
    };
    return cmocka_run_group_tests_name("raft_tcp", tests, NULL, NULL);
}
