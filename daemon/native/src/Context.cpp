#include "Context.h"
#include "Model.h"
#include "Projector.h"

static Napi::FunctionReference g_contextCtor;

Napi::Function Context::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeContext",
                                 {InstanceMethod("submit", &Context::Submit), InstanceMethod("resume", &Context::Resume),
                                  InstanceMethod("cancel", &Context::Cancel), InstanceMethod("op", &Context::Op),
                                  InstanceMethod("cached", &Context::Cached), InstanceMethod("cachedLength", &Context::CachedLength), InstanceMethod("info", &Context::Info),
                                  InstanceMethod("stats", &Context::Stats), InstanceMethod("dispose", &Context::Dispose)});
  g_contextCtor = Napi::Persistent(f);
  g_contextCtor.SuppressDestruct();
  return f;
}

Context::Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info) {}

Context::~Context() { release(); }

namespace {
struct ContextOptions {
  int32_t ctxPerSeq, seqs, batch, threads, batchThreads;
  bool q8;
  /** The counts were not given: the loop learns per kind of decode whether 1 or that many is faster. */
  bool adaptiveThreads, adaptiveBatchThreads;
};

std::vector<int> candidates(int32_t n, bool adaptive) {
  if (adaptive && n > 1) return {1, n};
  return {n};
}

ggml_threadpool* newPool(int32_t threads) {
  const Api& a = api();
  if (!a.threadpool_new || threads < 2) return nullptr;
  ggml_threadpool_params p = a.ggml_threadpool_params_default(threads);
  return a.threadpool_new(&p);
}

class CreateWorker : public Napi::AsyncWorker {
 public:
  CreateWorker(Napi::Env env, Model* model, Napi::Object modelObj, ContextOptions o, Napi::Function onEvents)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), model_(model), o_(o) {
    modelRef_ = Napi::Persistent(modelObj);
    onEvents_ = Napi::Persistent(onEvents);
    model_->contexts++;
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    const Api& a = api();
    llama_context_params p = a.llama_context_default_params();
    p.n_ctx = (uint32_t)o_.ctxPerSeq * (uint32_t)o_.seqs;
    p.n_batch = p.n_ubatch = (uint32_t)o_.batch;
    p.n_seq_max = (uint32_t)o_.seqs;
    p.n_threads = o_.threads;
    p.n_threads_batch = o_.batchThreads;
    // A quantized V cache needs flash attention.
    p.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    p.type_k = p.type_v = o_.q8 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
    p.kv_unified = false;
    p.no_perf = true;
    takeLoggedErrors();
    try {
      ctx_ = a.llama_init_from_model(model_->model(), p);
    } catch (const std::exception& e) {
      ctx_ = nullptr;
    }
    if (!ctx_) {
      SetError(lastLoggedError("llama.cpp could not create it"));
      return;
    }
    // One persistent pool for every decode; a decode may use fewer of its threads.
    pool_ = newPool(std::max(o_.threads, o_.batchThreads));
    if (pool_) a.llama_attach_threadpool(ctx_, pool_, nullptr);
  }
  void OnOK() override {
    Napi::Object obj = g_contextCtor.New({});
    LoopThreads threads{candidates(o_.threads, o_.adaptiveThreads), candidates(o_.batchThreads, o_.adaptiveBatchThreads)};
    Context::Unwrap(obj)->start(Env(), model_, modelRef_.Value(), ctx_, pool_, o_.batch, o_.seqs, threads, onEvents_.Value());
    deferred_.Resolve(obj);
  }
  void OnError(const Napi::Error& e) override {
    model_->contexts--;
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Model* model_;
  Napi::ObjectReference modelRef_;
  Napi::FunctionReference onEvents_;
  ContextOptions o_;
  llama_context* ctx_ = nullptr;
  ggml_threadpool* pool_ = nullptr;
};

int32_t intOf(Napi::Object o, const char* key) { return o.Get(key).As<Napi::Number>().Int32Value(); }

std::vector<llama_token> tokensOf(Napi::Value v) {
  std::vector<llama_token> out;
  if (!v.IsTypedArray()) return out;
  Napi::Int32Array arr = v.As<Napi::Int32Array>();
  out.assign(arr.Data(), arr.Data() + arr.ElementLength());
  return out;
}
}  // namespace

Napi::Value Context::Create(const Napi::CallbackInfo& info, Model* model) {
  Napi::Object o = info[0].As<Napi::Object>();
  ContextOptions opts{intOf(o, "ctx"), intOf(o, "seqs"), intOf(o, "batch"), intOf(o, "threads"), intOf(o, "batchThreads"),
                      o.Get("kvCacheType").As<Napi::String>().Utf8Value() == "q8_0", o.Get("adaptiveThreads").ToBoolean(),
                      o.Get("adaptiveBatchThreads").ToBoolean()};
  auto* worker = new CreateWorker(info.Env(), model, info.This().As<Napi::Object>(), opts, o.Get("onEvents").As<Napi::Function>());
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

void Context::start(Napi::Env env, Model* model, Napi::Object modelObj, llama_context* ctx, ggml_threadpool* pool,
                    int32_t nBatch, int32_t seqs, LoopThreads threads, Napi::Function onEvents) {
  model_ = model;
  modelRef_ = Napi::Persistent(modelObj);
  ctx_ = ctx;
  pool_ = pool;
  seqs_ = seqs;
  tsfn_ = Napi::ThreadSafeFunction::New(env, onEvents, "nanollm-loop", 0, 1);
  // The loop must not keep the process alive when JS has nothing else to do.
  tsfn_.Unref(env);
  auto tsfn = tsfn_;
  std::shared_ptr<std::weak_ptr<Loop>> weak = std::make_shared<std::weak_ptr<Loop>>();
  Context* self = this;
  loop_ = std::make_shared<Loop>(ctx, api().llama_model_get_vocab(model->model()), nBatch, seqs, std::move(threads), [tsfn, weak, self]() mutable {
    tsfn.NonBlockingCall([weak, self](Napi::Env env, Napi::Function fn) {
      // A live loop means a live context: release() drops the loop first.
      std::shared_ptr<Loop> loop = weak->lock();
      if (!loop) return;
      std::vector<Event> events = loop->takeEvents();
      Napi::Array arr = Napi::Array::New(env, events.size());
      for (size_t i = 0; i < events.size(); i++) {
        const Event& ev = events[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("id", ev.id);
        Napi::Int32Array t = Napi::Int32Array::New(env, ev.tokens.size());
        std::copy(ev.tokens.begin(), ev.tokens.end(), t.Data());
        o.Set("tokens", t);
        o.Set("end", ev.end);
        if (!ev.error.empty()) o.Set("error", ev.error);
        o.Set("value", ev.value);
        arr[i] = o;
        if (!ev.end.empty() && --self->active_ == 0) self->tsfn_.Unref(env);
      }
      fn.Call({arr});
    });
  });
  *weak = loop_;
}

void Context::release() {
  if (loop_) {
    loop_.reset();  // joins the loop thread
    tsfn_.Release();
  }
  const Api& a = api();
  if (ctx_) {
    a.llama_free(ctx_);
    ctx_ = nullptr;
    if (model_) model_->contexts--;
  }
  if (pool_) a.threadpool_free(pool_);
  pool_ = nullptr;
  if (!modelRef_.IsEmpty()) modelRef_.Reset();
}

void Context::began(Napi::Env env) {
  if (active_++ == 0) tsfn_.Ref(env);
}

Loop& Context::loop(Napi::Env env) {
  if (!loop_) throw Napi::Error::New(env, "The context was disposed.");
  return *loop_;
}

// submit({seq, tokens, sample, lockstep, maxSamples, sampling?, grammar?, history?}) => job id
Napi::Value Context::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Loop& l = loop(env);
  Napi::Object o = info[0].As<Napi::Object>();
  JobSpec spec;
  spec.seq = intOf(o, "seq");
  if (spec.seq < 0 || spec.seq >= seqs_) throw Napi::RangeError::New(env, "No such sequence.");
  spec.tokens = tokensOf(o.Get("tokens"));
  if (spec.tokens.empty()) throw Napi::Error::New(env, "A job needs at least one token.");
  // images: [{offset, embedding}] — each covers nPos placeholder entries of `tokens`.
  std::vector<bool> covered(spec.tokens.size(), false);
  if (o.Has("images") && o.Get("images").IsArray()) {
    Napi::Array imgs = o.Get("images").As<Napi::Array>();
    size_t after = 0;
    for (uint32_t i = 0; i < imgs.Length(); i++) {
      Napi::Object im = imgs.Get(i).As<Napi::Object>();
      ImageSpan span;
      span.offset = (size_t)im.Get("offset").As<Napi::Number>().Int64Value();
      span.embd = ImageEmbeddingHandle::from(im.Get("embedding"));
      if (!span.embd) throw Napi::TypeError::New(env, "An image of the job is not an encoded image.");
      size_t end = span.offset + (size_t)span.embd->nPos;
      if (span.offset < after || end > spec.tokens.size()) throw Napi::RangeError::New(env, "The job's images overlap or run past its tokens.");
      if (!mtmdLoaded() || span.embd->nEmbd != mtmdApi().llama_model_n_embd_inp(model_->model())) throw Napi::RangeError::New(env, "The image was encoded for another model.");
      for (size_t k = span.offset; k < end; k++) covered[k] = true;
      after = end;
      spec.images.push_back(std::move(span));
    }
  }
  int32_t nVocab = api().llama_vocab_n_tokens(model_->vocab());
  for (size_t k = 0; k < spec.tokens.size(); k++) {
    llama_token t = spec.tokens[k];
    if (!covered[k] && (t < 0 || t >= nVocab)) throw Napi::RangeError::New(env, "Token id " + std::to_string(t) + " is not in the vocabulary.");
  }
  spec.sample = o.Get("sample").ToBoolean();
  spec.lockstep = o.Get("lockstep").ToBoolean();
  spec.maxSamples = o.Has("maxSamples") ? intOf(o, "maxSamples") : 1;
  if (spec.sample) {
    SamplingSettings s;
    Napi::Object so = o.Get("sampling").As<Napi::Object>();
    s.doSample = so.Get("doSample").ToBoolean();
    s.temperature = so.Get("temperature").As<Napi::Number>().FloatValue();
    s.topK = intOf(so, "topK");
    s.topP = so.Get("topP").As<Napi::Number>().FloatValue();
    s.repetitionPenalty = so.Get("repetitionPenalty").As<Napi::Number>().FloatValue();
    s.seed = so.Get("seed").As<Napi::Number>().Uint32Value();
    s.minNewTokens = intOf(so, "minNewTokens");
    std::vector<llama_token> history = tokensOf(o.Get("history"));
    history.insert(history.end(), spec.tokens.begin(), spec.tokens.end());
    spec.sampler = std::make_unique<Sampler>(model_->vocab(), s, history, &model_->eog());
    Napi::Value g = o.Get("grammar");
    if (g.IsObject()) spec.sampler->setGrammar(Grammar::Unwrap(g.As<Napi::Object>())->fresh());
  }
  uint32_t id = l.submit(std::move(spec));
  began(env);
  return Napi::Number::New(env, id);
}

// resume(id, tokens | null, grammar?)
Napi::Value Context::Resume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SamplerPtr grammar;
  if (info.Length() > 2 && info[2].IsObject()) grammar = Grammar::Unwrap(info[2].As<Napi::Object>())->fresh();
  loop(env).resume(info[0].As<Napi::Number>().Uint32Value(), tokensOf(info[1]), std::move(grammar));
  return env.Undefined();
}

Napi::Value Context::Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  loop(env).cancel(info[0].As<Napi::Number>().Uint32Value());
  return env.Undefined();
}

// op(kind: "erase"|"clear"|"save"|"load", seq, from, path) => op id
Napi::Value Context::Op(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string kind = info[0].As<Napi::String>();
  int32_t seq = info[1].As<Napi::Number>().Int32Value();
  int32_t from = info[2].As<Napi::Number>().Int32Value();
  std::string path = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  OpKind k;
  if (kind == "erase") k = OpKind::Erase;
  else if (kind == "clear") k = OpKind::Clear;
  else if (kind == "save") k = OpKind::Save;
  else if (kind == "load") k = OpKind::Load;
  else throw Napi::Error::New(env, "Unknown operation " + kind + ".");
  uint32_t id = loop(env).op(k, seq, from, path);
  began(env);
  return Napi::Number::New(env, id);
}

Napi::Value Context::Cached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<llama_token> t = loop(env).cached(info[0].As<Napi::Number>().Int32Value());
  Napi::Int32Array arr = Napi::Int32Array::New(env, t.size());
  std::copy(t.begin(), t.end(), arr.Data());
  return arr;
}

Napi::Value Context::CachedLength(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::Number::New(env, (double)loop(env).cacheSize(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value Context::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("contextSize", loop(env).nCtxSeq());
  o.Set("sequences", seqs_);
  o.Set("threadpool", pool_ != nullptr);
  return o;
}

Napi::Value Context::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LoopStats s = loop(env).stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("decodes", (double)s.decodes);
  o.Set("tokens", (double)s.tokens);
  o.Set("decodeMs", s.decodeMs);
  o.Set("steps", (double)s.steps);
  o.Set("carried", (double)s.carried);
  o.Set("images", (double)s.images);
  o.Set("stepThreads", s.stepThreads);
  o.Set("batchThreads", s.batchThreads);
  return o;
}

Napi::Value Context::Dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}
