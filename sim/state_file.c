#include "state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model_file.h"
#include "strbuf.h"

#define MAX_LOG 1000 /* keep the file small; the counter keeps the full count */

const char* sim_state_path(char* buf, unsigned long len) {
    const char* env = getenv("RKLLM_SIM_STATE");
    if (env && *env) snprintf(buf, len, "%s", env);
    else snprintf(buf, len, "/tmp/rkllm-sim-state-%u.txt", (unsigned)getuid());
    return buf;
}

long long sim_ram_bytes(void) { return sim_env_ll("RKLLM_SIM_RAM", SIM_DEFAULT_RAM); }

long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Owner identity = pid + start time (field 22 of /proc/<pid>/stat), so a recycled pid is not mistaken for
 * the owner. Zombies count as dead: the kernel frees a process's memory at exit, before it is reaped. */
static int proc_start_time(int pid, unsigned long long* start, int* dead) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char* p = strrchr(buf, ')');
    if (!p) return -1;
    p++;
    char st = 0;
    unsigned long long v = 0;
    for (int field = 3; field <= 22; field++) {
        while (*p == ' ') p++;
        if (!*p) return -1;
        if (field == 3) st = *p;
        if (field == 22) v = strtoull(p, NULL, 10);
        while (*p && *p != ' ') p++;
    }
    *start = v;
    *dead = (st == 'Z' || st == 'X' || st == 'x');
    return 0;
}

unsigned long long self_start_time(void) {
    unsigned long long s = 0;
    int dead = 0;
    proc_start_time(getpid(), &s, &dead);
    return s;
}

int owner_alive(int pid, unsigned long long start) {
    unsigned long long s = 0;
    int dead = 0;
    if (proc_start_time(pid, &s, &dead) != 0) return 0;
    return !dead && s == start;
}

void state_free(state* s) {
    free(s->res);
    free(s->oc);
    free(s->oom);
    memset(s, 0, sizeof(*s));
}



static void rest_of_line(char* dst, size_t len, const char* line, int skip_fields) {
    const char* p = line;
    for (int i = 0; i < skip_fields && *p; i++) {
        while (*p && *p != ' ') p++;
        while (*p == ' ') p++;
    }
    size_t n = strcspn(p, "\n");
    if (n >= len) n = len - 1;
    memcpy(dst, p, n);
    dst[n] = '\0';
}

static void parse_state(state* s, FILE* f) {
    char line[PATH_MAX + 512];
    memset(s, 0, sizeof(*s));
    s->next_id = 1;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "next_id ", 8)) {
            s->next_id = strtoll(line + 8, NULL, 10);
        } else if (!strncmp(line, "overcommits ", 12)) {
            s->overcommits = strtoll(line + 12, NULL, 10);
        } else if (!strncmp(line, "res ", 4)) {
            reservation r;
            memset(&r, 0, sizeof(r));
            char shares[1024];
            if (sscanf(line + 4, "%lld %d %llu %d %lld %1023s %15s", &r.id, &r.pid, &r.start_time,
                       &r.base_domain, &r.bytes, shares, r.version) != 7)
                continue;
            char* save = NULL;
            for (char* t = strtok_r(shares, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                int d = atoi(t);
                char* colon = strchr(t, ':');
                if (colon && d >= 0 && d < SIM_DOMAINS) r.domain_bytes[d] = strtoll(colon + 1, NULL, 10);
            }
            rest_of_line(r.path, sizeof(r.path), line, 8);
            PUSH(s->res, s->n_res, r);
        } else if (!strncmp(line, "oc ", 3)) {
            overcommit o;
            memset(&o, 0, sizeof(o));
            if (sscanf(line + 3, "%lld %d %7s %lld %11s %d", &o.time_ms, &o.pid, o.kind, &o.bytes, o.mode,
                       &o.domain) != 6)
                continue;
            rest_of_line(o.path, sizeof(o.path), line, 7);
            PUSH(s->oc, s->n_oc, o);
        } else if (!strncmp(line, "oom ", 4)) {
            oom_kill k;
            if (sscanf(line + 4, "%lld %d %d %lld", &k.time_ms, &k.victim, &k.killer, &k.bytes) == 4)
                PUSH(s->oom, s->n_oom, k);
        }
    }
}

static void render_state(const state* s, strbuf* sb) {
    sb_puts(sb, "rksim-state 1\n");
    sb_printf(sb, "next_id %lld\novercommits %lld\n", s->next_id, s->overcommits);
    for (int i = 0; i < s->n_res; i++) {
        const reservation* r = &s->res[i];
        sb_printf(sb, "res %lld %d %llu %d %lld ", r->id, r->pid, r->start_time, r->base_domain, r->bytes);
        int first = 1;
        for (int d = 0; d < SIM_DOMAINS; d++) {
            if (!r->domain_bytes[d]) continue;
            sb_printf(sb, "%s%d:%lld", first ? "" : ",", d, r->domain_bytes[d]);
            first = 0;
        }
        if (first) sb_puts(sb, "-");
        sb_printf(sb, " %s %s\n", r->version, r->path);
    }
    int start = s->n_oc > MAX_LOG ? s->n_oc - MAX_LOG : 0;
    for (int i = start; i < s->n_oc; i++) {
        const overcommit* o = &s->oc[i];
        sb_printf(sb, "oc %lld %d %s %lld %s %d %s\n", o->time_ms, o->pid, o->kind, o->bytes, o->mode, o->domain,
                  o->path);
    }
    start = s->n_oom > MAX_LOG ? s->n_oom - MAX_LOG : 0;
    for (int i = start; i < s->n_oom; i++)
        sb_printf(sb, "oom %lld %d %d %lld\n", s->oom[i].time_ms, s->oom[i].victim, s->oom[i].killer,
                  s->oom[i].bytes);
}

int locked_file_open(const char* path) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "E rkllm-sim: cannot open the state file %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

void locked_file_close(int fd, const strbuf* contents) {
    if (contents && ftruncate(fd, 0) == 0) {
        size_t off = 0;
        while (off < contents->len) {
            ssize_t w = pwrite(fd, contents->data + off, contents->len - off, (off_t)off);
            if (w <= 0) break;
            off += (size_t)w;
        }
    }
    flock(fd, LOCK_UN);
    close(fd);
}

/* Opens and exclusively locks the state file, loads it and drops reservations of dead owners.
 * Returns the fd (to pass to state_close) or -1. */
int state_open(state* s) {
    char path[PATH_MAX];
    int fd = locked_file_open(sim_state_path(path, sizeof(path)));
    if (fd < 0) return -1;
    int dup_fd = dup(fd);
    FILE* f = dup_fd >= 0 ? fdopen(dup_fd, "r") : NULL;
    if (f) {
        parse_state(s, f);
        fclose(f);
    } else {
        memset(s, 0, sizeof(*s));
        s->next_id = 1;
    }
    int kept = 0;
    for (int i = 0; i < s->n_res; i++)
        if (owner_alive(s->res[i].pid, s->res[i].start_time)) s->res[kept++] = s->res[i];
    s->n_res = kept;
    return fd;
}

void state_close(int fd, state* s, int write_back) {
    strbuf sb;
    sb_init(&sb);
    if (write_back) render_state(s, &sb);
    locked_file_close(fd, write_back ? &sb : NULL);
    sb_free(&sb);
    state_free(s);
}

long long used_total(const state* s) {
    long long t = 0;
    for (int i = 0; i < s->n_res; i++) t += s->res[i].bytes;
    return t;
}

long long used_domain(const state* s, int d) {
    long long t = 0;
    for (int i = 0; i < s->n_res; i++) t += s->res[i].domain_bytes[d];
    return t;
}
