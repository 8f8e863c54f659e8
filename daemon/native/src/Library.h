// The llama.cpp functions the engine uses, resolved by dlopen from one variant's prebuilt libraries
// (CPU, CUDA, Vulkan, a local build): one addon binary serves them all. The headers only declare.
#pragma once
#include <string>
#include "llama.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#define NANOLLM_LLAMA_FNS(X)                                                                         \
  X(llama_backend_init) X(llama_log_set) X(llama_print_system_info)                                  \
  X(llama_model_default_params) X(llama_model_load_from_file) X(llama_model_free)                    \
  X(llama_model_get_vocab) X(llama_model_n_ctx_train) X(llama_model_n_embd) X(llama_model_size)      \
  X(llama_model_n_params) X(llama_model_meta_val_str) X(llama_model_has_encoder)                     \
  X(llama_model_is_recurrent) X(llama_model_is_hybrid)                                               \
  X(llama_context_default_params) X(llama_init_from_model) X(llama_free) X(llama_n_ctx)              \
  X(llama_n_ctx_seq) X(llama_n_batch)                                                                \
  X(llama_get_memory) X(llama_memory_seq_rm) X(llama_memory_clear) X(llama_memory_seq_pos_max)       \
  X(llama_memory_seq_cp)                                                                             \
  X(llama_set_n_threads) X(llama_attach_threadpool) X(llama_detach_threadpool)                       \
  X(llama_batch_init) X(llama_batch_free) X(llama_decode) X(llama_get_logits_ith)                    \
  X(llama_state_seq_save_file) X(llama_state_seq_load_file)                                          \
  X(llama_vocab_n_tokens) X(llama_vocab_is_eog) X(llama_vocab_bos) X(llama_vocab_eos)                \
  X(llama_vocab_eot) X(llama_vocab_get_add_bos) X(llama_tokenize) X(llama_token_to_piece)            \
  X(llama_detokenize)                                                                                \
  X(llama_sampler_chain_default_params) X(llama_sampler_chain_init) X(llama_sampler_chain_add)       \
  X(llama_sampler_init_greedy) X(llama_sampler_init_dist) X(llama_sampler_init_top_k)                \
  X(llama_sampler_init_top_p) X(llama_sampler_init_temp) X(llama_sampler_init_penalties)             \
  X(llama_sampler_init_grammar) X(llama_sampler_apply) X(llama_sampler_accept)                       \
  X(llama_sampler_clone) X(llama_sampler_free)

#define NANOLLM_GGML_FNS(X)                                                                          \
  X(ggml_backend_load_all_from_path) X(ggml_backend_reg_by_name) X(ggml_backend_reg_get_proc_address) \
  X(ggml_backend_dev_count) X(ggml_backend_dev_get) X(ggml_backend_dev_type) X(ggml_backend_dev_name) \
  X(ggml_threadpool_params_default) X(ggml_backend_load) X(ggml_backend_unload) X(ggml_backend_reg_count) \
  X(ggml_backend_reg_get) X(ggml_backend_reg_name)

struct Api {
#define NANOLLM_DECLARE(name) decltype(&::name) name = nullptr;
  NANOLLM_LLAMA_FNS(NANOLLM_DECLARE)
  NANOLLM_GGML_FNS(NANOLLM_DECLARE)
#undef NANOLLM_DECLARE
  // From the CPU backend's registry (absent on a backend-less build): a persistent threadpool.
  decltype(&::ggml_threadpool_new) threadpool_new = nullptr;
  decltype(&::ggml_threadpool_free) threadpool_free = nullptr;
};

/** The loaded variant; `api()` is valid after a successful `loadLibrary`. */
const Api& api();
bool libraryLoaded();

/**
 * dlopens `llamaPath` and `ggmlPath` (the dependencies resolve through the libraries' own
 * $ORIGIN runpath), resolves every function, loads the backends in `backendDir`, then, when
 * `cpuBackend` names a CPU backend built here (native/cpu.mjs) that this CPU runs, uses it in
 * place of the folder's. Returns "" on success, else one sentence saying what was wrong. Loading
 * again with the same paths is a no-op; other paths in the same process are refused.
 */
std::string loadLibrary(const std::string& llamaPath, const std::string& ggmlPath, const std::string& backendDir, const std::string& cpuBackend);

/** Whether the CPU backend in use is the one built here (loadLibrary's `cpuBackend`). */
bool ownCpuBackend();

/** The last error lines llama.cpp logged (for error messages), cleared by the call. */
std::string takeLoggedErrors();

/** The last error line llama.cpp logged (the reason of a failed load), or `otherwise`; clears them. */
std::string lastLoggedError(const std::string& otherwise);
