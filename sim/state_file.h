/* The state file behind npu_memory.c: its records, its line format, and locking + pruning on access.
 * Format (one record per line): "next_id N", "overcommits N",
 *   "res ID PID START_TIME BASE_DOMAIN BYTES D:B,D:B VERSION PATH",
 *   "oc TIME_MS PID KIND BYTES MODE DOMAIN PATH", "oom TIME_MS VICTIM KILLER BYTES".
 * tests/simkit/state.py:read_state parses the same format. */
#ifndef RKSIM_STATE_FILE_H
#define RKSIM_STATE_FILE_H

#include <limits.h>
#include <stdlib.h>

#include "npu_memory.h"
#include "strbuf.h"

typedef struct {
    long long id;
    int pid;
    unsigned long long start_time;
    int base_domain;
    long long bytes;
    long long domain_bytes[SIM_DOMAINS];
    char version[16];
    char path[PATH_MAX];
} reservation;

typedef struct {
    long long time_ms;
    int pid;
    char kind[8];
    long long bytes;
    char mode[12];
    int domain;
    char path[PATH_MAX];
} overcommit;

typedef struct {
    long long time_ms;
    int victim;
    int killer;
    long long bytes;
} oom_kill;

typedef struct {
    long long next_id;
    long long overcommits;
    reservation* res;
    int n_res;
    overcommit* oc;
    int n_oc;
    oom_kill* oom;
    int n_oom;
} state;

#define PUSH(arr, n, item)                                            \
    do {                                                              \
        (arr) = realloc((arr), sizeof(*(arr)) * (size_t)((n) + 1));   \
        if (!(arr)) abort();                                          \
        (arr)[(n)++] = (item);                                        \
    } while (0)

long long now_ms(void);
unsigned long long self_start_time(void);
/* 1 when pid is running and is the process that started at start (not a zombie, not a recycled pid). */
int owner_alive(int pid, unsigned long long start);
/* Opens (creating it) and exclusively locks a machine-wide record file; the fd, or -1 with an E line. */
int locked_file_open(const char* path);
/* Replaces the file's contents with `contents` (unless NULL), unlocks and closes it. */
void locked_file_close(int fd, const strbuf* contents);
void state_free(state* s);
/* Opens and exclusively locks the state file, loads it and drops reservations of dead owners.
 * Returns the fd (to pass to state_close) or -1. */
int state_open(state* s);
/* Writes the state back when write_back, then unlocks and frees. */
void state_close(int fd, state* s, int write_back);
long long used_total(const state* s);
long long used_domain(const state* s, int d);

#endif
