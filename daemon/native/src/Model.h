// A loaded GGUF model (JS: NativeModel). The model and its vocabulary are immutable after loading,
// so tokenization runs on the JS thread while a Loop decodes; contexts are created from here.
#pragma once
#include <napi.h>
#include <vector>
#include "Library.h"
#include "Sampler.h"

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Init(Napi::Env env);
  /** loadModel(path, {gpuLayers}, onProgress?) => Promise<NativeModel>, on a worker thread. */
  static Napi::Value Load(const Napi::CallbackInfo& info);
  explicit Model(const Napi::CallbackInfo& info);
  ~Model() override;

  llama_model* model() const { return model_; }
  const llama_vocab* vocab() const { return vocab_; }
  const std::vector<llama_token>& eog() const { return eog_; }
  void adopt(llama_model* model);
  /** Contexts alive on this model: it cannot be freed under them. */
  int contexts = 0;

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Meta(const Napi::CallbackInfo& info);
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value Detokenize(const Napi::CallbackInfo& info);
  Napi::Value Grammar(const Napi::CallbackInfo& info);
  Napi::Value CreateContext(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  void check(Napi::Env env) const;

  llama_model* model_ = nullptr;
  const llama_vocab* vocab_ = nullptr;
  std::vector<llama_token> eog_;
};

/** A compiled GBNF grammar (JS: NativeGrammar); each reply gets a fresh clone of its state. */
class Grammar : public Napi::ObjectWrap<Grammar> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Grammar(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Grammar>(info) {}
  SamplerPtr fresh() const { return SamplerPtr(api().llama_sampler_clone(base_.get())); }
  SamplerPtr base_;
  static Napi::FunctionReference ctor;
};
