#include "reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define THINK_WORDS_MAX 8

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Chat-template control text is not "said" by the model: special tokens <|...|>, Gemma's
 * <start_of_turn>/<end_of_turn>, and the role name glued to a turn-start marker are replaced by a space. */
static char* strip_markers(const char* text) {
    strbuf sb;
    sb_init(&sb);
    const char* p = text;
    while (*p) {
        int skip_role = 0;
        if (p[0] == '<' && p[1] == '|') {
            const char* end = strstr(p + 2, "|>");
            if (!end) {
                sb_putn(&sb, p, 1);
                p++;
                continue;
            }
            size_t name_len = (size_t)(end - (p + 2));
            skip_role = (name_len == 8 && !strncmp(p + 2, "im_start", 8)) ||
                        (name_len == 15 && !strncmp(p + 2, "start_header_id", 15));
            p = end + 2;
        } else if (!strncmp(p, "<start_of_turn>", 15)) {
            p += 15;
            skip_role = 1;
        } else if (!strncmp(p, "<end_of_turn>", 13)) {
            p += 13;
        } else {
            sb_putn(&sb, p, 1);
            p++;
            continue;
        }
        sb_putn(&sb, " ", 1);
        if (skip_role)
            while (*p && !is_space(*p) && *p != '<') p++;
    }
    return sb_take(&sb);
}

static int count_words(const char* text) {
    int n = 0;
    const char* p = text;
    while (*p) {
        while (*p && is_space(*p)) p++;
        if (!*p) break;
        n++;
        while (*p && !is_space(*p)) p++;
    }
    return n;
}

static void apply_directive(sim_prompt* p, const char* w, size_t len) {
    /* w is "[[...]]" */
    const char* body = w + 2;
    size_t blen = len - 4;
    if (blen > 2 && !strncmp(body, "n=", 2)) {
        char num[32];
        size_t n = blen - 2 < sizeof(num) - 1 ? blen - 2 : sizeof(num) - 1;
        memcpy(num, body + 2, n);
        num[n] = '\0';
        p->n_directive = atoi(num);
    } else if (blen == 5 && !strncmp(body, "think", 5)) {
        p->think = 1;
    } else if (blen == 4 && !strncmp(body, "tool", 4)) {
        p->tool = 1;
    } else if (blen == 4 && !strncmp(body, "utf8", 4)) {
        p->utf8 = 1;
    }
}

void sim_prompt_parse(const char* text, sim_prompt* p) {
    memset(p, 0, sizeof(*p));
    p->n_directive = -1;
    if (!text) text = "";
    p->prompt_tokens = count_words(text);
    if (p->prompt_tokens < 1) p->prompt_tokens = 1;
    char* clean = strip_markers(text);
    int cap = count_words(clean) + 1;
    p->words = sim_xcalloc((size_t)cap, sizeof(char*));
    const char* q = clean;
    while (*q) {
        while (*q && is_space(*q)) q++;
        if (!*q) break;
        const char* start = q;
        while (*q && !is_space(*q)) q++;
        size_t len = (size_t)(q - start);
        if (len >= 4 && !strncmp(start, "[[", 2) && !strncmp(q - 2, "]]", 2)) {
            apply_directive(p, start, len);
            continue;
        }
        char* w = sim_xmalloc(len + 1);
        memcpy(w, start, len);
        w[len] = '\0';
        /* rkllm special tokens that survived marker stripping (unterminated, or "|>" alone). */
        if (strstr(w, "<|") || strstr(w, "|>")) {
            free(w);
            continue;
        }
        p->words[p->n_words++] = w;
    }
    free(clean);
    if (p->n_words == 0) p->words[p->n_words++] = sim_strdup("ok");
}

void sim_prompt_from_words(sim_prompt* p, char** words, int n_words, int prompt_tokens) {
    memset(p, 0, sizeof(*p));
    p->n_directive = -1;
    p->words = words;
    p->n_words = n_words;
    p->prompt_tokens = prompt_tokens < 1 ? 1 : prompt_tokens;
}

void sim_prompt_free(sim_prompt* p) {
    for (int i = 0; i < p->n_words; i++) free(p->words[i]);
    free(p->words);
    memset(p, 0, sizeof(*p));
}

/* FNV-1a: stable across processes and builds, trivially mirrored in Python. */
int32_t sim_token_id(const char* text) {
    const unsigned char* s = (const unsigned char*)text;
    if (*s == ' ') s++;
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= *s;
        h *= 16777619u;
    }
    return (int32_t)(h % 32000u);
}

void sim_stream_init(sim_stream* s, const sim_prompt* p, sim_stream_kind kind, const char* lora,
                     const char* tool_name, const char* garbage) {
    memset(s, 0, sizeof(*s));
    s->prompt = p;
    s->kind = kind;
    s->lora = lora;
    s->tool_name = tool_name;
    s->garbage = garbage;
}

static const char* const UTF8_CHARS[] = {"\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80"}; /* é 中 😀 */

/* The echo stream before UTF-8 splitting: element k of the reply as whole text. */
static void echo_element(const sim_stream* s, long long k, char* out, size_t len, int* is_char) {
    const sim_prompt* p = s->prompt;
    *is_char = 0;
    if (p->has_digest) {
        if (k == 0) {
            snprintf(out, len, " ctx%08x", (unsigned)p->digest);
            return;
        }
        k--;
    }
    long long base = k;
    if (p->utf8) {
        if (k % 2 == 1) {
            snprintf(out, len, "%s", UTF8_CHARS[(k / 2) % 3]);
            *is_char = 1;
            return;
        }
        base = k / 2;
    }
    long long word = base;
    if (p->think) {
        long long t = p->n_words < THINK_WORDS_MAX ? p->n_words : THINK_WORDS_MAX;
        if (base == 0) {
            snprintf(out, len, "<think>");
            return;
        }
        if (base == t + 1) {
            snprintf(out, len, "</think>");
            return;
        }
        word = base <= t ? base - 1 : base - t - 2;
    }
    const char* w = p->words[word % p->n_words];
    if (s->lora) snprintf(out, len, " %s:%s", s->lora, w);
    else snprintf(out, len, " %s", w);
}

int sim_stream_next(sim_stream* s, sim_token* out) {
    memset(out, 0, sizeof(*out));
    if (s->kind == SIM_STREAM_GARBAGE) {
        snprintf(out->text, sizeof(out->text), "%s", s->garbage);
    } else if (s->kind == SIM_STREAM_TOOL) {
        switch (s->logical) {
        case 0: snprintf(out->text, sizeof(out->text), "<tool_call>"); break;
        case 1: snprintf(out->text, sizeof(out->text), "\n"); break;
        case 2: snprintf(out->text, sizeof(out->text), "{\"name\": \""); break;
        case 3: snprintf(out->text, sizeof(out->text), "%s", s->tool_name); break;
        case 4: snprintf(out->text, sizeof(out->text), "\", \"arguments\": {}}"); break;
        case 5: snprintf(out->text, sizeof(out->text), "\n"); break;
        case 6: snprintf(out->text, sizeof(out->text), "</tool_call>"); break;
        default: return 0;
        }
    } else {
        char elem[1024];
        int is_char = 0;
        echo_element(s, s->logical, elem, sizeof(elem), &is_char);
        if (is_char) {
            /* rkllm-runtime.md §1.2: RKLLM_RUN_WAITING = "incomplete UTF-8 char, wait for next"; byte-level
             * tokens of one character arrive one per callback, all but the last flagged WAITING. */
            size_t n = strlen(elem);
            out->text[0] = elem[s->byte_off];
            out->text[1] = '\0';
            out->waiting = (size_t)s->byte_off + 1 < n;
            out->token_id = sim_token_id(out->text);
            if (out->waiting) {
                s->byte_off++;
                return 1;
            }
            s->byte_off = 0;
            s->logical++;
            return 1;
        }
        snprintf(out->text, sizeof(out->text), "%s", elem);
    }
    out->token_id = sim_token_id(out->text);
    s->logical++;
    return 1;
}

char* sim_first_tool_name(const char* tools_json) {
    if (!tools_json) return NULL;
    const char* k = strstr(tools_json, "\"name\"");
    if (!k) return NULL;
    k += 6;
    while (*k && (is_space(*k) || *k == ':')) k++;
    if (*k != '"') return NULL;
    k++;
    const char* end = k;
    while (*end && *end != '"') {
        if (*end == '\\' && end[1]) end++;
        end++;
    }
    size_t n = (size_t)(end - k);
    char* name = sim_xmalloc(n + 1);
    memcpy(name, k, n);
    name[n] = '\0';
    return name;
}
