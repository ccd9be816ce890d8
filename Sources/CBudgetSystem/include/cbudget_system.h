#ifndef CBUDGET_SYSTEM_H
#define CBUDGET_SYSTEM_H

#include <stddef.h>
#include <stdint.h>
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
int cbudget_so_cookie(void);

/* The descriptor of this process's socket whose SO_COOKIE is cookie, or -1 with errno ENOENT if none.
   SwiftNIO does not expose a channel's descriptor, but its SO_COOKIE (a number the kernel gives each socket,
   never reused until reboot) can be read through the channel; this finds the descriptor it belongs to.
   The scan goes up from 0, and accept(2) hands out the lowest free descriptor, so it is short. */
int cbudget_socket_with_cookie(uint64_t cookie);

/* SO_PEERGROUPS (Linux 4.13): the supplementary groups the peer of the connected Unix socket fd had when it
   connected. Writes up to capacity groups and returns how many there are; when capacity is too small, returns
   -1 with errno ERANGE and *needed set to the number of groups the kernel has. Other failures: -1 and errno. */
int cbudget_peer_groups(int fd, gid_t *groups, size_t capacity, size_t *needed);

/* glibc's malloc_trim(0) (malloc.h is not in Glibc's Swift module); returns 1 if memory was released. */
int cbudget_malloc_trim(void);

/* mallopt(M_TOP_PAD, pad) and mallopt(M_TRIM_THRESHOLD, threshold); returns 1 when both were accepted. */
int cbudget_malloc_keep(int pad, int threshold);

/* Fills buf with count bytes from the kernel's generator (getrandom); returns 1 on success. */
int cbudget_random_fill(void *buf, size_t count);

/* How many CPUs this thread may run on (sched_getaffinity), or 0 if that cannot be read. */
int cbudget_affinity_cpu_count(void);

/* Swift Concurrency's global executor on SwiftNIO's event loops (see DaemonKit's EventLoopConcurrency).
   cbudget_install_global_enqueue sets the runtime's swift_task_enqueueGlobal_hook (if no hook is set yet) to one
   that hands each job to enqueue; returns 1 when installed, 0 when the runtime has no hook or one is set.
   cbudget_run_job_as_generic runs a job the way the runtime's own global executor does: on the calling thread,
   as the generic executor (swift_job_run with SerialExecutorRef::generic()). Both are written by hand: neither
   SwiftNIO nor the standard library offers them (the library's _swiftJobRun is internal). */
int cbudget_install_global_enqueue(void (*enqueue)(void *job));
void cbudget_run_job_as_generic(void *job);

#endif
