/* A growable string, used for JSON introspection and the state file. Allocation failure aborts:
 * the simulator is a test tool and a half-written JSON document would only hide the real problem. */
#ifndef RKSIM_STRBUF_H
#define RKSIM_STRBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char* data;
    size_t len;
    size_t cap;
} strbuf;

void sb_init(strbuf* sb);
void sb_free(strbuf* sb);
char* sb_take(strbuf* sb); /* caller frees; sb is reset */
void sb_putn(strbuf* sb, const char* s, size_t n);
void sb_puts(strbuf* sb, const char* s);
void sb_printf(strbuf* sb, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
/* JSON string literal (with quotes) for s, or null when s is NULL. */
void sb_json_str(strbuf* sb, const char* s);
/* "key": prefixes; `first` tracks whether a comma is needed. */
void sb_key(strbuf* sb, int* first, const char* key);
void sb_kv_str(strbuf* sb, int* first, const char* key, const char* value);
void sb_kv_int(strbuf* sb, int* first, const char* key, long long value);
void sb_kv_num(strbuf* sb, int* first, const char* key, double value);
void sb_kv_bool(strbuf* sb, int* first, const char* key, int value);

char* sim_strdup(const char* s); /* NULL-safe */
void* sim_xmalloc(size_t n);
void* sim_xcalloc(size_t n, size_t size);

#endif
