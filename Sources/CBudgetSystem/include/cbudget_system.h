#ifndef CBUDGET_SYSTEM_H
#define CBUDGET_SYSTEM_H

#include <sys/types.h>

/* Layout-compatible with Linux's struct ucred (SO_PEERCRED), which Glibc's Swift overlay does not export. */
struct cbudget_ucred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

/* SOL_SOCKET and SO_PEERCRED as plain ints, for Swift. */
int cbudget_sol_socket(void);
int cbudget_so_peercred(void);

/* glibc's malloc_trim(0) (malloc.h is not in Glibc's Swift module); returns 1 if memory was released. */
int cbudget_malloc_trim(void);

/* mallopt(M_TOP_PAD, pad) and mallopt(M_TRIM_THRESHOLD, threshold); returns 1 when both were accepted. */
int cbudget_malloc_keep(int pad, int threshold);

/* Fills buf with count bytes from the kernel's generator (getrandom); returns 1 on success. */
int cbudget_random_fill(void *buf, size_t count);

/* How many CPUs this thread may run on (sched_getaffinity), or 0 if that cannot be read. */
int cbudget_affinity_cpu_count(void);

#endif
