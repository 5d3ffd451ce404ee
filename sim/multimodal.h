/* What the simulated model "sees" of a multimodal input: its prompt with every image placeholder replaced by
 * a word naming the image embedding it received. */
#ifndef RKSIM_MULTIMODAL_H
#define RKSIM_MULTIMODAL_H

#include "rkllm_abi.h"

/* The image placeholder in a multimodal prompt (the rknn-llm multimodal demo's "<image>"). */
#define SIM_IMAGE_PLACEHOLDER "<image>"

/* The prompt with each "<image>" replaced by "image:XXXXXXXX" (a hash of that image's embedding rows; images
 * without a placeholder are named at the front). embd_size is the model's hidden size, which is the width
 * of each embedding row. Caller frees. */
char* sim_multimodal_prompt(const RKLLMMultiModalInput* in, int embd_size);

#endif
