#include "npu_jobs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npu_memory.h"
#include "state_file.h"
#include "strbuf.h"

#define TAG_LEN 32

typedef struct {
    long long id;
    int pid;
    unsigned long long start_time;
    long long time_ms;
    char tag[TAG_LEN];
    char model[PATH_MAX];
} job;

typedef struct {
    job in;    /* the run that entered */
    job other; /* a run that was inside then */
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

/* "TAG MODEL" after the numeric fields of a line. */
static void parse_tag_model(job* j, const char* rest) {
    size_t n = strcspn(rest, " ");
    snprintf(j->tag, sizeof(j->tag), "%.*s", (int)n, rest);
    snprintf(j->model, sizeof(j->model), "%s", rest[n] ? rest + n + 1 : "");
}

static void parse_jobs(job_table* t, FILE* f) {
    char line[2 * PATH_MAX + 256];
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
            parse_tag_model(&j, line + used);
            PUSH(t->active, t->n_active, j);
            continue;
        }
        job_overlap o;
        memset(&o, 0, sizeof(o));
        if (sscanf(line, "overlap %lld %d %lld %n", &o.in.time_ms, &o.in.pid, &o.in.id, &used) == 3) {
            parse_tag_model(&o.in, line + used);
            PUSH(t->log, t->n_log, o);
        } else if (t->n_log > 0 && sscanf(line, "  with %lld %d %lld %n", &o.other.time_ms, &o.other.pid,
                                          &o.other.id, &used) == 3) {
            parse_tag_model(&o.other, line + used);
            t->log[t->n_log - 1].other = o.other;
        }
    }
}

static void render_job(strbuf* sb, const char* kind, const job* j) {
    sb_printf(sb, "%s %lld %d %lld %s %s\n", kind, j->time_ms, j->pid, j->id, j->tag, j->model);
}

static void render_jobs(const job_table* t, strbuf* sb) {
    sb_printf(sb, "rksim-npu-jobs 2\nnext_job %lld\njobs %lld\noverlaps %lld\nmax_active %lld\n", t->next_job,
              t->jobs, t->overlaps, t->max_active);
    for (int i = 0; i < t->n_active; i++) {
        const job* j = &t->active[i];
        sb_printf(sb, "active %lld %d %llu %lld %s %s\n", j->id, j->pid, j->start_time, j->time_ms, j->tag,
                  j->model);
    }
    for (int i = 0; i < t->n_log; i++) {
        render_job(sb, "overlap", &t->log[i].in);
        render_job(sb, "  with", &t->log[i].other);
    }
}

/* Opens and locks the job file, loads it and drops the jobs of dead processes; -1 on error. */
static int jobs_open(job_table* t) {
    memset(t, 0, sizeof(*t));
    t->next_job = 1;
    char path[PATH_MAX];
    int fd = locked_file_open(jobs_path(path, sizeof(path)));
    if (fd < 0) return -1;
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
    locked_file_close(fd, &sb);
    sb_free(&sb);
    free(t->active);
    free(t->log);
}

/* The prompt's first word, so a test can tell which request a run served ("-" when there is none). */
static void set_tag(char* tag, const RKLLMInput* in) {
    const char* prompt = !in                                       ? NULL
                         : in->input_type == RKLLM_INPUT_PROMPT     ? in->prompt_input
                         : in->input_type == RKLLM_INPUT_MULTIMODAL ? in->multimodal_input.prompt
                                                                    : NULL;
    size_t skip = prompt ? strspn(prompt, " \t\r\n") : 0;
    size_t n = prompt ? strcspn(prompt + skip, " \t\r\n") : 0;
    if (n == 0) snprintf(tag, TAG_LEN, "-");
    else snprintf(tag, TAG_LEN, "%.*s", (int)(n < TAG_LEN - 1 ? n : TAG_LEN - 1), prompt + skip);
}

long long sim_npu_job_enter(const char* model_path, const RKLLMInput* input) {
    job_table t;
    int fd = jobs_open(&t);
    if (fd < 0) return 0;
    job j;
    memset(&j, 0, sizeof(j));
    j.id = t.next_job++;
    j.pid = getpid();
    j.start_time = self_start_time();
    j.time_ms = now_ms();
    set_tag(j.tag, input);
    snprintf(j.model, sizeof(j.model), "%s", model_path ? model_path : "");
    t.jobs++;
    if (t.n_active > 0) {
        t.overlaps++;
        if (t.n_log < SIM_NPU_OVERLAP_LOG) {
            job_overlap o = {j, t.active[0]};
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
