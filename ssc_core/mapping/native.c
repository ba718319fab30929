/* The map's integration as one pass over the voxels of its blocks, in place: per map voxel, the
 * frame voxel holding its centre (ssc_core.mapping.kernels.frame_codes) and, where that voxel is
 * observed, the evidence update (ssc_core.mapping.evidence.observe), bit for bit. Built and
 * loaded by ssc_core/mapping/native.py; threads split the blocks (each block is one slot, so
 * they never write the same row). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define CLAMP 250
#define EMPTY_SLOT 255
#define UNKNOWN 255
#define MAX_THREADS 64

typedef struct {            /* a thread's buffers, one entry per voxel of a block */
    int32_t *index;
    uint8_t *codes;
    int16_t *weights;
} Scratch;

typedef struct Job {
    const uint8_t *codes;      /* (X, Y, Z) the frame's classes, UNKNOWN where not observed */
    const int16_t *weights;    /* (X, Y, Z) deficit units per frame voxel, or NULL: weight */
    int weight;
    const int64_t *shape;      /* (3,) X, Y, Z */
    const float *base;         /* (B, 3) first voxel centre of each block, in the voxel units of the
                                  frame padded by one voxel on each side */
    const float *steps;        /* (3, V) offsets of a block's voxels, one row per axis */
    const int64_t *slots;      /* (B,) the state slot of each block */
    int64_t voxels;            /* V */
    uint8_t *state;            /* (S, V, 2K + 1) */
    int k;
    uint8_t *seen;             /* (B,) out: the block sees a class (seen pass) */
    int64_t blocks;            /* B */
    int64_t *next;             /* the first block no thread has taken yet */
    void (*work)(const struct Job *, int64_t, int64_t, Scratch *);   /* on the blocks [first, last) */
} Job;

/* For voxels [first, last) of a block, the frame voxel holding each centre, or -1 outside the
 * frame: floor of the coordinates clamped into the padded frame, in float32 as torch computes
 * them (one rounded addition, no contraction possible); the padding voxels are outside. The
 * flat index is formed in float32, exact below 2^24 voxels. Branch-free over the axes' columns
 * of ``steps`` (3, V), so that the compiler vectorises it. */
static void frame_indices(const float *base, const float *steps, int64_t voxels, int64_t first, int64_t last,
                          const int64_t *shape, int32_t *out) {
    const int32_t nx = (int32_t)shape[0], ny = (int32_t)shape[1], nz = (int32_t)shape[2];
    const float hx = (float)(nx + 1), hy = (float)(ny + 1), hz = (float)(nz + 1);
    const float bx = base[0], by = base[1], bz = base[2];
    const float *sx = steps, *sy = steps + voxels, *sz = steps + 2 * voxels;
    for (int64_t v = first; v < last; v++) {
        float cx = bx + sx[v], cy = by + sy[v], cz = bz + sz[v];
        cx = cx > 0.0f ? cx : 0.0f;
        cx = cx < hx ? cx : hx;
        cy = cy > 0.0f ? cy : 0.0f;
        cy = cy < hy ? cy : hy;
        cz = cz > 0.0f ? cz : 0.0f;
        cz = cz < hz ? cz : hz;
        int32_t ix = (int32_t)cx, iy = (int32_t)cy, iz = (int32_t)cz;
        int32_t inside = (ix > 0) & (ix <= nx) & (iy > 0) & (iy <= ny) & (iz > 0) & (iz <= nz);
        float index = ((float)(ix - 1) * (float)ny + (float)(iy - 1)) * (float)nz + (float)(iz - 1);
        out[v] = inside ? (int32_t)index : -1;
    }
}

/* evidence.observe for one voxel: row (2K + 1,) uint8, class z with w deficit units. */
static inline __attribute__((always_inline)) void observe(uint8_t *row, int k, int z, int w) {
    uint8_t *classes = row, *d = row + k, *rest = row + 2 * k;
    if (classes[0] == z) {     /* the best class again: every other one falls further behind */
        for (int i = 1; i <= k; i++) {
            int v = d[i] + w;
            d[i] = (uint8_t)(v < CLAMP ? v : CLAMP);
        }
        return;
    }
    int slot = -1;
    for (int i = 0; i < k; i++)
        if (classes[i] == z) { slot = i; break; }
    if (slot < 0) {   /* the worst slot after the first (an unused one first) takes z with rest's
                         deficit; with one slot, the first, if z overtakes the best class there */
        if (k == 1 && w <= *rest)
            return;
        int start = k > 1, worst = start, worst_value = -1;
        for (int i = start; i < k; i++) {
            int value = classes[i] == EMPTY_SLOT ? CLAMP + 1 : d[i];
            if (value > worst_value) { worst = i; worst_value = value; }
        }
        slot = worst;
        classes[slot] = (uint8_t)z;
        d[slot] = *rest;
    }
    int d_z = d[slot];
    int shift = w > d_z ? w - d_z : 0;        /* how far z overtakes the best class */
    for (int i = 0; i < k; i++) {
        if (i == slot) {
            d[i] = (uint8_t)(d_z > w ? d_z - w : 0);
        } else {
            int v = d[i] + shift;
            d[i] = (uint8_t)(v < CLAMP ? v : CLAMP);
        }
    }
    int r = *rest + shift;
    *rest = (uint8_t)(r < CLAMP ? r : CLAMP);
    if (shift > 0 && slot != 0) {  /* the best class stays in slot 0 */
        uint8_t c = classes[0], e = d[0];
        classes[0] = classes[slot]; d[0] = d[slot];
        classes[slot] = c; d[slot] = e;
    }
}

/* The frame's codes for a block's voxels (UNKNOWN: outside it, or not observed) and their weights. */
static inline void block_codes(const Job *job, const int32_t *restrict index, uint8_t *restrict codes,
                               int16_t *restrict weights) {
    const uint8_t *restrict frame = job->codes;
    for (int64_t v = 0; v < job->voxels; v++) {
        int32_t i = index[v] < 0 ? 0 : index[v];
        codes[v] = index[v] >= 0 ? frame[i] : UNKNOWN;
        weights[v] = job->weights ? job->weights[i] : (int16_t)job->weight;
    }
}

/* The blocks of a job with K slots; K a constant where it is inlined, so its loops unroll. */
static inline __attribute__((always_inline)) void fuse_blocks_k(const Job *job, int64_t first, int64_t last,
                                                                const Scratch *scratch, const int k) {
    const int64_t voxels = job->voxels, width = 2 * k + 1;
    int32_t *restrict index = scratch->index;
    uint8_t *restrict codes = scratch->codes;
    int16_t *restrict weights = scratch->weights;
    for (int64_t b = first; b < last; b++) {
        uint8_t *restrict rows = job->state + job->slots[b] * voxels * width;
        frame_indices(job->base + 3 * b, job->steps, voxels, 0, voxels, job->shape, index);
        block_codes(job, index, codes, weights);
        for (int64_t v = 0; v < voxels; v++)
            if (codes[v] != UNKNOWN)
                observe(rows + v * width, k, codes[v], weights[v]);
    }
}

static void fuse_range(const Job *job, int64_t first, int64_t last, Scratch *scratch) {
    switch (job->k) {      /* the usual slot counts, specialised */
    case 1: fuse_blocks_k(job, first, last, scratch, 1); break;
    case 2: fuse_blocks_k(job, first, last, scratch, 2); break;
    case 3: fuse_blocks_k(job, first, last, scratch, 3); break;
    case 4: fuse_blocks_k(job, first, last, scratch, 4); break;
    default: fuse_blocks_k(job, first, last, scratch, job->k);
    }
}

static void seen_range(const Job *job, int64_t first_block, int64_t last_block, Scratch *scratch) {
    /* by chunks of voxels, to stop at the first seen one */
    const int64_t chunk = 64;
    int32_t *index = scratch->index;
    for (int64_t b = first_block; b < last_block; b++) {
        uint8_t seen = 0;
        for (int64_t first = 0; first < job->voxels && !seen; first += chunk) {
            int64_t last = first + chunk < job->voxels ? first + chunk : job->voxels;
            frame_indices(job->base + 3 * b, job->steps, job->voxels, first, last, job->shape, index);
            for (int64_t v = first; v < last; v++)
                seen |= (index[v] >= 0) & (job->codes[index[v] < 0 ? 0 : index[v]] != UNKNOWN);
        }
        job->seen[b] = seen;
    }
}

/* A thread's loop: the next chunk of blocks no thread has taken, until none is left (blocks
 * differ in how much of them the frame sees: chunks keep the threads equally busy). */
static void *worker(void *arg) {
    const Job *job = arg;
    const int64_t chunk = 16;
    Scratch scratch = {malloc(job->voxels * sizeof(int32_t)), malloc(job->voxels),
                       malloc(job->voxels * sizeof(int16_t))};
    while (scratch.index && scratch.codes && scratch.weights) {   /* no memory: no chunks taken */
        int64_t first = __atomic_fetch_add(job->next, chunk, __ATOMIC_RELAXED);
        if (first >= job->blocks)
            break;
        job->work(job, first, first + chunk < job->blocks ? first + chunk : job->blocks, &scratch);
    }
    free(scratch.index);
    free(scratch.codes);
    free(scratch.weights);
    return NULL;
}

/* The job on up to ``threads`` threads; 0, or -1 when memory ran out before every block was done. */
static int run(Job *job, int threads) {
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    int64_t next = 0;
    job->next = &next;
    threads = threads < 1 ? 1 : (threads > MAX_THREADS ? MAX_THREADS : threads);
    if (job->blocks < 64 * threads)
        threads = 1;
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, worker, job) == 0;
    worker(job);        /* this thread too; it finishes every chunk if no thread could start */
    for (int t = 1; t < threads; t++)
        if (started[t])
            pthread_join(ids[t], NULL);
    return next >= job->blocks ? 0 : -1;
}

/* The frame's codes: codes (N,) = labels where observed, else UNKNOWN. */
void ssc_frame_codes(const uint8_t *restrict labels, const uint8_t *restrict observed, int64_t n,
                     uint8_t *restrict codes) {
    for (int64_t i = 0; i < n; i++)
        codes[i] = observed[i] ? labels[i] : UNKNOWN;
}

/* Whether each of B blocks holds the centre of an observed frame voxel: seen (B,) uint8; 0, or -1
 * when memory ran out. */
int ssc_blocks_seen(const uint8_t *codes, const int64_t *shape, const float *base, const float *steps,
                     int64_t blocks, int64_t voxels, uint8_t *seen, int threads) {
    Job job = {.codes = codes, .shape = shape, .base = base, .steps = steps, .voxels = voxels,
               .seen = seen, .blocks = blocks, .work = seen_range};
    return run(&job, threads);
}

/* Fuse the frame into the state rows of B blocks at ``slots``, in place; 0, or -1 when memory ran
 * out (some blocks then updated, others not). */
int ssc_fuse_blocks(const uint8_t *codes, const int16_t *weights, int weight, const int64_t *shape,
                     const float *base, const float *steps, const int64_t *slots, int64_t blocks,
                     int64_t voxels, uint8_t *state, int k, int threads) {
    Job job = {.codes = codes, .weights = weights, .weight = weight, .shape = shape, .base = base,
               .steps = steps, .slots = slots, .voxels = voxels, .state = state, .k = k,
               .blocks = blocks, .work = fuse_range};
    return run(&job, threads);
}
