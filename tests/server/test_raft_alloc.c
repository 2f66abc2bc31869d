/* test_raft_alloc.c: server/raft_alloc.h's posix_fallocate leaves written zeros, not unwritten
 * extents, and is the one libraft reaches.
 *
 * The extents are read with FIEMAP; a file system that has no FIEMAP (tmpfs) cannot show them,
 * and the test skips (77) there. The test binary links server/raft_alloc.o as tallyd does, and
 * libraft, so the last test checks that the definition the dynamic linker gives a shared library
 * asking for posix_fallocate is this one: what makes libraft's segments written in tallyd.
 */
#include "../support.h"
#include "../../server/raft_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXTENTS_MAX 64u

static char dir[64];
static char path[128];

/* Whether the file has an unwritten extent (or cannot be mapped: -1). */
static int has_unwritten(int fd, uint32_t *extents)
{
    size_t size = sizeof(struct fiemap) + EXTENTS_MAX * sizeof(struct fiemap_extent);
    struct fiemap *m = calloc(1, size);
    assert_non_null(m);
    m->fm_length = FIEMAP_MAX_OFFSET;
    m->fm_flags = FIEMAP_FLAG_SYNC;
    m->fm_extent_count = EXTENTS_MAX;
    int rc = ioctl(fd, FS_IOC_FIEMAP, m);
    int unwritten = 0;
    if (rc != 0) {
        unwritten = -1;
    } else {
        for (uint32_t i = 0; i < m->fm_mapped_extents; i++)
            unwritten |= (m->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) != 0;
        *extents = m->fm_mapped_extents;
    }
    free(m);
    return unwritten;
}

static int setup(void **state)
{
    (void)state;
    tmpdir_make(dir);
    snprintf(path, sizeof(path), "%s/segment", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tmpdir_remove(dir);
    return 0;
}

/* As libraft opens a segment: O_WRONLY | O_CREAT | O_EXCL | O_DSYNC. */
static int segment_open(void)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DSYNC, 0600);
    assert_true(fd >= 0);
    return fd;
}

static void test_a_segment_is_allocated_as_written_zeros(void **state)
{
    (void)state;
    int fd = segment_open();
    const off_t len = 8 << 20; /* raft_uv's segment size */
    assert_int_equal(posix_fallocate(fd, 0, len), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, len);
    assert_true(st.st_blocks * 512 >= len); /* blocks, not a hole */
    uint32_t extents = 0;
    int unwritten = has_unwritten(fd, &extents);
    if (unwritten < 0) {
        close(fd);
        skip(); /* no FIEMAP here (tmpfs) */
    }
    assert_int_equal(unwritten, 0);
    assert_true(extents > 0);
    /* And what is there reads as zeros, the last MiB as the first. */
    static uint8_t buf[RAFT_ALLOC_ZERO_CHUNK];
    static const uint8_t zero[RAFT_ALLOC_ZERO_CHUNK];
    assert_int_equal(pread(fd, buf, sizeof(buf), len - (off_t)sizeof(buf)), (ssize_t)sizeof(buf));
    assert_memory_equal(buf, zero, sizeof(buf));
    close(fd);
}

/* glibc's own posix_fallocate, for comparison: the same call leaves unwritten extents (ext4,
 * XFS), which is the whole reason for raft_alloc.c. If this ever stops being so, the module can
 * go. */
static void test_fallocate_alone_leaves_unwritten_extents(void **state)
{
    (void)state;
    int fd = segment_open();
    assert_int_equal(fallocate(fd, 0, 0, 1 << 20), 0);
    uint32_t extents = 0;
    int unwritten = has_unwritten(fd, &extents);
    close(fd);
    if (unwritten < 0)
        skip();
    assert_int_equal(unwritten, 1);
}

static void test_a_range_past_the_end_and_bad_arguments(void **state)
{
    (void)state;
    int fd = segment_open();
    assert_int_equal(pwrite(fd, "head", 4, 0), 4);
    assert_int_equal(posix_fallocate(fd, 4096, 3 * 4096 + 100), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 4096 + 3 * 4096 + 100);
    char head[4];
    assert_int_equal(pread(fd, head, 4, 0), 4);
    assert_memory_equal(head, "head", 4); /* outside the range: untouched */
    assert_int_equal(posix_fallocate(fd, -1, 10), EINVAL);
    assert_int_equal(posix_fallocate(fd, 0, 0), EINVAL);
    close(fd);
    assert_int_equal(posix_fallocate(fd, 0, 4096), EBADF); /* errno-style, errno untouched */
    int rd = open(path, O_RDONLY);
    assert_true(rd >= 0);
    assert_int_equal(posix_fallocate(rd, 0, 4096), EBADF); /* not open for writing */
    close(rd);
}

static void test_a_direct_descriptor_keeps_its_flags(void **state)
{
    (void)state;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
    assert_true(fd >= 0);
    int rc = posix_fallocate(fd, 0, 1 << 20);
    if (rc == EINVAL) { /* no O_DIRECT on this file system: nothing to check */
        close(fd);
        skip();
    }
    assert_int_equal(rc, 0);
    assert_true((fcntl(fd, F_GETFL) & O_DIRECT) != 0);
    close(fd);
}

/* What libraft (a shared library) finds when it asks for posix_fallocate. */
static void test_libraft_reaches_this_definition(void **state)
{
    (void)state;
    assert_non_null(raft_strerror(0)); /* libraft is loaded and linked */
    assert_interposed("posix_fallocate", (void *)posix_fallocate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_segment_is_allocated_as_written_zeros, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fallocate_alone_leaves_unwritten_extents, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_range_past_the_end_and_bad_arguments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_direct_descriptor_keeps_its_flags, setup,
                                        teardown),
        cmocka_unit_test(test_libraft_reaches_this_definition),
    };
    return cmocka_run_group_tests_name("raft_alloc", tests, NULL, NULL);
}
