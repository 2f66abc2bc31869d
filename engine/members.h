/* members.h: the in-memory write-back cache of member records (account + open lots). */
#ifndef TALLY_ENGINE_MEMBERS_H
#define TALLY_ENGINE_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"
#include "tally_records.h"

/* An internal status: no free slot; the engine checkpoints, evicts and re-runs the batch. */
#define ENGINE_ECACHE_FULL (-30998)

enum member_flag {
    MEMBER_USED = 1u << 0,    /* the slot holds a member */
    MEMBER_COUNTED = 1u << 1, /* hash_lo/hi are in the state sum */
    MEMBER_CHANGED = 1u << 2, /* changed by the running batch: its hash is redone at batch end */
    MEMBER_DIRTY = 1u << 3,   /* differs from the `members` B-tree: written at the checkpoint */
};

struct member {
    uint32_t program;
    uint32_t flags;
    uint64_t member;
    uint64_t undo_scope; /* the scope in which the before-image was last saved */
    uint64_t slot;       /* store_member_slot(program, member): its bucket and B-tree position */
    uint64_t hash_lo;    /* XXH3-128 of the image in the state sum */
    uint64_t hash_hi;
    uint32_t size;       /* bytes of image: the account, then account.lots_open lots */
    uint32_t cap;
    uint32_t next;       /* bucket chain, or the free list (slot index + 1; 0: none) */
    uint32_t reserved;
    uint8_t *blob;
};

static inline struct tally_account *member_account(struct member *m)
{
    return (struct tally_account *)(void *)m->blob;
}

static inline struct tally_lot *member_lots(struct member *m)
{
    return (struct tally_lot *)(void *)(m->blob + sizeof(struct tally_account));
}

static inline uint32_t member_lot_count(const struct member *m)
{
    return (uint32_t)((m->size - sizeof(struct tally_account)) / sizeof(struct tally_lot));
}

struct members {
    struct member *slots;
    uint32_t *heads;
    uint32_t capacity;
    uint32_t buckets;
    uint32_t free;       /* free list (slot index + 1; 0: empty) */
    uint32_t high_water; /* slots ever used */
    uint32_t used;
    uint32_t *changed; /* slots changed by the running batch */
    uint32_t nchanged;
    uint32_t ndirty;      /* members with MEMBER_DIRTY */
    unsigned shift;       /* bucket = slot >> shift: buckets are in key order */
    uint32_t *written;    /* dirty members written back by the running batch */
    uint32_t nwritten;
    uint8_t *undo;     /* before-images of the running batch */
    size_t undo_len;
    size_t undo_cap;
    uint32_t undo_count;
    uint64_t scope;
    void *rollback_scratch; /* capacity offsets */
};

struct members_mark {
    size_t undo_len;
    uint32_t undo_count;
    uint32_t nchanged;
    uint32_t ndirty;
};

/* The members of bucket b (iterate with members_next). */
static inline struct member *members_bucket(struct members *c, uint32_t b)
{
    return c->heads[b] ? &c->slots[c->heads[b] - 1] : NULL;
}

static inline struct member *members_next(struct members *c, const struct member *m)
{
    return m->next ? &c->slots[m->next - 1] : NULL;
}

int members_init(struct members *c, uint32_t capacity);
void members_deinit(struct members *c);

/* The cached member, or NULL. */
struct member *members_find(struct members *c, uint32_t program, uint64_t member);

/* Ask the CPU to start loading a member's bucket (step 0), its slot (step 1, the bucket being in
 * cache by then) or its image (step 2, the slot being in cache). Changes nothing: the batch
 * loop calls it a few postings ahead, so that the cache misses of a cold member overlap with
 * the work on the postings before it. */
void members_prefetch(const struct members *c, uint32_t program, uint64_t member, int step);

/* Put an image read from the `members` B-tree into the cache (clean, its hash counted). */
int members_insert_image(struct members *c, uint32_t program, uint64_t member,
                         const void *image, uint32_t size, struct member **out);

/* Call before changing a member's image: saves the before-image once per scope, marks the
 * member changed (its hash is redone at batch end) and dirty (to be written back). */
int members_modify(struct members *c, struct member *m);

/* A new member with a zeroed account image, changed and dirty. */
int members_create(struct members *c, uint32_t program, uint64_t member, struct member **out);

/* Resize the image (the caller keeps account.lots_open in step). */
int members_set_size(struct member *m, uint32_t size);

/* Open an undo scope (a batch or a linked chain) and remember where it starts. */
void members_scope(struct members *c, struct members_mark *mark);
/* Undo every change since the mark. */
void members_rollback(struct members *c, const struct members_mark *mark);

/* The batch committed: forget its undo log and changed list. */
void members_batch_reset(struct members *c);
/* Note that a dirty member was written to the `members` B-tree by the running batch. */
void members_written(struct members *c, struct member *m);
/* The batch that wrote them committed (clean = true) or aborted: forget the list. */
void members_written_done(struct members *c, bool clean);
/* Drop every clean member from the cache. */
void members_evict_clean(struct members *c);

/* The member's term of the state sum (store_sum_term) into lo/hi. */
void members_hash(const struct member *m, uint64_t *lo, uint64_t *hi);

#endif
