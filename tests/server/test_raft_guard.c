/* test_raft_guard.c: server/raft_guard.h rewrites what it says it rewrites, and nothing else.
 *
 * The guard sits between a raft_io and libraft. Here the raft_io is a double that records what
 * the guard hands it (the receive callback it installs, the messages it sends) and answers sends
 * as told; libraft's side is a struct raft with only the fields the guard reads set (log offset
 * and snapshot). The three defects themselves, with the real libraft, are reproduced by the
 * simulation (tests/sim/defects.sh); this test pins the rewriting rules down.
 */
#include "../support.h"
#include "../../server/raft_guard.h"

#include <string.h>

static raft_io_recv_cb guarded_recv;     /* what the guard gave the io's start */
static struct raft_message received;     /* what reached libraft's receive callback */
static unsigned nreceived;
static struct raft_message sent;         /* what the guard passed to the io's send */
static int send_answer;                  /* what the io's send returns */
static int send_cb_status = -1;          /* what the send callback got */

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    (void)io, (void)msecs, (void)tick;
    guarded_recv = recv;
    return 0;
}

static int io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                   raft_io_send_cb cb)
{
    (void)io, (void)req, (void)cb;
    sent = *m;
    return send_answer;
}

static raft_io_close_cb close_given; /* what the guard gave the io's close */

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
    (void)io;
    close_given = cb;
}

static unsigned closes_seen; /* how often libraft's close callback ran */

static void raft_closed(struct raft_io *io)
{
    (void)io;
    closes_seen++;
}

static void raft_recv(struct raft_io *io, struct raft_message *m)
{
    (void)io;
    received = *m;
    nreceived++;
}

static void send_cb(struct raft_io_send *req, int status)
{
    (void)req;
    send_cb_status = status;
}

static struct raft_io io;
static struct raft r;

/* A follower whose log starts after index 10 and whose snapshot ends at 15 (term 3). */
static int setup(void **state)
{
    (void)state;
    memset(&io, 0, sizeof(io));
    memset(&r, 0, sizeof(r));
    io.start = io_start;
    io.send = io_send;
    io.close = io_close;
    io.data = &r;
    close_given = NULL;
    closes_seen = 0;
    r.log.offset = 10;
    r.log.snapshot.last_index = 15;
    r.log.snapshot.last_term = 3;
    nreceived = 0;
    send_answer = 0;
    send_cb_status = -1;
    assert_int_equal(raft_guard_install(&io), 0);
    assert_int_equal(io.start(&io, 100, NULL, raft_recv), 0);
    assert_non_null(guarded_recv);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    raft_guard_remove(&io);
    assert_ptr_equal(io.start, io_start); /* the io is as it was */
    assert_ptr_equal(io.send, io_send);
    assert_ptr_equal(io.close, io_close);
    return 0;
}

/* Entries 1..n of one batch, entry i of term (i <= 12 ? 2 : 3). */
static struct raft_message append_from_1(unsigned n)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_IO_APPEND_ENTRIES;
    m.append_entries.term = 3;
    m.append_entries.prev_log_index = 0;
    m.append_entries.leader_commit = 18;
    m.append_entries.n_entries = n;
    m.append_entries.entries = raft_malloc(n * sizeof(struct raft_entry));
    uint8_t *batch = raft_malloc(8 * n);
    for (unsigned i = 0; i < n; i++) {
        struct raft_entry *e = &m.append_entries.entries[i];
        memset(e, 0, sizeof(*e));
        e->term = i + 1 <= 12 ? 2 : 3;
        e->type = RAFT_COMMAND;
        e->buf.base = batch + 8 * i;
        e->buf.len = 8;
        memset(e->buf.base, (int)(i + 1), 8);
        e->batch = batch;
    }
    return m;
}

static void release(struct raft_message *m)
{
    if (m->append_entries.n_entries > 0)
        raft_free(m->append_entries.entries[0].batch);
    raft_free(m->append_entries.entries);
}

static void test_entries_inside_the_snapshot_are_dropped(void **state)
{
    (void)state;
    struct raft_message m = append_from_1(20);
    guarded_recv(&io, &m);
    assert_int_equal(nreceived, 1);
    struct raft_append_entries *a = &received.append_entries;
    assert_int_equal(a->prev_log_index, 15);
    assert_int_equal(a->prev_log_term, 3); /* entry 15's term, as the leader sent it */
    assert_int_equal(a->n_entries, 5);
    for (unsigned i = 0; i < 5; i++) /* entries 16..20, their bytes untouched */
        assert_int_equal(((uint8_t *)a->entries[i].buf.base)[0], 16 + i);
    assert_int_equal(a->leader_commit, 18);
    release(&received);
    struct raft_guard_stats st;
    raft_guard_stats(&io, &st);
    assert_int_equal(st.appends_rewritten, 1);
}

static void test_a_message_wholly_inside_the_snapshot_becomes_a_heartbeat(void **state)
{
    (void)state;
    struct raft_message m = append_from_1(12);
    guarded_recv(&io, &m);
    struct raft_append_entries *a = &received.append_entries;
    assert_int_equal(a->prev_log_index, 15);
    assert_int_equal(a->prev_log_term, 3); /* the snapshot's own term */
    assert_int_equal(a->n_entries, 0);
    assert_null(a->entries);
}

static void test_other_messages_pass_untouched(void **state)
{
    (void)state;
    /* A follower that never compacted its log: the message is fine as it is. */
    r.log.offset = 0;
    struct raft_message m = append_from_1(4);
    guarded_recv(&io, &m);
    assert_int_equal(received.append_entries.prev_log_index, 0);
    assert_int_equal(received.append_entries.n_entries, 4);
    release(&received);
    /* An AppendEntries that starts past index 1 is libraft's to check. */
    r.log.offset = 10;
    m = append_from_1(4);
    m.append_entries.prev_log_index = 16;
    guarded_recv(&io, &m);
    assert_int_equal(received.append_entries.prev_log_index, 16);
    assert_int_equal(received.append_entries.n_entries, 4);
    release(&received);
    struct raft_guard_stats st;
    raft_guard_stats(&io, &st);
    assert_int_equal(st.appends_rewritten, 0);
}

static void test_a_refused_send_is_reported_through_its_callback(void **state)
{
    (void)state;
    struct raft_io_send req;
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_IO_REQUEST_VOTE;
    send_answer = RAFT_NOCONNECTION;
    assert_int_equal(io.send(&io, &req, &m, send_cb), 0); /* never refused synchronously */
    assert_int_equal(send_cb_status, -1);                  /* nor answered inside the call */
    raft_guard_flush(&io);
    assert_int_equal(send_cb_status, RAFT_NOCONNECTION);
    send_cb_status = -1;
    raft_guard_flush(&io); /* once */
    assert_int_equal(send_cb_status, -1);
    send_answer = 0;
    assert_int_equal(io.send(&io, &req, &m, send_cb), 0);
    raft_guard_flush(&io);
    assert_int_equal(send_cb_status, -1); /* an accepted send is the io's to complete */
}

static void test_an_answer_below_our_snapshot_is_raised_to_it(void **state)
{
    (void)state;
    struct raft_io_send req;
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_IO_APPEND_ENTRIES_RESULT;
    m.append_entries_result.rejected = 0;
    m.append_entries_result.last_log_index = 12; /* an InstallSnapshot of 12 answered */
    assert_int_equal(io.send(&io, &req, &m, send_cb), 0);
    assert_int_equal(sent.append_entries_result.last_log_index, 15);
    assert_int_equal(m.append_entries_result.last_log_index, 12); /* the caller's is untouched */
    /* A rejection, or an answer at or past the snapshot, goes as it is. */
    m.append_entries_result.rejected = 12;
    assert_int_equal(io.send(&io, &req, &m, send_cb), 0);
    assert_int_equal(sent.append_entries_result.last_log_index, 12);
    m.append_entries_result.rejected = 0;
    m.append_entries_result.last_log_index = 17;
    assert_int_equal(io.send(&io, &req, &m, send_cb), 0);
    assert_int_equal(sent.append_entries_result.last_log_index, 17);
}

/* raft_uv runs its close callback again when a close path it does not track finishes late
 * (defect 4): libraft must see it once. */
static void test_the_close_callback_reaches_libraft_once(void **state)
{
    (void)state;
    io.close(&io, raft_closed);
    assert_non_null(close_given);
    assert_int_equal(closes_seen, 0); /* closing is the io's to finish */
    close_given(&io);
    assert_int_equal(closes_seen, 1);
    close_given(&io); /* a segment writer's close finished after it */
    close_given(&io);
    assert_int_equal(closes_seen, 1);
    struct raft_guard_stats st;
    raft_guard_stats(&io, &st);
    assert_int_equal(st.closes_swallowed, 2);
    /* Started again and closed again (the simulation restarts replicas): once more. */
    io.close(&io, raft_closed);
    close_given(&io);
    close_given(&io);
    assert_int_equal(closes_seen, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_entries_inside_the_snapshot_are_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_message_wholly_inside_the_snapshot_becomes_a_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_messages_pass_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_refused_send_is_reported_through_its_callback,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_answer_below_our_snapshot_is_raised_to_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_the_close_callback_reaches_libraft_once, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("raft_guard", tests, NULL, NULL);
}
