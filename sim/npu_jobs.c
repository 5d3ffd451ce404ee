#include "npu_jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "npu_memory.h"
#include "state_file.h"
#include "strbuf.h"

typedef struct {
    long long id;
    int pid;
    unsigned long long start_time;
    long long time_ms;
    char model[PATH_MAX];
} job;

typedef struct {
    long long time_ms;
    int pid;
    long long id;
    int other_pid;
    long long other_id;
    long long other_time_ms;
    char model[PATH_MAX];
    char other_model[PATH_MAX];
} job_overlap;

typedef struct {
    long long next_job, jobs, overlaps, max_active;
    job* active;
    int n_active;
    job_overlap* log;
    int n_log;
} job_table;

static const char* jobs_path(char* buf, size_t len) {
    char state[PATH_MAX];
    snprintf(buf, len, "%s.npu-jobs", sim_state_path(state, sizeof(state)));
    return buf;
}

static void parse_jobs(job_table* t, FILE* f) {
    char line[PATH_MAX + 256];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        int used = 0;
        if (sscanf(line, "next_job %lld", &t->next_job) == 1) continue;
        if (sscanf(line, "jobs %lld", &t->jobs) == 1) continue;
        if (sscanf(line, "overlaps %lld", &t->overlaps) == 1) continue;
        if (sscanf(line, "max_active %lld", &t->max_active) == 1) continue;
        job j;
        memset(&j, 0, sizeof(j));
        if (sscanf(line, "active %lld %d %llu %lld %n", &j.id, &j.pid, &j.start_time, &j.time_ms, &used) == 4) {
            snprintf(j.model, sizeof(j.model), "%s", line + used);
            PUSH(t->active, t->n_active, j);
            continue;
        }
        job_overlap o;
        memset(&o, 0, sizeof(o));
        if (sscanf(line, "overlap %lld %d %lld %d %lld %lld %n", &o.time_ms, &o.pid, &o.id, &o.other_pid,
                   &o.other_id, &o.other_time_ms, &used) == 6) {
            const char* models = line + used;
            size_t n = strcspn(models, "\t");
            snprintf(o.model, sizeof(o.model), "%.*s", (int)n, models);
            snprintf(o.other_model, sizeof(o.other_model), "%s", models[n] ? models + n + 1 : "");
            PUSH(t->log, t->n_log, o);
        }
    }
}

static void render_jobs(const job_table* t, strbuf* sb) {
    sb_printf(sb, "rksim-npu-jobs 1\nnext_job %lld\njobs %lld\noverlaps %lld\nmax_active %lld\n", t->next_job,
              t->jobs, t->overlaps, t->max_active);
    for (int i = 0; i < t->n_active; i++) {
        const job* j = &t->active[i];
        sb_printf(sb, "active %lld %d %llu %lld %s\n", j->id, j->pid, j->start_time, j->time_ms, j->model);
    }
    for (int i = 0; i < t->n_log; i++) {
        const job_overlap* o = &t->log[i];
        sb_printf(sb, "overlap %lld %d %lld %d %lld %lld %s\t%s\n", o->time_ms, o->pid, o->id, o->other_pid,
                  o->other_id, o->other_time_ms, o->model, o->other_model);
    }
}

/* Opens and locks the job file, loads it and drops the jobs of dead processes; -1 on error. */
static int jobs_open(job_table* t) {
    memset(t, 0, sizeof(*t));
    t->next_job = 1;
    char path[PATH_MAX];
    int fd = open(jobs_path(path, sizeof(path)), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "E rkllm-sim: cannot open NPU job file %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    int dup_fd = dup(fd);
    FILE* f = dup_fd >= 0 ? fdopen(dup_fd, "r") : NULL;
    if (f) {
        parse_jobs(t, f);
        fclose(f);
    }
    int kept = 0;
    for (int i = 0; i < t->n_active; i++)
        if (owner_alive(t->active[i].pid, t->active[i].start_time)) t->active[kept++] = t->active[i];
    t->n_active = kept;
    return fd;
}

static void jobs_close(int fd, job_table* t) {
    strbuf sb;
    sb_init(&sb);
    render_jobs(t, &sb);
    if (ftruncate(fd, 0) == 0) {
        size_t off = 0;
        while (off < sb.len) {
            ssize_t w = pwrite(fd, sb.data + off, sb.len - off, (off_t)off);
            if (w <= 0) break;
            off += (size_t)w;
        }
    }
    sb_free(&sb);
    free(t->active);
    free(t->log);
    flock(fd, LOCK_UN);
    close(fd);
}

long long sim_npu_job_enter(const char* model_path) {
    job_table t;
    int fd = jobs_open(&t);
    if (fd < 0) return 0;
    job j;
    memset(&j, 0, sizeof(j));
    j.id = t.next_job++;
    j.pid = getpid();
    j.start_time = self_start_time();
    j.time_ms = now_ms();
    snprintf(j.model, sizeof(j.model), "%s", model_path ? model_path : "");
    t.jobs++;
    if (t.n_active > 0) {
        t.overlaps++;
        if (t.n_log < SIM_NPU_OVERLAP_LOG) {
            const job* other = &t.active[0];
            job_overlap o;
            memset(&o, 0, sizeof(o));
            o.time_ms = j.time_ms;
            o.pid = j.pid;
            o.id = j.id;
            o.other_pid = other->pid;
            o.other_id = other->id;
            o.other_time_ms = other->time_ms;
            snprintf(o.model, sizeof(o.model), "%s", j.model);
            snprintf(o.other_model, sizeof(o.other_model), "%s", other->model);
            PUSH(t.log, t.n_log, o);
        }
    }
    PUSH(t.active, t.n_active, j);
    if (t.n_active > t.max_active) t.max_active = t.n_active;
    jobs_close(fd, &t);
    return j.id;
}

void sim_npu_job_leave(long long id) {
    if (id <= 0) return;
    job_table t;
    int fd = jobs_open(&t);
    if (fd < 0) return;
    int kept = 0;
    for (int i = 0; i < t.n_active; i++)
        if (t.active[i].id != id) t.active[kept++] = t.active[i];
    t.n_active = kept;
    jobs_close(fd, &t);
}
