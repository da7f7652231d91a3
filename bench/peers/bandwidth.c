// The machine's memory read bandwidth for bench/peers/run.sh: THREADS threads each sum their own
// part of a 1 GiB buffer (far beyond the caches), best of 5 passes; prints JSON. Batch-1 decode
// reads every weight once a token, so this is its limit, as the sgemm rate is batched work's.
// Built by run.sh with the system compiler: cc -O2 -march=native -pthread bandwidth.c
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BYTES ((size_t)1 << 30)

typedef struct { const uint64_t *p; size_t n; uint64_t sum; } Part;

static void *reader(void *arg) {
    Part *part = arg;
    // Eight independent sums, so that the loads and not the adds set the pace.
    uint64_t s[8] = {0};
    for (size_t i = 0; i + 8 <= part->n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += part->p[i + k];
    part->sum = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 256) { fprintf(stderr, "usage: bandwidth [THREADS]\n"); return 2; }
    uint64_t *buf = aligned_alloc(64, BYTES);
    if (!buf) { fprintf(stderr, "bandwidth: cannot allocate 1 GiB\n"); return 1; }
    memset(buf, 1, BYTES);
    const size_t words = BYTES / 8, per = words / threads;
    double best = 1e9;
    uint64_t check = 0;
    for (int pass = 0; pass < 5; pass++) {
        pthread_t t[256];
        Part parts[256];
        double t0 = now();
        for (int i = 0; i < threads; i++) {
            parts[i] = (Part){buf + per * i, per, 0};
            pthread_create(&t[i], NULL, reader, &parts[i]);
        }
        for (int i = 0; i < threads; i++) { pthread_join(t[i], NULL); check += parts[i].sum; }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("{\"threads\": %d, \"read_gb_per_second\": %.2f, \"check\": %llu}\n", threads,
           (double)(per * threads * 8) / best / 1e9, (unsigned long long)(check & 1));
    free(buf);
    return 0;
}
