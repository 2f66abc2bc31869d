/* members.c: the in-memory write-back cache of member records, with undo.
 *
 * Why: see storage.h ("Members: write-back and recovery"). A member record (the account and its
 * open lots) is read and changed in memory; the entries of a batch are what make its changes
 * durable; the write-back sweep (store.c) puts dirty images into the `members` B-tree now and
 * then, and recovery (fold.c) rebuilds what a crash left unwritten.
 *
 * Invariants
 *   - The logical state of a member is its cached image if cached, else its `members` value.
 *     A dirty image (not yet written back) is never evicted.
 *   - At the end of every batch the state sum holds store_sum_term(tag, key, image) of each member's
 *     image as of that batch (m->hash_lo/hi).
 *   - Undo: the first change to a member within an undo scope pushes its before-image (with its
 *     counted hash and flags). Aborting a linked chain pops back to the chain's mark; aborting a
 *     batch pops everything. A member created in the scope is removed again.
 *
 * Limits: the cache has `capacity` slots, allocated at open (calloc: untouched until used). When
 * a batch finds no free slot it fails with ENGINE_ECACHE_FULL; the engine aborts it, checkpoints,
 * empties the cache of clean members and runs the batch again (the same path as MDB_MAP_FULL).
 * Images grow with a member's lots; their buffers are allocated with the member and grown by
 * doubling (bounded by STORE_MEMBER_MAX), the one allocation on the apply path, amortised to
 * almost never.
 *
 * Memory: a member lookup is a few dependent loads at random addresses in hundreds of MiB (bucket
 * head, slot, image), and with 4 KiB pages each of them also misses the TLB. So the slot and
 * bucket arrays, and the images, live in memory the kernel may back with 2 MiB pages
 * (madvise(MADV_HUGEPAGE): transparent huge pages, where the system allows them). Images come
 * from a process-wide heap of power-of-two size classes carved from 64 MiB regions; a freed image
 * goes to its class's free list for the next image of that size, and the regions are never
 * returned to the system (the cache's memory is bounded by its capacity anyway). Measured in
 * docs/BENCHMARKS.md. Under AddressSanitizer images come from malloc, so that an overrun is caught.
 */
#include "members.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hash.h"
#include "internal.h"

/* Chains and the free list hold slot index + 1, so that 0 (calloc's zero pages, never touched
 * until used) means "none". Slots above high_water have never been used. */
#define NIL 0u

struct undo {
    uint32_t slot;
    uint32_t size;     /* bytes of the before-image that follow (0: the member was created) */
    uint64_t scope;    /* the slot's undo_scope before this record */
    uint64_t hash_lo;  /* the slot's counted hash before (the batch end replaces it) */
    uint64_t hash_hi;
    uint32_t flags;    /* the slot's flags before */
    uint32_t reserved;
};

/* ---- memory ----------------------------------------------------------------------------------- */

/* Zeroed memory for a large array, backed by huge pages where the system allows. */
static void *big_zalloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, size, MADV_HUGEPAGE); /* a hint: EINVAL where THP is not built in */
    return p;
}

static void big_free(void *p, size_t size)
{
    if (p != NULL)
        munmap(p, size);
}

#if defined(__SANITIZE_ADDRESS__)
#define MEMBERS_BLOB_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEMBERS_BLOB_MALLOC 1
#endif
#endif

#define BLOB_MIN_SHIFT 9u                   /* 512 bytes: an account and four lots */
#define BLOB_CLASSES 10u                    /* 512 B .. 256 KiB */
#define BLOB_REGION ((size_t)64 << 20)
_Static_assert(((size_t)1 << (BLOB_MIN_SHIFT + BLOB_CLASSES - 1)) >= STORE_MEMBER_MAX,
               "the largest class holds the largest image");

#ifndef MEMBERS_BLOB_MALLOC
static struct {
    pthread_mutex_t lock;
    uint8_t *next; /* the unused rest of the newest region */
    size_t left;
    void *free[BLOB_CLASSES]; /* a freed image holds the next one's address in its first bytes */
} blob_heap = {.lock = PTHREAD_MUTEX_INITIALIZER};

static unsigned blob_class(uint32_t cap)
{
    unsigned k = 0;
    while (((uint32_t)1 << (BLOB_MIN_SHIFT + k)) < cap)
        k++;
    return k;
}
#endif

static void blob_free(void *b, uint32_t cap)
{
    if (b == NULL)
        return;
#ifdef MEMBERS_BLOB_MALLOC
    (void)cap;
    free(b);
#else
    unsigned k = blob_class(cap);
    pthread_mutex_lock(&blob_heap.lock);
    memcpy(b, &blob_heap.free[k], sizeof(void *));
    blob_heap.free[k] = b;
    pthread_mutex_unlock(&blob_heap.lock);
#endif
}

/* A buffer of cap bytes, a power of two from 512 on. */
static uint8_t *blob_alloc(uint32_t cap)
{
#ifdef MEMBERS_BLOB_MALLOC
    return malloc(cap);
#else
    unsigned k = blob_class(cap);
    uint8_t *b = NULL;
    pthread_mutex_lock(&blob_heap.lock);
    if (blob_heap.free[k] != NULL) {
        b = blob_heap.free[k];
        memcpy(&blob_heap.free[k], b, sizeof(void *));
    } else {
        if (blob_heap.left < cap) { /* the rest of the old region stays unused: at most 256 KiB */
            uint8_t *r = big_zalloc(BLOB_REGION);
            if (r != NULL) {
                blob_heap.next = r;
                blob_heap.left = BLOB_REGION;
            }
        }
        if (blob_heap.left >= cap) {
            b = blob_heap.next;
            blob_heap.next += cap;
            blob_heap.left -= cap;
        }
    }
    pthread_mutex_unlock(&blob_heap.lock);
    return b;
#endif
}

static uint32_t bucket_of(const struct members *c, uint64_t slot)
{
    return (uint32_t)(slot >> c->shift);
}

int members_init(struct members *c, uint32_t capacity)
{
    memset(c, 0, sizeof(*c));
    uint32_t buckets = 2;
    unsigned bits = 1;
    while (buckets < capacity * 2u) {
        buckets <<= 1;
        bits++;
    }
    c->capacity = capacity;
    c->buckets = buckets;
    c->shift = 64 - bits;
    c->slots = big_zalloc(capacity * sizeof(*c->slots));
    c->heads = big_zalloc(buckets * sizeof(*c->heads));
    c->changed = malloc(capacity * sizeof(*c->changed));
    c->written = malloc(capacity * sizeof(*c->written));
    c->rollback_scratch = malloc(capacity * sizeof(size_t));
    if (!c->slots || !c->heads || !c->changed || !c->written || !c->rollback_scratch)
        return -ENOMEM;
    c->free = NIL;
    return 0;
}

void members_deinit(struct members *c)
{
    if (c->slots != NULL) {
        for (uint32_t i = 0; i < c->high_water; i++)
            blob_free(c->slots[i].blob, c->slots[i].cap);
    }
    big_free(c->slots, c->capacity * sizeof(*c->slots));
    big_free(c->heads, c->buckets * sizeof(*c->heads));
    free(c->changed);
    free(c->written);
    free(c->undo);
    free(c->rollback_scratch);
    memset(c, 0, sizeof(*c));
}

struct member *members_find(struct members *c, uint32_t program, uint64_t member)
{
    uint32_t b = bucket_of(c, store_member_slot(program, member));
    for (uint32_t i = c->heads[b]; i != NIL; i = c->slots[i - 1].next) {
        struct member *m = &c->slots[i - 1];
        if (m->member == member && m->program == program)
            return m;
    }
    return NULL;
}

void members_prefetch(const struct members *c, uint32_t program, uint64_t member, int step)
{
    uint32_t b = bucket_of(c, store_member_slot(program, member));
    if (step == 0) {
        __builtin_prefetch(&c->heads[b]);
        return;
    }
    uint32_t i = c->heads[b];
    if (i == NIL)
        return;
    if (step == 1)
        __builtin_prefetch(&c->slots[i - 1]);
    else
        __builtin_prefetch(c->slots[i - 1].blob);
}

static int reserve(struct member *m, uint32_t size)
{
    if (size <= m->cap)
        return 0;
    if (size > STORE_MEMBER_MAX)
        return TALLY_ECORRUPT;
    uint32_t cap = m->cap ? m->cap : (uint32_t)1 << BLOB_MIN_SHIFT;
    while (cap < size)
        cap *= 2;
    uint8_t *b = blob_alloc(cap);
    if (b == NULL)
        return -ENOMEM;
    if (m->blob != NULL)
        memcpy(b, m->blob, m->size);
    blob_free(m->blob, m->cap);
    m->blob = b;
    m->cap = cap;
    return 0;
}

static void dirty_push(struct members *c, struct member *m)
{
    m->flags |= MEMBER_DIRTY;
    c->ndirty++;
}

/* Take a free slot and link it in; ENGINE_ECACHE_FULL if none. */
static int slot_new(struct members *c, uint32_t program, uint64_t member, uint32_t size,
                    struct member **out)
{
    uint32_t i;
    if (c->free != NIL)
        i = c->free - 1;
    else if (c->high_water < c->capacity)
        i = c->high_water;
    else
        return ENGINE_ECACHE_FULL;
    struct member *m = &c->slots[i];
    int rc = reserve(m, size);
    if (rc != 0)
        return rc;
    if (i == c->high_water)
        c->high_water++;
    else
        c->free = m->next;
    m->slot = store_member_slot(program, member);
    uint32_t b = bucket_of(c, m->slot);
    m->next = c->heads[b];
    c->heads[b] = i + 1;
    m->program = program;
    m->member = member;
    m->size = size;
    m->flags = MEMBER_USED;
    m->undo_scope = 0;
    m->hash_lo = m->hash_hi = 0;
    c->used++;
    *out = m;
    return 0;
}

static void slot_free(struct members *c, struct member *m)
{
    uint32_t i = (uint32_t)(m - c->slots) + 1;
    uint32_t *p = &c->heads[bucket_of(c, m->slot)];
    while (*p != i)
        p = &c->slots[*p - 1].next;
    *p = m->next;
    m->flags = 0;
    m->next = c->free;
    c->free = i;
    c->used--;
}

void members_hash(const struct member *m, uint64_t *lo, uint64_t *hi)
{
    uint8_t key[STORE_MEMBER_KEY];
    store_member_key(key, m->program, m->member);
    unsigned __int128 h = store_sum_term(STORE_DB_MEMBERS, key, sizeof(key), m->blob, m->size);
    *lo = (uint64_t)h;
    *hi = (uint64_t)(h >> 64);
}

int members_insert_image(struct members *c, uint32_t program, uint64_t member,
                         const void *image, uint32_t size, struct member **out)
{
    struct member *m = members_find(c, program, member);
    int rc = 0;
    if (m == NULL)
        rc = slot_new(c, program, member, size, &m);
    else
        rc = reserve(m, size);
    if (rc != 0)
        return rc;
    memcpy(m->blob, image, size);
    m->size = size;
    m->flags |= MEMBER_COUNTED;
    members_hash(m, &m->hash_lo, &m->hash_hi);
    *out = m;
    return 0;
}

/* ---- undo ------------------------------------------------------------------------------- */

static int undo_push(struct members *c, struct member *m, bool created)
{
    uint32_t size = created ? 0 : m->size;
    size_t need = c->undo_len + sizeof(struct undo) + ((size + 7u) & ~7u);
    if (need > c->undo_cap) {
        size_t cap = c->undo_cap ? c->undo_cap : (size_t)1 << 20;
        while (cap < need)
            cap *= 2;
        uint8_t *u = realloc(c->undo, cap);
        if (u == NULL)
            return -ENOMEM;
        c->undo = u;
        c->undo_cap = cap;
    }
    struct undo rec = {(uint32_t)(m - c->slots), size, m->undo_scope, m->hash_lo, m->hash_hi,
                       m->flags, 0};
    memcpy(c->undo + c->undo_len, &rec, sizeof(rec));
    memcpy(c->undo + c->undo_len + sizeof(rec), m->blob, size);
    c->undo_len = need;
    c->undo_count++;
    return 0;
}

void members_scope(struct members *c, struct members_mark *mark)
{
    c->scope++;
    mark->undo_len = c->undo_len;
    mark->undo_count = c->undo_count;
    mark->nchanged = c->nchanged;
    mark->ndirty = c->ndirty;
}

/* Records are variable-size, so they are undone by walking forward to find each one's start:
 * the offsets are collected first, then applied newest first. */
void members_rollback(struct members *c, const struct members_mark *mark)
{
    uint32_t n = c->undo_count - mark->undo_count;
    size_t *offs = (size_t *)c->rollback_scratch;
    size_t off = mark->undo_len;
    for (uint32_t k = 0; k < n; k++) {
        offs[k] = off;
        struct undo rec;
        memcpy(&rec, c->undo + off, sizeof(rec));
        off += sizeof(rec) + ((rec.size + 7u) & ~7u);
    }
    for (uint32_t k = n; k-- > 0;) {
        struct undo rec;
        memcpy(&rec, c->undo + offs[k], sizeof(rec));
        struct member *m = &c->slots[rec.slot];
        if (rec.size == 0 && !(rec.flags & MEMBER_USED)) {
            slot_free(c, m);
            continue;
        }
        memcpy(m->blob, c->undo + offs[k] + sizeof(rec), rec.size);
        m->size = rec.size;
        m->undo_scope = rec.scope;
        m->hash_lo = rec.hash_lo;
        m->hash_hi = rec.hash_hi;
        m->flags = rec.flags;
    }
    c->undo_len = mark->undo_len;
    c->undo_count = mark->undo_count;
    c->nchanged = mark->nchanged;
    c->ndirty = mark->ndirty;
    c->scope++;
}

int members_modify(struct members *c, struct member *m)
{
    if (m->undo_scope != c->scope) {
        if (c->undo_count >= c->capacity)
            return ENGINE_ECACHE_FULL; /* bounds rollback_scratch */
        int rc = undo_push(c, m, false);
        if (rc != 0)
            return rc;
        m->undo_scope = c->scope;
    }
    if (!(m->flags & MEMBER_CHANGED)) {
        m->flags |= MEMBER_CHANGED;
        c->changed[c->nchanged++] = (uint32_t)(m - c->slots);
    }
    if (!(m->flags & MEMBER_DIRTY))
        dirty_push(c, m);
    return 0;
}

int members_create(struct members *c, uint32_t program, uint64_t member, struct member **out)
{
    struct member *m;
    int rc = slot_new(c, program, member, (uint32_t)sizeof(struct tally_account), &m);
    if (rc != 0)
        return rc;
    memset(m->blob, 0, sizeof(struct tally_account));
    if (c->undo_count >= c->capacity)
        rc = ENGINE_ECACHE_FULL;
    if (rc == 0)
        rc = undo_push(c, m, true); /* flags still MEMBER_USED only: undo frees the slot */
    if (rc != 0) {
        slot_free(c, m);
        return rc;
    }
    /* The undo record must see "did not exist": patch its saved flags. */
    struct undo rec;
    size_t at = c->undo_len - sizeof(rec);
    memcpy(&rec, c->undo + at, sizeof(rec));
    rec.flags = 0;
    memcpy(c->undo + at, &rec, sizeof(rec));
    m->undo_scope = c->scope;
    m->flags |= MEMBER_CHANGED;
    c->changed[c->nchanged++] = (uint32_t)(m - c->slots);
    dirty_push(c, m);
    *out = m;
    return 0;
}

int members_set_size(struct member *m, uint32_t size)
{
    int rc = reserve(m, size);
    if (rc == 0)
        m->size = size;
    return rc;
}

/* ---- the end of a batch, checkpoints, eviction --------------------------------------------- */

void members_batch_reset(struct members *c)
{
    for (uint32_t k = 0; k < c->nchanged; k++)
        c->slots[c->changed[k]].flags &= ~MEMBER_CHANGED;
    c->nchanged = 0;
    c->undo_len = 0;
    c->undo_count = 0;
    c->scope++;
}

void members_written(struct members *c, struct member *m)
{
    c->written[c->nwritten++] = (uint32_t)(m - c->slots);
}

void members_written_done(struct members *c, bool clean)
{
    for (uint32_t k = 0; clean && k < c->nwritten; k++) {
        struct member *m = &c->slots[c->written[k]];
        if (m->flags & MEMBER_DIRTY) {
            m->flags &= ~MEMBER_DIRTY;
            c->ndirty--;
        }
    }
    c->nwritten = 0;
}

void members_evict_clean(struct members *c)
{
    for (uint32_t i = 0; i < c->high_water; i++) {
        struct member *m = &c->slots[i];
        if ((m->flags & MEMBER_USED) && !(m->flags & MEMBER_DIRTY))
            slot_free(c, m);
    }
}
