/* The simulated model's view of image embeddings.
 *
 * rkllm-runtime.md §1.1 and the rknn-llm multimodal demo: the prompt carries an "<image>" placeholder per image,
 * which the runtime replaces with the image's n_image_tokens embedding rows (between the model's image start /
 * end tags, from RKLLMParam.img_* before 1.3.0 and from the per-call image struct since). The simulator names
 * each image by a hash of its rows and says that name where the rows would go, so the echoed reply depends on
 * the image: two different images give two different answers, the same image the same one. Before 1.2.1 the
 * input has no n_image, so the embedding is one image's. */
#include "multimodal.h"

#include <stdio.h>
#include <string.h>

#include "strbuf.h"

static unsigned int embed_hash(const float* rows, size_t n_floats) {
    unsigned int h = 2166136261u;
    const unsigned char* p = (const unsigned char*)rows;
    for (size_t i = 0; i < n_floats * sizeof(float); i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

char* sim_multimodal_prompt(const RKLLMMultiModalInput* in, int embd_size) {
#if SIM_ABI >= 130
    const float* embed = in->image.image_embed;
    size_t tokens = in->image.n_image_tokens;
    size_t n_image = in->image.n_image;
#elif SIM_ABI >= 121
    const float* embed = in->image_embed;
    size_t tokens = in->n_image_tokens;
    size_t n_image = in->n_image;
#else
    const float* embed = in->image_embed;
    size_t tokens = in->n_image_tokens;
    size_t n_image = 1;
#endif
    if (!embed || !tokens) n_image = 0;
    size_t row = embd_size > 0 ? (size_t)embd_size : 1;
    const char* text = in->prompt ? in->prompt : "";
    strbuf sb;
    sb_init(&sb);
    size_t next = 0;
    const size_t plen = strlen(SIM_IMAGE_PLACEHOLDER);
    int placeholders = 0;
    for (const char* q = strstr(text, SIM_IMAGE_PLACEHOLDER); q; q = strstr(q + plen, SIM_IMAGE_PLACEHOLDER))
        placeholders++;
    /* images beyond the placeholders are named before the text */
    for (; next < n_image && (int)(n_image - next) > placeholders; next++)
        sb_printf(&sb, "image:%08x ", embed_hash(embed + next * tokens * row, tokens * row));
    const char* p = text;
    for (const char* q = strstr(p, SIM_IMAGE_PLACEHOLDER); q; q = strstr(p, SIM_IMAGE_PLACEHOLDER)) {
        sb_putn(&sb, p, (size_t)(q - p));
        if (next < n_image) {
            sb_printf(&sb, " image:%08x ", embed_hash(embed + next * tokens * row, tokens * row));
            next++;
        }
        p = q + plen;
    }
    sb_puts(&sb, p);
    return sb_take(&sb);
}
