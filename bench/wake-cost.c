/* wake-cost: what a process pays in CPU to be woken, on this machine, apart from any proxy code.
 *
 * Two processes on one core pass a byte back and forth over two pipes, as a proxy and its upstream do over a
 * socket. Before each round the first one touches A_PAGES pages of its own memory (one byte each, 4 KiB apart:
 * its working set), and the second touches B_PAGES of its own before answering (the other process that runs in
 * between and evicts the first one's caches). With GAP_US > 0 the first sleeps that long before each round, so
 * that the core goes idle between rounds, as it does between requests below the maximum rate.
 * It prints the first process's CPU (user+system, getrusage) and wall time per round, over ROUNDS rounds after 100
 * that warm up and are not counted.
 *
 *   cc -O2 -o /tmp/wake-cost bench/wake-cost.c
 *   taskset -c 0 /tmp/wake-cost A_PAGES B_PAGES ROUNDS [GAP_US]
 *
 * Figures (2026-12-07, this VM) are in bench/README.md, "Per wake, not per request". Not part of make bench.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { PAGE = 4096, WARMUP = 100 };
static volatile unsigned long sink;

static void touch(char *memory, long pages) {
    for (long i = 0; i < pages; i++) sink += memory[i * PAGE]++;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

static double wall_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static long argument(const char *text, const char *name, long most) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < 0 || value > most) {
        fprintf(stderr, "wake-cost: %s must be a whole number from 0 to %ld, got '%s'\n", name, most, text);
        exit(2);
    }
    return value;
}

static char *region(long pages) {
    char *memory = mmap(NULL, (size_t)(pages > 0 ? pages : 1) * PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) { perror("wake-cost: mmap"); exit(1); }
    return memory;
}

static void pass(int fd_out, int fd_in) {
    char byte = 'x';
    if (write(fd_out, &byte, 1) != 1 || read(fd_in, &byte, 1) != 1) { perror("wake-cost: pipe"); exit(1); }
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: wake-cost A_PAGES B_PAGES ROUNDS [GAP_US]\n");
        return 2;
    }
    long a_pages = argument(argv[1], "A_PAGES", 262144), b_pages = argument(argv[2], "B_PAGES", 262144);
    long rounds = argument(argv[3], "ROUNDS", 100000000), gap = argc == 5 ? argument(argv[4], "GAP_US", 1000000) : 0;
    if (rounds == 0) { fprintf(stderr, "wake-cost: ROUNDS must be at least 1\n"); return 2; }
    int to_b[2], to_a[2];
    if (pipe(to_b) || pipe(to_a)) { perror("wake-cost: pipe"); return 1; }
    pid_t child = fork();
    if (child < 0) { perror("wake-cost: fork"); return 1; }
    if (child == 0) {
        close(to_b[1]);  /* so that the first process's close ends the loop below */
        close(to_a[0]);
        char *memory = region(b_pages), byte;
        touch(memory, b_pages);
        while (read(to_b[0], &byte, 1) == 1) {
            touch(memory, b_pages);
            if (write(to_a[1], &byte, 1) != 1) break;
        }
        _exit(0);
    }
    close(to_b[0]);
    close(to_a[1]);
    char *memory = region(a_pages);
    touch(memory, a_pages);
    double cpu0 = 0, wall0 = 0;
    for (long i = 0; i < rounds + WARMUP; i++) {
        if (i == WARMUP) { cpu0 = cpu_seconds(); wall0 = wall_seconds(); }
        if (gap) usleep((useconds_t)gap);
        touch(memory, a_pages);
        pass(to_b[1], to_a[0]);
    }
    double cpu = cpu_seconds() - cpu0, wall = wall_seconds() - wall0;
    close(to_b[1]);
    waitpid(child, NULL, 0);
    printf("A_PAGES %ld B_PAGES %ld GAP_US %ld: CPU %.2f us a round, wall %.2f us a round\n", a_pages, b_pages, gap,
           cpu / rounds * 1e6, wall / rounds * 1e6);
    return 0;
}
