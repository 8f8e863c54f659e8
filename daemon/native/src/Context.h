// A llama_context with `seqs` sequences and the Loop that owns it (JS: NativeContext). JS queues
// jobs and KV operations; the loop's results come back as batches of events to `onEvents`.
#pragma once
#include <napi.h>
#include <memory>
#include "Loop.h"

class Model;

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Init(Napi::Env env);
  /** model.createContext(opts) => Promise<NativeContext>; the KV cache is allocated off the JS thread. */
  static Napi::Value Create(const Napi::CallbackInfo& info, Model* model);
  explicit Context(const Napi::CallbackInfo& info);
  ~Context() override;

  void start(Napi::Env env, Model* model, Napi::Object modelObj, llama_context* ctx, ggml_threadpool* pool,
             int32_t nBatch, int32_t seqs, LoopThreads threads, Napi::Function onEvents);

 private:
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Op(const Napi::CallbackInfo& info);
  Napi::Value Cached(const Napi::CallbackInfo& info);
  Napi::Value CachedLength(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Loop& loop(Napi::Env env);
  void release();

  Model* model_ = nullptr;
  Napi::ObjectReference modelRef_;
  llama_context* ctx_ = nullptr;
  ggml_threadpool* pool_ = nullptr;
  std::shared_ptr<Loop> loop_;
  Napi::ThreadSafeFunction tsfn_;
  int32_t seqs_ = 0;
  /** Jobs and operations not ended yet: while any, the loop keeps the process alive. */
  int64_t active_ = 0;
  void began(Napi::Env env);
};
