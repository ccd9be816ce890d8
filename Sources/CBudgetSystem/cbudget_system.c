#define _GNU_SOURCE
#include <sys/socket.h>
#include <malloc.h>
#include <sched.h>
#include <sys/random.h>
#include "cbudget_system.h"

_Static_assert(sizeof(struct cbudget_ucred) == sizeof(struct ucred), "struct cbudget_ucred must match struct ucred");

int cbudget_sol_socket(void) { return SOL_SOCKET; }
int cbudget_so_peercred(void) { return SO_PEERCRED; }

int cbudget_malloc_trim(void) { return malloc_trim(0); }

int cbudget_affinity_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    return CPU_COUNT(&set);
}

int cbudget_malloc_keep(int pad, int threshold) {
    return mallopt(M_TOP_PAD, pad) && mallopt(M_TRIM_THRESHOLD, threshold);
}

int cbudget_random_fill(void *buf, size_t count) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = getrandom((char *)buf + done, count - done, 0);
        if (n <= 0) return 0;
        done += (size_t)n;
    }
    return 1;
}
