#include "Model.h"
#include <atomic>
#include "Context.h"

Napi::FunctionReference Grammar::ctor;

Napi::Function Grammar::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeGrammar", {});
  ctor = Napi::Persistent(f);
  ctor.SuppressDestruct();
  return f;
}

static Napi::FunctionReference g_modelCtor;

Napi::Function Model::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeModel",
                                 {InstanceMethod("info", &Model::Info), InstanceMethod("meta", &Model::Meta),
                                  InstanceMethod("tokenize", &Model::Tokenize), InstanceMethod("detokenize", &Model::Detokenize),
                                  InstanceMethod("grammar", &Model::Grammar), InstanceMethod("createContext", &Model::CreateContext),
                                  InstanceMethod("dispose", &Model::Dispose)});
  g_modelCtor = Napi::Persistent(f);
  g_modelCtor.SuppressDestruct();
  return f;
}

Model::Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {}

Model::~Model() {
  if (model_) api().llama_model_free(model_);
}

void Model::adopt(llama_model* model) {
  model_ = model;
  vocab_ = api().llama_model_get_vocab(model);
  int32_t n = api().llama_vocab_n_tokens(vocab_);
  for (llama_token id = 0; id < n; id++)
    if (api().llama_vocab_is_eog(vocab_, id)) eog_.push_back(id);
}

void Model::check(Napi::Env env) const {
  if (!model_) throw Napi::Error::New(env, "The model was disposed.");
}

namespace {
class LoadWorker : public Napi::AsyncProgressQueueWorker<float> {
 public:
  LoadWorker(Napi::Env env, std::string path, int32_t gpuLayers, Napi::Function onProgress)
      : Napi::AsyncProgressQueueWorker<float>(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)), gpuLayers_(gpuLayers) {
    if (!onProgress.IsEmpty()) progress_ = Napi::Persistent(onProgress);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {
    const Api& a = api();
    llama_model_params params = a.llama_model_default_params();
    params.n_gpu_layers = gpuLayers_;
    params.progress_callback = [](float p, void* self) {
      auto* me = static_cast<LoadWorker*>(self);
      // At most a hundred updates.
      int step = (int)(p * 100);
      if (step > me->lastStep_) {
        me->lastStep_ = step;
        me->progressRef_->Send(&p, 1);
      }
      return true;
    };
    params.progress_callback_user_data = this;
    progressRef_ = &progress;
    takeLoggedErrors();
    try {
      model_ = a.llama_model_load_from_file(path_.c_str(), params);
    } catch (const std::exception& e) {
      model_ = nullptr;
    }
    if (!model_) {
      SetError(lastLoggedError("llama.cpp could not load it"));
    }
  }
  void OnProgress(const float* data, size_t count) override {
    if (!progress_.IsEmpty() && count > 0) progress_.Call({Napi::Number::New(Env(), data[count - 1])});
  }
  void OnOK() override {
    Napi::Object obj = g_modelCtor.New({});
    Model::Unwrap(obj)->adopt(model_);
    deferred_.Resolve(obj);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  int32_t gpuLayers_;
  Napi::FunctionReference progress_;
  const ExecutionProgress* progressRef_ = nullptr;
  int lastStep_ = -1;
  llama_model* model_ = nullptr;
};
}  // namespace

Napi::Value Model::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!libraryLoaded()) throw Napi::Error::New(env, "llama.cpp is not loaded yet.");
  std::string path = info[0].As<Napi::String>();
  Napi::Object opts = info[1].As<Napi::Object>();
  int32_t gpuLayers = opts.Get("gpuLayers").As<Napi::Number>().Int32Value();
  Napi::Function onProgress = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  auto* worker = new LoadWorker(env, path, gpuLayers, onProgress);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value Model::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env);
  const Api& a = api();
  Napi::Object o = Napi::Object::New(env);
  o.Set("vocabSize", a.llama_vocab_n_tokens(vocab_));
  o.Set("bos", a.llama_vocab_bos(vocab_));
  o.Set("eos", a.llama_vocab_eos(vocab_));
  o.Set("eot", a.llama_vocab_eot(vocab_));
  o.Set("addBos", a.llama_vocab_get_add_bos(vocab_));
  o.Set("trainContextSize", a.llama_model_n_ctx_train(model_));
  o.Set("embeddingSize", a.llama_model_n_embd(model_));
  o.Set("parameters", (double)a.llama_model_n_params(model_));
  o.Set("sizeBytes", (double)a.llama_model_size(model_));
  o.Set("recurrent", a.llama_model_is_recurrent(model_) || a.llama_model_is_hybrid(model_));
  Napi::Int32Array eog = Napi::Int32Array::New(env, eog_.size());
  for (size_t i = 0; i < eog_.size(); i++) eog[i] = eog_[i];
  o.Set("eog", eog);
  return o;
}

Napi::Value Model::Meta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env);
  std::string key = info[0].As<Napi::String>();
  std::vector<char> buf(256);
  int32_t n = api().llama_model_meta_val_str(model_, key.c_str(), buf.data(), buf.size());
  if (n < 0) return env.Undefined();
  if ((size_t)n >= buf.size()) {
    buf.resize(n + 1);
    api().llama_model_meta_val_str(model_, key.c_str(), buf.data(), buf.size());
  }
  return Napi::String::New(env, buf.data(), n);
}

Napi::Value Model::Tokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env);
  std::string text = info[0].As<Napi::String>();
  bool special = info[1].ToBoolean();
  std::vector<llama_token> out(text.size() + 2);
  int32_t n = api().llama_tokenize(vocab_, text.data(), (int32_t)text.size(), out.data(), (int32_t)out.size(), false, special);
  if (n < 0) {
    out.resize(-n);
    n = api().llama_tokenize(vocab_, text.data(), (int32_t)text.size(), out.data(), (int32_t)out.size(), false, special);
  }
  if (n < 0) throw Napi::Error::New(env, "The text could not be tokenized.");
  Napi::Int32Array arr = Napi::Int32Array::New(env, n);
  std::copy(out.begin(), out.begin() + n, arr.Data());
  return arr;
}

Napi::Value Model::Detokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env);
  Napi::Int32Array ids = info[0].As<Napi::Int32Array>();
  bool special = info[1].ToBoolean();
  int32_t nVocab = api().llama_vocab_n_tokens(vocab_);
  for (size_t i = 0; i < ids.ElementLength(); i++)
    if (ids[i] < 0 || ids[i] >= nVocab) throw Napi::RangeError::New(env, "Token id " + std::to_string(ids[i]) + " is not in the vocabulary.");
  std::string out(ids.ElementLength() * 8 + 16, '\0');
  int32_t n = api().llama_detokenize(vocab_, ids.Data(), (int32_t)ids.ElementLength(), out.data(), (int32_t)out.size(), false, special);
  if (n < 0) {
    out.resize(-n);
    n = api().llama_detokenize(vocab_, ids.Data(), (int32_t)ids.ElementLength(), out.data(), (int32_t)out.size(), false, special);
  }
  if (n < 0) return Napi::String::New(env, "");
  out.resize(n);
  return Napi::String::New(env, out);
}

Napi::Value Model::Grammar(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env);
  std::string gbnf = info[0].As<Napi::String>();
  SamplerPtr compiled;
  std::string why = compileGrammar(vocab_, gbnf, compiled);
  if (!why.empty()) throw Napi::Error::New(env, why);
  Napi::Object obj = Grammar::ctor.New({});
  Grammar::Unwrap(obj)->base_ = std::move(compiled);
  return obj;
}

Napi::Value Model::CreateContext(const Napi::CallbackInfo& info) {
  check(info.Env());
  return Context::Create(info, this);
}

Napi::Value Model::Dispose(const Napi::CallbackInfo& info) {
  if (contexts > 0) throw Napi::Error::New(info.Env(), "The model still has contexts; dispose them first.");
  if (model_) api().llama_model_free(model_);
  model_ = nullptr;
  vocab_ = nullptr;
  return info.Env().Undefined();
}
