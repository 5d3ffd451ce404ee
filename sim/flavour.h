/* Which librkllmrt release this build imitates. The Makefile passes SIM_V_MAJOR/MINOR/PATCH;
 * everything that differs between releases is derived here, so the other sources test features,
 * never version numbers. */
#ifndef RKSIM_FLAVOUR_H
#define RKSIM_FLAVOUR_H

#if !defined(SIM_V_MAJOR) || !defined(SIM_V_MINOR) || !defined(SIM_V_PATCH)
#error "build with -DSIM_V_MAJOR=.. -DSIM_V_MINOR=.. -DSIM_V_PATCH=.. (see sim/Makefile)"
#endif

#define SIM_STR2(x) #x
#define SIM_STR(x) SIM_STR2(x)
#define SIM_VERSION_NUM (SIM_V_MAJOR * 10000 + SIM_V_MINOR * 100 + SIM_V_PATCH)
#define SIM_VERSION_STRING SIM_STR(SIM_V_MAJOR) "." SIM_STR(SIM_V_MINOR) "." SIM_STR(SIM_V_PATCH)

/* rkllm-runtime.md §1.1: ABI-equivalence classes {1.1.0-1.1.4}, {1.2.0}, {1.2.1b1}, {1.2.1-1.2.3}, {1.3.0}.
 * SIM_ABI names the class (1.2.1b1 is not built). */
#if SIM_VERSION_NUM >= 10300
#define SIM_ABI 130
#elif SIM_VERSION_NUM >= 10201
#define SIM_ABI 121
#elif SIM_VERSION_NUM >= 10200
#define SIM_ABI 120
#elif SIM_VERSION_NUM >= 10100
#define SIM_ABI 110
#else
#error "the simulator starts at the 1.1 API generation"
#endif

/* rkllm-runtime.md §1.1 (v1.2.0 row): clear_kv_cache(2 args), set_chat_template, keep_history, n_keep. */
#define SIM_HAS_CHAT_TEMPLATE (SIM_ABI >= 120)
#define SIM_HAS_KEEP_HISTORY (SIM_ABI >= 120)
/* rkllm-runtime.md §1.1 (v1.2.1 row): int callback, perf stats, clear_kv_cache(4 args), get_kv_cache_size,
 * function tools, cross attention, role/enable_thinking. */
#define SIM_CALLBACK_RETURNS_INT (SIM_ABI >= 121)
#define SIM_HAS_PERF (SIM_ABI >= 121)
#define SIM_HAS_TOOLS (SIM_ABI >= 121)
/* rkllm-runtime.md §1.1 (v1.3.0 row): rkllm_init takes RKLLMCallback*, per-run sampling and max_new_tokens. */
#define SIM_HAS_CALLBACK_STRUCT (SIM_ABI >= 130)

/* rkllm-runtime.md §3: several handles in one process print commas before 1.2.2 (#367);
 * 1.2.2 changelog "Supported for multi-instance inference". */
#define SIM_MULTI_INSTANCE_BROKEN (SIM_VERSION_NUM < 10202)
/* rkllm-runtime.md §1.2 table, rkllm_run_async: broken in 1.2.1 (#320, #321), fixed in 1.2.2. */
#define SIM_RUN_ASYNC_BROKEN (SIM_VERSION_NUM == 10201)
/* rkllm-runtime.md §1.2 table, rkllm_init: #522, 1.3.0 segfaults where older runtimes returned -1. */
#if SIM_VERSION_NUM >= 10300
#define SIM_DEFAULT_OVERCOMMIT "segv"
#else
#define SIM_DEFAULT_OVERCOMMIT "fail"
#endif

#define SIM_API __attribute__((visibility("default")))

#endif
