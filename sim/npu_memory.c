#include "npu_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flavour.h"
#include "model_file.h"
#include "strbuf.h"
#include "state_file.h"

/* rkllm-runtime.md §2.2: a model starts in base_domain_id and large models continue into the following
 * domains (#62, #68, #229 "switch iommu domain from 0 to 1"). The runtime fills each domain as if it were
 * its own, which is why two 4 GB models in domain 0 fail while base_domain_id 0 and 1 work (#437). */
static void place(long long bytes, int base, long long shares[SIM_DOMAINS], int* overflow_domain) {
    memset(shares, 0, sizeof(long long) * SIM_DOMAINS);
    *overflow_domain = -1;
    long long left = bytes;
    int d = base < 0 ? 0 : base;
    while (left > 0) {
        if (d >= SIM_DOMAINS) {
            /* No domain left: charge the rest to the last one, which then overflows. */
            shares[SIM_DOMAINS - 1] += left;
            *overflow_domain = SIM_DOMAINS - 1;
            return;
        }
        long long chunk = left < SIM_DOMAIN_BYTES ? left : SIM_DOMAIN_BYTES;
        shares[d] += chunk;
        left -= chunk;
        d++;
    }
}

static void record_overcommit(state* s, const sim_reserve_request* req, const char* kind, long long size,
                              int domain) {
    overcommit o;
    memset(&o, 0, sizeof(o));
    o.time_ms = now_ms();
    o.pid = getpid();
    snprintf(o.kind, sizeof(o.kind), "%s", kind);
    o.bytes = size;
    snprintf(o.mode, sizeof(o.mode), "%s", req->mode);
    o.domain = domain;
    snprintf(o.path, sizeof(o.path), "%s", req->model_path ? req->model_path : "");
    s->overcommits++;
    PUSH(s->oc, s->n_oc, o);
}

static reservation make_reservation(state* s, const sim_reserve_request* req, const long long* shares) {
    reservation r;
    memset(&r, 0, sizeof(r));
    r.id = s->next_id++;
    r.pid = getpid();
    r.start_time = self_start_time();
    r.base_domain = req->base_domain;
    r.bytes = req->bytes;
    memcpy(r.domain_bytes, shares, sizeof(r.domain_bytes));
    snprintf(r.version, sizeof(r.version), "%s", SIM_VERSION_STRING);
    snprintf(r.path, sizeof(r.path), "%s", req->model_path ? req->model_path : "");
    return r;
}

/* The "kernel OOM killer": the process holding the most simulated NPU memory dies (ties: the loader). */
static int pick_oom_victim(const state* s, long long* victim_bytes) {
    int me = getpid();
    int best = me;
    long long best_bytes = -1;
    for (int i = 0; i < s->n_res; i++) {
        int pid = s->res[i].pid;
        long long total = 0;
        for (int j = 0; j < s->n_res; j++)
            if (s->res[j].pid == pid) total += s->res[j].bytes;
        if (total > best_bytes || (total == best_bytes && pid == me)) {
            best = pid;
            best_bytes = total;
        }
    }
    *victim_bytes = best_bytes < 0 ? 0 : best_bytes;
    return best;
}

sim_reserve_outcome sim_state_reserve(const sim_reserve_request* req, sim_reserve_result* out) {
    memset(out, 0, sizeof(*out));
    state s;
    int fd = state_open(&s);
    if (fd < 0) return SIM_RESERVE_STATE_ERROR;

    long long shares[SIM_DOMAINS];
    int overflow = -1;
    place(req->bytes, req->base_domain, shares, &overflow);
    long long ram = sim_ram_bytes();
    long long used = used_total(&s);
    const char* kind = NULL;
    long long failed = 0;
    int failed_domain = -1;
    if (used + req->bytes > ram) {
        /* The allocation that crosses the RAM line is the one whose malloc fails. */
        long long acc = used;
        for (int d = 0; d < SIM_DOMAINS; d++) {
            if (!shares[d]) continue;
            if (acc + shares[d] > ram) {
                failed = shares[d];
                failed_domain = d;
                break;
            }
            acc += shares[d];
        }
        kind = "ram";
    } else {
        for (int d = 0; d < SIM_DOMAINS; d++) {
            if (shares[d] && (used_domain(&s, d) + shares[d] > SIM_DOMAIN_BYTES || d == overflow)) {
                kind = "domain";
                failed = shares[d];
                failed_domain = d;
                break;
            }
        }
    }
    if (!kind) {
        reservation r = make_reservation(&s, req, shares);
        PUSH(s.res, s.n_res, r);
        out->id = r.id;
        state_close(fd, &s, 1);
        return SIM_RESERVE_OK;
    }

    out->kind = kind;
    out->failed_size = failed;
    record_overcommit(&s, req, kind, failed, failed_domain);
    sim_reserve_outcome outcome;
    if (!strcmp(req->mode, "garbage") || !strcmp(req->mode, "oom")) {
        reservation r = make_reservation(&s, req, shares);
        PUSH(s.res, s.n_res, r);
        out->id = r.id;
        outcome = SIM_RESERVE_GARBAGE;
        if (!strcmp(req->mode, "oom")) {
            long long vbytes = 0;
            int victim = pick_oom_victim(&s, &vbytes);
            oom_kill k = {now_ms(), victim, getpid(), vbytes};
            PUSH(s.oom, s.n_oom, k);
            int kept = 0;
            for (int i = 0; i < s.n_res; i++)
                if (s.res[i].pid != victim) s.res[kept++] = s.res[i];
            s.n_res = kept;
            out->victim_pid = victim;
            if (victim == getpid()) {
                outcome = SIM_RESERVE_OOM_SELF;
            } else {
                kill(victim, SIGKILL);
                outcome = SIM_RESERVE_OK;
            }
        }
    } else if (!strcmp(req->mode, "segv")) {
        outcome = SIM_RESERVE_SEGV;
    } else {
        outcome = SIM_RESERVE_FAIL;
    }
    state_close(fd, &s, 1);
    return outcome;
}

void sim_state_release(long long id) {
    if (id <= 0) return;
    state s;
    int fd = state_open(&s);
    if (fd < 0) return;
    int kept = 0;
    for (int i = 0; i < s.n_res; i++)
        if (s.res[i].id != id) s.res[kept++] = s.res[i];
    s.n_res = kept;
    state_close(fd, &s, 1);
}

int sim_state_is_overcommitted(long long id) {
    state s;
    int fd = state_open(&s);
    if (fd < 0) return 0;
    int bad = used_total(&s) > sim_ram_bytes();
    for (int i = 0; i < s.n_res && !bad; i++) {
        if (s.res[i].id != id) continue;
        for (int d = 0; d < SIM_DOMAINS; d++)
            if (s.res[i].domain_bytes[d] && used_domain(&s, d) > SIM_DOMAIN_BYTES) bad = 1;
    }
    state_close(fd, &s, 1);
    return bad;
}

char* sim_state_json(void) {
    state s;
    int fd = state_open(&s);
    strbuf sb;
    sb_init(&sb);
    char path[PATH_MAX];
    int first = 1;
    sb_puts(&sb, "{");
    sb_kv_str(&sb, &first, "path", sim_state_path(path, sizeof(path)));
    sb_kv_int(&sb, &first, "ram_bytes", sim_ram_bytes());
    sb_kv_int(&sb, &first, "domain_bytes", SIM_DOMAIN_BYTES);
    sb_kv_int(&sb, &first, "n_domains", SIM_DOMAINS);
    if (fd < 0) {
        sb_kv_str(&sb, &first, "error", "cannot open state file");
        sb_puts(&sb, "}");
        return sb_take(&sb);
    }
    sb_kv_int(&sb, &first, "used_bytes", used_total(&s));
    sb_key(&sb, &first, "domain_used");
    sb_puts(&sb, "[");
    for (int d = 0; d < SIM_DOMAINS; d++) sb_printf(&sb, "%s%lld", d ? "," : "", used_domain(&s, d));
    sb_puts(&sb, "]");
    sb_key(&sb, &first, "reservations");
    sb_puts(&sb, "[");
    for (int i = 0; i < s.n_res; i++) {
        const reservation* r = &s.res[i];
        int f2 = 1;
        sb_puts(&sb, i ? ",{" : "{");
        sb_kv_int(&sb, &f2, "id", r->id);
        sb_kv_int(&sb, &f2, "pid", r->pid);
        sb_kv_int(&sb, &f2, "start_time", (long long)r->start_time);
        sb_kv_int(&sb, &f2, "base_domain", r->base_domain);
        sb_kv_int(&sb, &f2, "bytes", r->bytes);
        sb_key(&sb, &f2, "domains");
        sb_puts(&sb, "{");
        int f3 = 1;
        for (int d = 0; d < SIM_DOMAINS; d++) {
            if (!r->domain_bytes[d]) continue;
            char key[16];
            snprintf(key, sizeof(key), "%d", d);
            sb_kv_int(&sb, &f3, key, r->domain_bytes[d]);
        }
        sb_puts(&sb, "}");
        sb_kv_str(&sb, &f2, "version", r->version);
        sb_kv_str(&sb, &f2, "model", r->path);
        sb_puts(&sb, "}");
    }
    sb_puts(&sb, "]");
    sb_kv_int(&sb, &first, "overcommits", s.overcommits);
    sb_key(&sb, &first, "overcommit_log");
    sb_puts(&sb, "[");
    for (int i = 0; i < s.n_oc; i++) {
        const overcommit* o = &s.oc[i];
        int f2 = 1;
        sb_puts(&sb, i ? ",{" : "{");
        sb_kv_int(&sb, &f2, "time_ms", o->time_ms);
        sb_kv_int(&sb, &f2, "pid", o->pid);
        sb_kv_str(&sb, &f2, "kind", o->kind);
        sb_kv_int(&sb, &f2, "bytes", o->bytes);
        sb_kv_str(&sb, &f2, "mode", o->mode);
        sb_kv_int(&sb, &f2, "domain", o->domain);
        sb_kv_str(&sb, &f2, "model", o->path);
        sb_puts(&sb, "}");
    }
    sb_puts(&sb, "]");
    sb_key(&sb, &first, "oom_kills");
    sb_puts(&sb, "[");
    for (int i = 0; i < s.n_oom; i++) {
        int f2 = 1;
        sb_puts(&sb, i ? ",{" : "{");
        sb_kv_int(&sb, &f2, "time_ms", s.oom[i].time_ms);
        sb_kv_int(&sb, &f2, "victim_pid", s.oom[i].victim);
        sb_kv_int(&sb, &f2, "killer_pid", s.oom[i].killer);
        sb_kv_int(&sb, &f2, "bytes", s.oom[i].bytes);
        sb_puts(&sb, "}");
    }
    sb_puts(&sb, "]}");
    state_close(fd, &s, 1);
    return sb_take(&sb);
}
