// Images through llama.cpp's multimodal library (libmtmd: mtmd + clip + the model graphs), built by
// native/mtmd.mjs against the same prebuilt libllama/libggml as the engine, one library per variant,
// and loaded by path after that variant's libllama (dlopen + a table, like Library.h).
//
// JS (Projector.h): loadMtmd(libPath) once; loadProjector(mmprojPath, nativeModel, {gpu, threads,
// warmup}) => Promise<NativeProjector>; projector.tokenize(text, images) => Promise<{chunks, images}>,
// where an image chunk carries a NativeImageChunk; projector.encode(chunk) => Promise<{embd:
// NativeImageEmbedding, ...}>.
// A NativeImageEmbedding owns a copy of the embeddings (mtmd's own buffer is overwritten by the next
// encode) and everything the loop needs to evaluate it, so it outlives the projector's next encode
// and can be handed to the loop thread as a std::shared_ptr<const ImageEmbedding>.
//
// HOW THE LOOP EVALUATES AN IMAGE CHUNK (the recipe of mtmd-helper.cpp's
// mtmd_helper_decode_image_chunk, which evalImageChunk below implements with our function tables;
// test/src/mtmd.test.ts holds it to mtmd_helper_eval_chunk_single's logits, bit for bit, for llava,
// Gemma 3 and Qwen2.5-VL with M-RoPE):
//  1. Encode first, off the loop thread (projector.encode runs clip on a worker thread; the text
//     sessions keep decoding meanwhile). The loop only ever sees finished embeddings.
//  2. An image is its own llama_decode: a llama_batch with `embd` set (n_embd floats per token, the
//     text model's llama_model_n_embd_inp) and `token` null cannot carry text tokens, so it never
//     shares a decode with other sequences' tokens. Split it into pieces of at most n_batch tokens.
//  3. Positions: normally n_past + i. With M-RoPE (Qwen2-VL/2.5-VL/3-VL: img.mropeBase non-empty)
//     each token has 4 position components laid out section-major in batch.pos ([t...][y...][x...]
//     [z...], 4 × n entries), mtmd_image_tokens_get_decoder_pos(chunk, n_past, i) precomputed at
//     encode as base + n_past · step; a piece of the batch needs its own section-major copy.
//  4. Non-causal images (Gemma 3, img.nonCausal): llama_set_causal_attn(ctx, false) around the
//     decode and back to true after, and the WHOLE image must fit one ubatch (n_ubatch >= nTokens),
//     or its tokens would not all attend to each other. evalImageChunk refuses otherwise.
//  5. logits are all off: an image never ends a prompt that must be sampled; the text after it
//     (the template's turn end, at least one token) gives the logits.
//  6. The sequence advances by img.nPos POSITIONS, which is nTokens except with M-RoPE
//     (max(nx, ny)): the loop's "next position" for the sequence is n_past + nPos, while the KV
//     cache holds nTokens cells. The loop's per-sequence token history should record an image as
//     nPos placeholder entries (and remember the image id) so position == history index stays
//     true; KV edits (erase a tail) must not cut inside an image (erase the whole image instead).
//     A failed llama_decode may leave part of the image in the cache: erase the sequence from n_past
//     (llama_memory_seq_rm) before going on.
//  7. KV state files (llama_state_seq_save_file) hold the image's cells like text cells: a restored
//     sequence needs no re-encode, only the history's placeholder entries.
#pragma once
#include <napi.h>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include "Library.h"
// Extracted from node-llama-cpp's llama.cpp bundle by native/mtmd.mjs (before node-gyp runs).
#include "../build-mtmd/src/tools/mtmd/mtmd-helper.h"
#include "../build-mtmd/src/tools/mtmd/mtmd.h"

#define NANOLLM_MTMD_FNS(X)                                                                          \
  X(mtmd_default_marker) X(mtmd_context_params_default) X(mtmd_init_from_file) X(mtmd_free)          \
  X(mtmd_decode_use_non_causal) X(mtmd_decode_use_mrope) X(mtmd_support_vision) X(mtmd_support_audio) \
  X(mtmd_get_marker) X(mtmd_log_set) X(mtmd_helper_log_set) X(mtmd_helper_bitmap_init_from_buf)      \
  X(mtmd_helper_init_opt_default) X(mtmd_bitmap_free) X(mtmd_bitmap_get_nx) X(mtmd_bitmap_get_ny) X(mtmd_bitmap_get_id)     \
  X(mtmd_input_chunks_init) X(mtmd_input_chunks_size) X(mtmd_input_chunks_get) X(mtmd_input_chunks_free) \
  X(mtmd_input_chunk_get_type) X(mtmd_input_chunk_get_tokens_text) X(mtmd_input_chunk_get_tokens_image) \
  X(mtmd_input_chunk_get_n_tokens) X(mtmd_input_chunk_get_id) X(mtmd_input_chunk_get_n_pos)          \
  X(mtmd_input_chunk_copy) X(mtmd_input_chunk_free) X(mtmd_image_tokens_get_decoder_pos)             \
  X(mtmd_tokenize) X(mtmd_encode_chunk) X(mtmd_get_output_embd) X(mtmd_helper_eval_chunk_single)

// llama.cpp functions image evaluation needs beyond Library.h's table; resolved through libmtmd's
// own dependency on the loaded libllama (and checked to be that very library).
#define NANOLLM_MTMD_LLAMA_FNS(X) X(llama_decode) X(llama_set_causal_attn) X(llama_model_n_embd_inp) X(llama_n_ubatch)

struct MtmdApi {
#define NANOLLM_DECLARE(name) decltype(&::name) name = nullptr;
  NANOLLM_MTMD_FNS(NANOLLM_DECLARE)
  NANOLLM_MTMD_LLAMA_FNS(NANOLLM_DECLARE)
#undef NANOLLM_DECLARE
  // stb_image's header reader (compiled into mtmd-helper.cpp, exported): an image's size before
  // decoding it, so a small file declaring a huge picture is refused. Null if absent.
  int (*stbi_info_from_memory)(const unsigned char* buffer, int len, int* x, int* y, int* comp) = nullptr;
};

/** Valid after a successful loadMtmd. */
const MtmdApi& mtmdApi();
bool mtmdLoaded();

/** Forgets what mtmd and clip logged; mtmdError() is then the first error logged since (or ""). */
void clearMtmdErrors();
std::string mtmdError();

/**
 * dlopens the variant's libnanollm-mtmd.so (llama.cpp must be loaded already, from the same
 * variant) and resolves its functions. Returns "" on success, else one sentence.
 */
std::string loadMtmd(const std::string& path);

/** One encoded image: what the loop thread needs to evaluate it (see the recipe above); plain data. */
struct ImageEmbedding {
  std::vector<float> data;  // nTokens × nEmbd, row-major per token
  int32_t nTokens = 0;
  int32_t nEmbd = 0;
  llama_pos nPos = 0;       // positions the sequence advances by
  bool nonCausal = false;   // decode with causal attention off, whole image in one ubatch
  std::string id;           // mtmd's image id: SHA-256 of the image file's bytes
  // M-RoPE (empty otherwise): position component k of token i at n_past is
  // mropeBase[k·n + i] + n_past · mropeStep[k·n + i], section-major (t, y, x, z) as llama_batch.pos
  // wants it. mtmd's decoder positions are affine in n_past for every layout it has (checked at
  // encode), so the image's preprocessed pixels need not live on with its embeddings.
  std::vector<llama_pos> mropeBase, mropeStep;
};
/**
 * Evaluates an encoded image into sequence `seq` at position `nPast` (loop thread only; the context
 * must be idle). Returns "" and sets *newNPast = nPast + img.nPos, else one sentence.
 */
std::string evalImageChunk(llama_context* ctx, const ImageEmbedding& img, llama_pos nPast, llama_seq_id seq, int32_t nBatch,
                           llama_pos* newNPast);

/** Adds loadMtmd, loadProjector and the classes (Projector.h) to the addon's exports. */
void initMtmd(Napi::Env env, Napi::Object exports);
/** The test-only exports (MtmdTest.cpp). */
void initMtmdTest(Napi::Env env, Napi::Object exports);
