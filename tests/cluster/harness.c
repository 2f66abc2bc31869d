/* harness.c: the cluster tests' replicas and helpers (harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tally_wire.h"

struct cluster cl;

/* Whatever happens to the test (a failed assertion ends it early), no replica outlives it. */
void kill_replicas(void)
{
    for (unsigned i = 1; i <= N; i++) {
        if (cl.pid[i] > 0) {
            kill(cl.pid[i], SIGKILL);
            waitpid(cl.pid[i], NULL, 0);
            cl.pid[i] = 0;
        }
    }
}

const char *build_dir(void)
{
    const char *b = getenv("TALLY_BUILD");
    return b ? b : "build";
}

uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

unsigned metrics_port(unsigned i)
{
    return cl.base + 16 + i;
}

void replica_start(unsigned i)
{
    replica_start_env(i, NULL);
}

void replica_start_env(unsigned i, char *const *env)
{
    char tallyd[256], id[8], dir[128], log[160], peers[N][96], metrics[32];
    snprintf(tallyd, sizeof(tallyd), "%s/tallyd", build_dir());
    snprintf(id, sizeof(id), "%u", i);
    snprintf(dir, sizeof(dir), "%s/r%u", cl.dir, i);
    snprintf(log, sizeof(log), "%s/r%u.log", cl.dir, i);
    snprintf(metrics, sizeof(metrics), "127.0.0.1:%u", metrics_port(i));
    for (unsigned k = 1; k <= N; k++)
        snprintf(peers[k - 1], sizeof(peers[0]), "%u,127.0.0.1:%u,127.0.0.1:%u", k,
                 cl.base + 10 + k, cl.base + k);
    const char *io = getenv("TALLY_TEST_IO") ? getenv("TALLY_TEST_IO") : "auto";
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a replica never outlives its test */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        for (size_t k = 0; env != NULL && env[k] != NULL; k++)
            putenv(env[k]);
        char bind[32];
        snprintf(bind, sizeof(bind), "127.0.0.1:%u", cl.base + 13 + i);
        char *argv[32] = {tallyd, "--id", id, "--dir", dir, "--io", (char *)io,
                          "--election-timeout", "300", "--heartbeat", "50", "--tick", "200",
                          "--snapshot-trailing", "32", "--metrics", metrics,
                          "--peer", peers[0], "--peer", peers[1], "--peer", peers[2]};
        size_t n = 23;
        if (!cl.snapshot_default) {
            argv[n++] = "--snapshot-threshold";
            argv[n++] = "64";
        }
        if (cl.raft_proxied) {
            argv[n++] = "--raft-bind";
            argv[n++] = bind;
        }
        if (cl.clock != NULL) {
            argv[n++] = "--clock";
            argv[n++] = (char *)cl.clock;
        }
        if (getenv("TALLY_TEST_COMMIT_MS") != NULL) { /* make test's epoll pass: 0 */
            argv[n++] = "--commit-ms";
            argv[n++] = getenv("TALLY_TEST_COMMIT_MS");
        }
        argv[n] = NULL;
        execv(tallyd, argv);
        _exit(127);
    }
    cl.pid[i] = pid;
}

void replica_stop(unsigned i, int sig)
{
    if (cl.pid[i] <= 0)
        return;
    kill(cl.pid[i], sig);
    int status;
    waitpid(cl.pid[i], &status, 0);
    cl.pid[i] = 0;
    if (sig == SIGTERM && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        replica_report(i);
        fail_msg("replica %u did not stop cleanly on SIGTERM (status %d)", i, status);
    }
}

struct tally_client *client_of(const char *addresses)
{
    struct tally_client_options o;
    memset(&o, 0, sizeof(o));
    o.addresses = addresses;
    o.timeout_ms = 10000;
    struct tally_client *c;
    int rc = tally_client_open(&c, &o);
    if (rc != 0)
        fail_msg("tally_client_open(%s): %d %s", addresses, rc, tally_strerror(rc));
    return c;
}

/* For a failure's message: whether replica i still runs (or how it ended: it is then reaped),
 * the last warnings and errors its log holds since the current test's mark, and the start of a
 * sanitizer's report (a leak at exit makes a sanitized tallyd's exit status nonzero) or of a
 * failed assertion's message (an abort: status 6, or 134 with a core). */
void replica_report(unsigned i)
{
    int status = 0;
    if (cl.pid[i] <= 0)
        fprintf(stderr, "replica %u: not running\n", i);
    else if (waitpid(cl.pid[i], &status, WNOHANG) == cl.pid[i]) {
        fprintf(stderr, "replica %u: ended (%s %d)\n", i, WIFSIGNALED(status) ? "signal" : "exit",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        cl.pid[i] = 0;
    } else
        fprintf(stderr, "replica %u: running, pid %d\n", i, (int)cl.pid[i]);
    char path[160], line[600];
    snprintf(path, sizeof(path), "%s/r%u.log", cl.dir, i);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    enum { KEEP = 8, REPORT = 16 };
    static char last[KEEP][600];
    unsigned nlast = 0, nreport = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "---- test ", 10) == 0) {
            nlast = 0;
        } else if (nreport > 0 || strstr(line, "Sanitizer") != NULL ||
                   strstr(line, "Assertion `") != NULL) {
            if (nreport++ < REPORT)
                fprintf(stderr, "  r%u| %s", i, line);
        } else if (strstr(line, "level=warn") != NULL || strstr(line, "level=error") != NULL) {
            snprintf(last[nlast++ % KEEP], sizeof(last[0]), "%s", line);
        }
    }
    fclose(f);
    for (unsigned k = nlast > KEEP ? nlast - KEEP : 0; k < nlast; k++)
        fprintf(stderr, "  r%u: %s", i, last[k % KEEP]);
}

void cluster_report(void)
{
    for (unsigned i = 1; i <= N; i++)
        replica_report(i);
}

/* Wait until every running replica has applied the same index with the same digest. */
void wait_converged(struct tally_client *c, uint64_t timeout_ms)
{
    uint64_t end = mono_ms() + timeout_ms;
    struct tally_replica_status st[N];
    for (;;) {
        uint32_t n = 0;
        int rc = tally_client_status(c, st, N, &n, 2000);
        bool same = rc == 0 && n == N;
        for (uint32_t i = 0; same && i < n; i++) {
            same = st[i].error == 0 && st[i].applied_index == st[0].applied_index &&
                   memcmp(st[i].digest, st[0].digest, 16) == 0;
        }
        if (same)
            return;
        if (mono_ms() > end) {
            for (uint32_t i = 0; i < n; i++)
                fprintf(stderr, "replica %s: error %d role %u applied %llu\n", st[i].address,
                        st[i].error, st[i].role, (unsigned long long)st[i].applied_index);
            cluster_report();
            fail_msg("replicas did not converge within %llu ms", (unsigned long long)timeout_ms);
        }
        usleep(50000);
    }
}

void post_ok(struct tally_client *c, const struct tally_posting *p, uint32_t n)
{
    struct tally_result r[64];
    assert_true(n <= 64);
    int rc = tally_client_post(c, p, n, r, 10000);
    if (rc != 0)
        fail_msg("tally_client_post: %d %s", rc, tally_strerror(rc));
    for (uint32_t i = 0; i < n; i++)
        if (r[i].code != TALLY_OK && r[i].code != TALLY_EXISTS)
            fail_msg("posting %u: %s", i, tally_result_name(r[i].code));
}

int64_t available(struct tally_client *c, uint64_t member)
{
    struct tally_account a;
    int rc = tally_client_account(c, 1, member, &a, NULL);
    if (rc != 0)
        fail_msg("account %llu: %d %s", (unsigned long long)member, rc, tally_strerror(rc));
    return a.available;
}

void cluster_up(void)
{
    tmpdir_make(cl.dir);
    /* Below Linux's ephemeral range (32768 and up), where the replicas' own outgoing connections
     * take their source ports and could hold one of ours when a replica restarts. */
    cl.base = 20000 + (unsigned)(getpid() % 600) * 20;
    for (unsigned i = 1; i <= N; i++) {
        snprintf(cl.client_addr[i], sizeof(cl.client_addr[i]), "127.0.0.1:%u", cl.base + i);
        replica_start(i);
    }
    snprintf(cl.clients, sizeof(cl.clients), "%s,%s,%s", cl.client_addr[1], cl.client_addr[2],
             cl.client_addr[3]);
}

void cluster_down(void)
{
    for (unsigned i = 1; i <= N; i++)
        replica_stop(i, SIGTERM);
}

/* ---- raw frames, for retries and bad input ----------------------------------------------------- */

int raw_connect(const char *address)
{
    char host[64];
    snprintf(host, sizeof(host), "%s", address);
    char *colon = strrchr(host, ':');
    assert_non_null(colon);
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        fail_msg("connect %s failed", address);
    return fd;
}

void raw_send(int fd, const void *bytes, size_t n)
{
    const uint8_t *p = bytes;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may close on bad input: the test checks that */
        p += w;
        n -= (size_t)w;
    }
}

/* Read exactly n bytes within timeout_ms: 1 done, 0 closed by the peer, -1 timeout. */
int raw_read(int fd, void *bytes, size_t n, int timeout_ms)
{
    uint8_t *p = bytes;
    uint64_t end = mono_ms() + (uint64_t)timeout_ms;
    while (n > 0) {
        uint64_t now = mono_ms();
        if (now >= end)
            return -1;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(end - now)) <= 0)
            continue;
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return 0;
        p += r;
        n -= (size_t)r;
    }
    return 1;
}

/* Send one request frame and read its reply (header and body into body_out). */
uint16_t raw_call(int fd, uint16_t op, const uint8_t id[16], uint64_t request,
                         const void *body, uint32_t size, void *body_out, uint32_t out_max)
{
    struct tally_wire_header h;
    tally_wire_header_init(&h, op, id, request);
    h.body_size = size;
    tally_wire_header_seal(&h, body);
    raw_send(fd, &h, sizeof(h));
    raw_send(fd, body, size);
    struct tally_wire_header r;
    if (raw_read(fd, &r, sizeof(r), 10000) != 1)
        fail_msg("no reply to op %u", op);
    assert_true(r.body_size <= out_max);
    if (r.body_size > 0 && raw_read(fd, body_out, r.body_size, 10000) != 1)
        fail_msg("truncated reply body");
    assert_int_equal(r.request, request);
    return r.status;
}

const char *leader_address(struct tally_client *c)
{
    static char addr[64];
    for (int tries = 0; tries < 100; tries++) {
        struct tally_replica_status st[N];
        uint32_t n = 0;
        if (tally_client_status(c, st, N, &n, 2000) == 0) {
            for (uint32_t i = 0; i < n; i++) {
                if (st[i].error == 0 && st[i].role == TALLY_WIRE_ROLE_LEADER) {
                    snprintf(addr, sizeof(addr), "%s", st[i].address);
                    return addr;
                }
            }
        }
        usleep(50000);
    }
    fail_msg("no leader");
    return NULL;
}

/* Mark the start of a test in every replica's log (their logs are kept on failure with
 * TALLY_TEST_KEEP=1). */
void mark_logs(const char *test)
{
    for (unsigned i = 1; i <= N; i++) {
        char path[160];
        snprintf(path, sizeof(path), "%s/r%u.log", cl.dir, i);
        FILE *f = fopen(path, "a");
        if (f != NULL) {
            fprintf(f, "---- test %s (replica %u: pid %d)\n", test, i, (int)cl.pid[i]);
            fclose(f);
        }
    }
}

/* ---- the tests ---------------------------------------------------------------------------------- */

/* How many times replica i logged `event`. */
unsigned log_count(unsigned i, const char *event)
{
    char path[160], line[1024], want[64];
    snprintf(path, sizeof(path), "%s/r%u.log", cl.dir, i);
    snprintf(want, sizeof(want), "event=%s ", event);
    FILE *f = fopen(path, "r");
    unsigned n = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, want) != NULL;
    if (f != NULL)
        fclose(f);
    return n;
}

/* One HTTP/1.0 exchange with replica i's metrics port: the status code, the body in out. */
int http(unsigned i, const char *method, const char *path, char *out, size_t size)
{
    char addr[32], req[128];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", metrics_port(i));
    int fd = raw_connect(addr);
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\n\r\n", method, path);
    raw_send(fd, req, (size_t)n);
    size_t got = 0;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (got + 1 >= size || poll(&pf, 1, 5000) <= 0)
            break;
        ssize_t r = recv(fd, out + got, size - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    out[got] = '\0';
    int code = 0;
    if (sscanf(out, "HTTP/1.%*d %d", &code) != 1)
        fail_msg("not an HTTP reply from replica %u: %.80s", i, out);
    const char *body = strstr(out, "\r\n\r\n");
    if (body != NULL)
        memmove(out, body + 4, strlen(body + 4) + 1);
    return code;
}

/* Where the value of metric `name` starts in a /metrics body (fails the test if it is absent). */
static const char *metric_value(const char *body, const char *name)
{
    char want[96];
    snprintf(want, sizeof(want), "\n%s ", name);
    const char *p = strstr(body, want);
    if (p == NULL)
        fail_msg("metric %s missing", name);
    return p + strlen(want);
}

uint64_t metric(const char *body, const char *name)
{
    return strtoull(metric_value(body, name), NULL, 10);
}

double metric_real(const char *body, const char *name)
{
    return strtod(metric_value(body, name), NULL);
}

void cluster_verify_and_remove(void)
{
    cluster_down();
    /* The ledgers of every replica verify independently. */
    for (unsigned i = 1; i <= N; i++) {
        char ledger[128];
        snprintf(ledger, sizeof(ledger), "%s/r%u/ledger", cl.dir, i);
        struct audit_report rep;
        memset(&rep, 0, sizeof(rep));
        if (audit_verify(ledger, &rep) != 0 || !rep.ok)
            fail_msg("tally-audit verify of replica %u: %s", i, rep.what);
    }
    if (getenv("TALLY_TEST_KEEP") == NULL)
        tmpdir_remove(cl.dir);
    else
        fprintf(stderr, "kept %s\n", cl.dir);
}

bool harness_ready(const char *program)
{
    char tallyd[256];
    snprintf(tallyd, sizeof(tallyd), "%s/tallyd", build_dir());
    if (access(tallyd, X_OK) != 0) {
        fprintf(stderr, "%s: %s not built: skipped\n", program, tallyd);
        return false;
    }
    atexit(kill_replicas);
    return true;
}

int harness_teardown(struct tally_client *admin)
{
    tally_client_close(admin);
    cluster_verify_and_remove();
    return 0;
}
