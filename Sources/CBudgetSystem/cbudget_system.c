#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/resource.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <sched.h>
#include <sys/random.h>
#include <dlfcn.h>
#include "cbudget_system.h"

_Static_assert(sizeof(struct cbudget_ucred) == sizeof(struct ucred), "struct cbudget_ucred must match struct ucred");

int cbudget_sol_socket(void) { return SOL_SOCKET; }
int cbudget_so_peercred(void) { return SO_PEERCRED; }
int cbudget_so_cookie(void) { return SO_COOKIE; }

int cbudget_socket_with_cookie(uint64_t cookie) {
    struct rlimit limit;
    rlim_t end = 1024;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) end = limit.rlim_cur;
    if (end > (1 << 20)) end = 1 << 20;
    for (int fd = 0; fd < (int)end; fd++) {
        uint64_t value = 0;
        socklen_t length = sizeof(value);
        if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &value, &length) == 0 && length == sizeof(value)
            && value == cookie)
            return fd;
    }
    errno = ENOENT;
    return -1;
}

int cbudget_peer_groups(int fd, gid_t *groups, size_t capacity, size_t *needed) {
    if (capacity > INT_MAX / sizeof(gid_t)) {
        errno = EINVAL;
        return -1;
    }
    socklen_t length = (socklen_t)(capacity * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &length) != 0) {
        if (errno == ERANGE && needed != NULL) *needed = length / sizeof(gid_t);
        return -1;
    }
    return (int)(length / sizeof(gid_t));
}

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

/* The runtime's declarations (swift/Runtime/Concurrency.h): a SerialExecutorRef is two words, the executor's
   identity and its implementation; the generic executor is both zero. The functions use the Swift calling
   convention. */
typedef struct {
    const void *identity;
    uintptr_t implementation;
} cbudget_serial_executor_ref;
extern void swift_job_run(void *job, cbudget_serial_executor_ref executor) __attribute__((swiftcall));
typedef void (*cbudget_enqueue_original)(void *job) __attribute__((swiftcall));
typedef void (*cbudget_enqueue_hook)(void *job, cbudget_enqueue_original original) __attribute__((swiftcall));

static void (*cbudget_enqueue_target)(void *job);

__attribute__((swiftcall)) static void cbudget_enqueue_global(void *job, cbudget_enqueue_original original) {
    (void)original;
    cbudget_enqueue_target(job);
}

int cbudget_install_global_enqueue(void (*enqueue)(void *job)) {
    cbudget_enqueue_hook *slot = (cbudget_enqueue_hook *)dlsym(RTLD_DEFAULT, "swift_task_enqueueGlobal_hook");
    if (slot == NULL || enqueue == NULL) return 0;
    cbudget_enqueue_target = enqueue;
    cbudget_enqueue_hook expected = NULL;
    return __atomic_compare_exchange_n(
        slot, &expected, cbudget_enqueue_global, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST) ? 1 : 0;
}

void cbudget_run_job_as_generic(void *job) {
    cbudget_serial_executor_ref generic = {NULL, 0};
    swift_job_run(job, generic);
}
