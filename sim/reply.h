/* The simulated model's "text": the reply is a deterministic function of the prompt, so tests can
 * predict it exactly (tests/simkit/replies.py mirrors every rule here; keep them in step). */
#ifndef RKSIM_REPLY_H
#define RKSIM_REPLY_H

#include <stdint.h>

typedef struct {
    char** words;    /* echo words: template markers, role names and directives removed */
    int n_words;
    int n_directive; /* [[n=NNN]] or -1 */
    int think;       /* [[think]] */
    int tool;        /* [[tool]] */
    int utf8;        /* [[utf8]] */
    int prompt_tokens; /* whitespace-separated words of the whole templated prompt, at least 1 */
    int has_digest;    /* context_reply: the reply starts with the word ctx<digest> (kv_context.h) */
    uint32_t digest;
} sim_prompt;

void sim_prompt_parse(const char* text, sim_prompt* p);
/* For token / embedding inputs, which carry no text. */
void sim_prompt_from_words(sim_prompt* p, char** words, int n_words, int prompt_tokens);
void sim_prompt_free(sim_prompt* p);

typedef enum { SIM_STREAM_ECHO, SIM_STREAM_TOOL, SIM_STREAM_GARBAGE } sim_stream_kind;

/* A lazily produced sequence of raw tokens (one per callback). */
typedef struct {
    const sim_prompt* prompt;
    sim_stream_kind kind;
    const char* lora;      /* prefix "name:" for echo words, or NULL */
    const char* tool_name;
    const char* garbage;   /* text of every garbage token */
    long long logical;     /* index of the logical token being emitted */
    int byte_off;          /* position inside a multi-byte character being split */
} sim_stream;

typedef struct {
    char text[1024];
    int waiting; /* 1: an incomplete UTF-8 piece (RKLLM_RUN_WAITING) */
    int32_t token_id;
} sim_token;

/* Length of the tool-call stream; echo/garbage streams are endless and cut by the caller. */
#define SIM_TOOL_STREAM_LEN 7

void sim_stream_init(sim_stream* s, const sim_prompt* p, sim_stream_kind kind, const char* lora,
                     const char* tool_name, const char* garbage);
/* Produces the next raw token; returns 0 when a finite stream (tool call) has ended. */
int sim_stream_next(sim_stream* s, sim_token* out);
int32_t sim_token_id(const char* text);
/* First "name" value in a JSON tools list (OpenAI format); caller frees; NULL if none. */
char* sim_first_tool_name(const char* tools_json);

#endif
