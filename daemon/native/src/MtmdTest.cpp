// Test-only exports: image evaluation in a throwaway context, by evalImageChunk and by mtmd's own
// helper, so tests can hold the loop's recipe to llama.cpp's reference before the loop uses it.
#include <algorithm>
#include <functional>
#include "Model.h"
#include "Projector.h"

namespace {
// is nBatch (so a non-causal image larger than it is refused as in the loop).
Napi::Value logitsAround(const Napi::CallbackInfo& info, Model* model, const Napi::Int32Array& before, const Napi::Int32Array& after,
                         int32_t nBatch, const std::function<std::string(llama_context*, llama_pos*)>& image) {
  Napi::Env env = info.Env();
  const Api& a = api();
  if (after.ElementLength() == 0) throw Napi::RangeError::New(env, "At least one token must follow the image.");
  nBatch = std::max(1, std::min(nBatch, 64));
  llama_context_params p = a.llama_context_default_params();
  p.n_ctx = 512;
  p.n_batch = p.n_ubatch = (uint32_t)nBatch;
  p.n_threads = p.n_threads_batch = 1;
  p.no_perf = true;
  llama_context* ctx = a.llama_init_from_model(model->model(), p);
  if (!ctx) throw Napi::Error::New(env, "The test context could not be created.");
  llama_batch batch = a.llama_batch_init(nBatch, 0, 1);
  llama_pos pos = 0;
  auto decodeTokens = [&](const Napi::Int32Array& ids, bool last) {
    for (size_t i = 0; i < ids.ElementLength();) {
      batch.n_tokens = 0;
      for (; i < ids.ElementLength() && batch.n_tokens < nBatch; i++) {
        int32_t j = batch.n_tokens++;
        batch.token[j] = ids[i];
        batch.pos[j] = pos++;
        batch.n_seq_id[j] = 1;
        batch.seq_id[j][0] = 0;
        batch.logits[j] = last && i + 1 == ids.ElementLength();
      }
      if (a.llama_decode(ctx, batch) != 0) return false;
    }
    return true;
  };
  std::string err;
  if (!decodeTokens(before, false)) err = "The tokens before the image could not be decoded.";
  if (err.empty()) err = image(ctx, &pos);
  if (err.empty() && !decodeTokens(after, true)) err = "The tokens after the image could not be decoded.";
  Napi::Float32Array out;
  if (err.empty()) {
    int32_t nVocab = a.llama_vocab_n_tokens(model->vocab());
    const float* logits = a.llama_get_logits_ith(ctx, -1);
    out = Napi::Float32Array::New(env, nVocab);
    std::copy(logits, logits + nVocab, out.Data());
  }
  a.llama_batch_free(batch);
  a.llama_free(ctx);
  if (!err.empty()) throw Napi::Error::New(env, err);
  return out;
}

int32_t batchArg(const Napi::CallbackInfo& info, size_t i) { return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : 64; }

// evalImageForTest(nativeModel, embd, before: Int32Array, after: Int32Array, nBatch = 64) => Float32Array:
// evalImageChunk's test before the loop evaluates images itself.
Napi::Value EvalImageForTest(const Napi::CallbackInfo& info) {
  auto img = ImageEmbeddingHandle::from(info[1]);
  if (!img) throw Napi::TypeError::New(info.Env(), "The second argument must be an image embedding.");
  int32_t nBatch = std::max(1, std::min(batchArg(info, 4), 64));
  return logitsAround(info, Model::Unwrap(info[0].As<Napi::Object>()), info[2].As<Napi::Int32Array>(), info[3].As<Napi::Int32Array>(), nBatch,
                      [&](llama_context* ctx, llama_pos* pos) { return evalImageChunk(ctx, *img, *pos, 0, nBatch, pos); });
}

// evalImageReferenceForTest(nativeModel, projector, chunk, before, after, nBatch = 64) => Float32Array:
// the same through mtmd's own helper (mtmd_helper_eval_chunk_single: encode + decode), the oracle
// evalImageChunk is tested against.
Napi::Value EvalImageReferenceForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Projector* projector = Projector::Unwrap(info[1].As<Napi::Object>());
  auto core = projector->shared();
  if (!core) throw Napi::Error::New(env, "The projector was disposed.");
  if (!info[2].IsObject() || !info[2].As<Napi::Object>().InstanceOf(ImageChunk::ctor.Value())) throw Napi::TypeError::New(env, "The third argument must be an image chunk.");
  auto chunk = ImageChunk::Unwrap(info[2].As<Napi::Object>())->ref;
  int32_t nBatch = std::max(1, std::min(batchArg(info, 5), 64));
  return logitsAround(info, Model::Unwrap(info[0].As<Napi::Object>()), info[3].As<Napi::Int32Array>(), info[4].As<Napi::Int32Array>(), nBatch,
                      [&](llama_context* ctx, llama_pos* pos) -> std::string {
                        std::lock_guard<std::mutex> lock(core->encodeMu);
                        llama_pos next = *pos;
                        int32_t rc = mtmdApi().mtmd_helper_eval_chunk_single(core->ctx, ctx, chunk->chunk, *pos, 0, nBatch, false, &next);
                        *pos = next;
                        return rc == 0 ? "" : "mtmd_helper_eval_chunk_single returned " + std::to_string(rc) + ".";
                      });
}
}  // namespace

void initMtmdTest(Napi::Env env, Napi::Object exports) {
  exports.Set("evalImageForTest", Napi::Function::New(env, EvalImageForTest));
  exports.Set("evalImageReferenceForTest", Napi::Function::New(env, EvalImageReferenceForTest));
}
