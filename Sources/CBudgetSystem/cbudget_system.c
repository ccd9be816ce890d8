#define _GNU_SOURCE
#include <sys/socket.h>
#include <malloc.h>
#include "cbudget_system.h"

_Static_assert(sizeof(struct cbudget_ucred) == sizeof(struct ucred), "struct cbudget_ucred must match struct ucred");

int cbudget_sol_socket(void) { return SOL_SOCKET; }
int cbudget_so_peercred(void) { return SO_PEERCRED; }

int cbudget_malloc_trim(void) { return malloc_trim(0); }
