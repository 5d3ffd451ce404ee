#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void* sim_xmalloc(size_t n) {
    void* p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

void* sim_xcalloc(size_t n, size_t size) {
    void* p = calloc(n ? n : 1, size ? size : 1);
    if (!p) abort();
    return p;
}

char* sim_strdup(const char* s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    char* d = sim_xmalloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

void sb_init(strbuf* sb) {
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
}

void sb_free(strbuf* sb) {
    free(sb->data);
    sb_init(sb);
}

static void sb_reserve(strbuf* sb, size_t extra) {
    if (sb->len + extra + 1 <= sb->cap) return;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + extra + 1) cap *= 2;
    char* d = realloc(sb->data, cap);
    if (!d) abort();
    sb->data = d;
    sb->cap = cap;
}

char* sb_take(strbuf* sb) {
    sb_reserve(sb, 0);
    sb->data[sb->len] = '\0';
    char* d = sb->data;
    sb_init(sb);
    return d;
}

void sb_putn(strbuf* sb, const char* s, size_t n) {
    sb_reserve(sb, n);
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void sb_puts(strbuf* sb, const char* s) { sb_putn(sb, s, strlen(s)); }

void sb_printf(strbuf* sb, const char* fmt, ...) {
    if (!fmt) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sb_reserve(sb, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void sb_json_str(strbuf* sb, const char* s) {
    if (!s) {
        sb_puts(sb, "null");
        return;
    }
    sb_putn(sb, "\"", 1);
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        switch (*p) {
        case '"': sb_puts(sb, "\\\""); break;
        case '\\': sb_puts(sb, "\\\\"); break;
        case '\n': sb_puts(sb, "\\n"); break;
        case '\r': sb_puts(sb, "\\r"); break;
        case '\t': sb_puts(sb, "\\t"); break;
        default:
            if (*p < 0x20) sb_printf(sb, "\\u%04x", *p);
            else sb_putn(sb, (const char*)p, 1);
        }
    }
    sb_putn(sb, "\"", 1);
}

void sb_key(strbuf* sb, int* first, const char* key) {
    if (!*first) sb_putn(sb, ",", 1);
    *first = 0;
    sb_json_str(sb, key);
    sb_putn(sb, ":", 1);
}

void sb_kv_str(strbuf* sb, int* first, const char* key, const char* value) {
    sb_key(sb, first, key);
    sb_json_str(sb, value);
}

void sb_kv_int(strbuf* sb, int* first, const char* key, long long value) {
    sb_key(sb, first, key);
    sb_printf(sb, "%lld", value);
}

void sb_kv_num(strbuf* sb, int* first, const char* key, double value) {
    sb_key(sb, first, key);
    /* %.9g round-trips a float exactly, so tests can compare against ctypes.c_float values. */
    sb_printf(sb, "%.9g", value);
}

void sb_kv_bool(strbuf* sb, int* first, const char* key, int value) {
    sb_key(sb, first, key);
    sb_puts(sb, value ? "true" : "false");
}
