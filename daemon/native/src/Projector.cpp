#include "Projector.h"
#include <algorithm>
#include <chrono>
#include <cstring>
#include "Model.h"

namespace {
bool isWebp(const std::vector<uint8_t>& b) {
  return b.size() >= 12 && std::memcmp(b.data(), "RIFF", 4) == 0 && std::memcmp(b.data() + 8, "WEBP", 4) == 0;
}

size_t countMarkers(const std::string& text, const std::string& marker) {
  size_t n = 0;
  for (size_t p = text.find(marker); p != std::string::npos; p = text.find(marker, p + marker.size())) n++;
  return n;
}
}  // namespace

ChunkRef::~ChunkRef() {
  if (chunk) mtmdApi().mtmd_input_chunk_free(chunk);
}

ProjectorCore::~ProjectorCore() {
  if (ctx) mtmdApi().mtmd_free(ctx);
  if (model) model->contexts--;
}

Napi::FunctionReference ImageChunk::ctor;
Napi::FunctionReference ImageEmbeddingHandle::ctor;
static Napi::FunctionReference g_projectorCtor;

Napi::Function ImageChunk::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeImageChunk", {});
  ctor = Napi::Persistent(f);
  ctor.SuppressDestruct();
  return f;
}

Napi::Function ImageEmbeddingHandle::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeImageEmbedding", {InstanceMethod("values", &ImageEmbeddingHandle::Values)});
  ctor = Napi::Persistent(f);
  ctor.SuppressDestruct();
  return f;
}

std::shared_ptr<const ImageEmbedding> ImageEmbeddingHandle::from(Napi::Value v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) return nullptr;
  return Unwrap(v.As<Napi::Object>())->embd;
}

Napi::Value ImageEmbeddingHandle::Values(const Napi::CallbackInfo& info) {
  Napi::Float32Array out = Napi::Float32Array::New(info.Env(), embd ? embd->data.size() : 0);
  if (embd) std::copy(embd->data.begin(), embd->data.end(), out.Data());
  return out;
}

Napi::Function Projector::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeProjector",
                                 {InstanceMethod("info", &Projector::Info), InstanceMethod("tokenize", &Projector::Tokenize),
                                  InstanceMethod("encode", &Projector::Encode), InstanceMethod("dispose", &Projector::Dispose)});
  g_projectorCtor = Napi::Persistent(f);
  g_projectorCtor.SuppressDestruct();
  return f;
}

Projector::~Projector() { release(); }

void Projector::adopt(std::shared_ptr<ProjectorCore> core) { core_ = std::move(core); }

// Workers hold the core too, so a projector disposed during an encode is freed (on the JS thread,
// when the worker completes) after it.
void Projector::release() { core_.reset(); }

static const char* kDisposed = "The projector was disposed.";

std::shared_ptr<ProjectorCore> Projector::core(Napi::Env env) const {
  if (!core_) throw Napi::Error::New(env, kDisposed);
  return core_;
}

static Napi::Value rejected(Napi::Env env, const char* message) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(Napi::Error::New(env, message).Value());
  return d.Promise();
}

namespace {
class ProjectorLoadWorker : public Napi::AsyncWorker {
 public:
  ProjectorLoadWorker(Napi::Env env, std::string path, Model* model, Napi::Object modelObj, bool gpu, int32_t threads, bool warmup)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)), gpu_(gpu), threads_(threads), warmup_(warmup) {
    core_ = std::make_shared<ProjectorCore>();
    core_->model = model;
    core_->modelRef = Napi::Persistent(modelObj);
    model->contexts++;
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    const MtmdApi& m = mtmdApi();
    mtmd_context_params p = m.mtmd_context_params_default();
    p.use_gpu = gpu_;
    p.n_threads = threads_;
    p.print_timings = false;
    p.warmup = warmup_;
    clearMtmdErrors();
    const llama_model* model = core_->model->model();
    try {
      core_->ctx = m.mtmd_init_from_file(path_.c_str(), model, p);
    } catch (const std::exception&) {
      core_->ctx = nullptr;
    }
    if (!core_->ctx) {
      std::string why = mtmdError();
      SetError(why.empty() ? "clip could not load it" : why);
      return;
    }
    core_->nEmbd = m.llama_model_n_embd_inp(model);
    core_->nVocab = api().llama_vocab_n_tokens(api().llama_model_get_vocab(model));
  }
  void OnOK() override {
    Napi::Object obj = g_projectorCtor.New({});
    Projector::Unwrap(obj)->adopt(std::move(core_));
    deferred_.Resolve(obj);
  }
  void OnError(const Napi::Error& e) override {
    core_.reset();
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  bool gpu_;
  int32_t threads_;
  bool warmup_;
  std::shared_ptr<ProjectorCore> core_;
};

struct TokenizedImage {
  uint32_t width = 0, height = 0;
  size_t bytes = 0;
  std::string id;
};

struct TokenizedChunk {
  mtmd_input_chunk_type type;
  std::vector<llama_token> tokens;  // text
  std::shared_ptr<const ChunkRef> ref;  // image/audio
  size_t nTokens = 0;
  llama_pos nPos = 0;
  std::string id;
};

class TokenizeWorker : public Napi::AsyncWorker {
 public:
  TokenizeWorker(Napi::Env env, std::shared_ptr<ProjectorCore> core, std::string text, std::vector<std::vector<uint8_t>> images,
                 bool addSpecial, bool parseSpecial, double maxPixels)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), core_(std::move(core)), text_(std::move(text)),
        images_(std::move(images)), addSpecial_(addSpecial), parseSpecial_(parseSpecial), maxPixels_(maxPixels) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    const MtmdApi& m = mtmdApi();
    const std::string marker = m.mtmd_get_marker(core_->ctx);
    size_t markers = countMarkers(text_, marker);
    if (markers != images_.size()) {
      SetError("The text has " + std::to_string(markers) + " image marker" + (markers == 1 ? "" : "s") + " (" + marker + ") but " +
               std::to_string(images_.size()) + " image" + (images_.size() == 1 ? " was" : "s were") + " given; put one marker per image.");
      return;
    }
    std::vector<mtmd_bitmap*> bitmaps;
    auto freeAll = [&] {
      for (mtmd_bitmap* b : bitmaps) m.mtmd_bitmap_free(b);
    };
    clearMtmdErrors();
    for (size_t i = 0; i < images_.size(); i++) {
      const auto& bytes = images_[i];
      const std::string which = images_.size() == 1 ? "The image" : "Image " + std::to_string(i + 1);
      if (isWebp(bytes)) {
        freeAll();
        SetError(which + " is a WebP, which cannot be decoded here; convert it to PNG or JPEG.");
        return;
      }
      int x = 0, y = 0, comp = 0;
      if (!bytes.empty() && m.stbi_info_from_memory && bytes.size() < INT32_MAX &&
          m.stbi_info_from_memory(bytes.data(), (int)bytes.size(), &x, &y, &comp) && (double)x * y > maxPixels_) {
        freeAll();
        SetError(which + " is " + std::to_string(x) + "×" + std::to_string(y) + " pixels, more than the " + std::to_string((int64_t)maxPixels_) +
                 " allowed; send a smaller image.");
        return;
      }
      mtmd_helper_bitmap_wrapper w{nullptr, nullptr};
      if (!bytes.empty()) w = m.mtmd_helper_bitmap_init_from_buf(core_->ctx, bytes.data(), bytes.size(), false, m.mtmd_helper_init_opt_default());
      if (!w.bitmap) {
        freeAll();
        SetError(which + (bytes.empty() ? " is empty" : " could not be decoded") + "; send a PNG, JPEG, BMP or GIF file.");
        return;
      }
      bitmaps.push_back(w.bitmap);
      TokenizedImage img;
      img.width = m.mtmd_bitmap_get_nx(w.bitmap);
      img.height = m.mtmd_bitmap_get_ny(w.bitmap);
      img.bytes = bytes.size();
      const char* id = m.mtmd_bitmap_get_id(w.bitmap);
      img.id = id ? id : "";
      images.push_back(img);
    }
    images_.clear();
    mtmd_input_chunks* chunks = m.mtmd_input_chunks_init();
    mtmd_input_text text{text_.c_str(), text_.size(), addSpecial_, parseSpecial_};
    int32_t rc;
    {
      // mtmd's preprocessors are reached through a const context but are not promised thread-safe.
      std::lock_guard<std::mutex> lock(core_->encodeMu);
      rc = m.mtmd_tokenize(core_->ctx, chunks, &text, const_cast<const mtmd_bitmap**>(bitmaps.data()), bitmaps.size());
    }
    freeAll();
    if (rc != 0) {
      m.mtmd_input_chunks_free(chunks);
      std::string why = mtmdError();
      SetError("The images could not be prepared for the model (" + (why.empty() ? "mtmd_tokenize returned " + std::to_string(rc) : why) + ").");
      return;
    }
    for (size_t i = 0; i < m.mtmd_input_chunks_size(chunks); i++) {
      const mtmd_input_chunk* c = m.mtmd_input_chunks_get(chunks, i);
      TokenizedChunk out;
      out.type = m.mtmd_input_chunk_get_type(c);
      if (out.type == MTMD_INPUT_CHUNK_TYPE_TEXT) {
        size_t n = 0;
        const llama_token* t = m.mtmd_input_chunk_get_tokens_text(c, &n);
        out.tokens.assign(t, t + n);
        // mtmd looks the image's marker tokens (<fake_token_around_image>, <image>, ...) up by text and
        // puts LLAMA_TOKEN_NULL in the chunk when the model lacks one.
        if (std::any_of(out.tokens.begin(), out.tokens.end(), [&](llama_token id) { return id < 0 || id >= core_->nVocab; })) {
          m.mtmd_input_chunks_free(chunks);
          result.clear();
          SetError("The projector's image marker tokens are not all in this model's vocabulary; use the mmproj file made for this model.");
          return;
        }
      } else {
        out.ref = std::make_shared<const ChunkRef>(m.mtmd_input_chunk_copy(c));
        out.nTokens = m.mtmd_input_chunk_get_n_tokens(c);
        out.nPos = m.mtmd_input_chunk_get_n_pos(c);
        const char* id = m.mtmd_input_chunk_get_id(c);
        out.id = id ? id : "";
      }
      result.push_back(std::move(out));
    }
    m.mtmd_input_chunks_free(chunks);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array chunks = Napi::Array::New(env, result.size());
    for (size_t i = 0; i < result.size(); i++) {
      const TokenizedChunk& c = result[i];
      Napi::Object o = Napi::Object::New(env);
      if (c.type == MTMD_INPUT_CHUNK_TYPE_TEXT) {
        o.Set("kind", "text");
        Napi::Int32Array t = Napi::Int32Array::New(env, c.tokens.size());
        std::copy(c.tokens.begin(), c.tokens.end(), t.Data());
        o.Set("tokens", t);
      } else {
        o.Set("kind", c.type == MTMD_INPUT_CHUNK_TYPE_AUDIO ? "audio" : "image");
        o.Set("nTokens", (double)c.nTokens);
        o.Set("nPos", (double)c.nPos);
        o.Set("id", c.id);
        Napi::Object handle = ImageChunk::ctor.New({});
        ImageChunk::Unwrap(handle)->ref = c.ref;
        o.Set("chunk", handle);
      }
      chunks[(uint32_t)i] = o;
    }
    Napi::Array imgs = Napi::Array::New(env, images.size());
    for (size_t i = 0; i < images.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("width", images[i].width);
      o.Set("height", images[i].height);
      o.Set("bytes", (double)images[i].bytes);
      o.Set("id", images[i].id);
      imgs[(uint32_t)i] = o;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("chunks", chunks);
    out.Set("images", imgs);
    core_.reset();
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override {
    core_.reset();
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ProjectorCore> core_;
  std::string text_;
  std::vector<std::vector<uint8_t>> images_;
  bool addSpecial_, parseSpecial_;
  double maxPixels_;
  std::vector<TokenizedImage> images;
  std::vector<TokenizedChunk> result;
};

class EncodeWorker : public Napi::AsyncWorker {
 public:
  EncodeWorker(Napi::Env env, std::shared_ptr<ProjectorCore> core, std::shared_ptr<const ChunkRef> chunk)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), core_(std::move(core)), chunk_(std::move(chunk)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    const MtmdApi& m = mtmdApi();
    auto img = std::make_shared<ImageEmbedding>();
    const mtmd_input_chunk* c = chunk_->chunk;
    img->nTokens = (int32_t)m.mtmd_input_chunk_get_n_tokens(c);
    img->nPos = m.mtmd_input_chunk_get_n_pos(c);
    img->nEmbd = core_->nEmbd;
    const char* id = m.mtmd_input_chunk_get_id(c);
    img->id = id ? id : "";
    std::lock_guard<std::mutex> lock(core_->encodeMu);
    img->nonCausal = m.mtmd_decode_use_non_causal(core_->ctx, c);
    if (m.mtmd_decode_use_mrope(core_->ctx)) {
      const size_t n = (size_t)img->nTokens;
      img->mropeBase.resize(4 * n);
      img->mropeStep.resize(4 * n);
      const mtmd_image_tokens* image = m.mtmd_input_chunk_get_tokens_image(c);
      for (size_t i = 0; i < n; i++) {
        // Audio under M-RoPE is 1-D: every component n_past + i.
        mtmd_decoder_pos p0 = image ? m.mtmd_image_tokens_get_decoder_pos(image, 0, i) : mtmd_decoder_pos{(uint32_t)i, (uint32_t)i, (uint32_t)i, (uint32_t)i};
        mtmd_decoder_pos p1 = image ? m.mtmd_image_tokens_get_decoder_pos(image, 1, i) : mtmd_decoder_pos{(uint32_t)i + 1, (uint32_t)i + 1, (uint32_t)i + 1, (uint32_t)i + 1};
        mtmd_decoder_pos p9 = image ? m.mtmd_image_tokens_get_decoder_pos(image, 9, i) : mtmd_decoder_pos{(uint32_t)i + 9, (uint32_t)i + 9, (uint32_t)i + 9, (uint32_t)i + 9};
        const uint32_t b[4] = {p0.t, p0.y, p0.x, p0.z}, o[4] = {p1.t, p1.y, p1.x, p1.z}, q[4] = {p9.t, p9.y, p9.x, p9.z};
        for (int k = 0; k < 4; k++) {
          llama_pos step = (llama_pos)o[k] - (llama_pos)b[k];
          if ((step != 0 && step != 1) || (llama_pos)q[k] != (llama_pos)b[k] + 9 * step) {
            SetError("This model's image positions are not supported (they do not advance with the text position).");
            return;
          }
          img->mropeBase[k * n + i] = (llama_pos)b[k];
          img->mropeStep[k * n + i] = step;
        }
      }
    }
    clearMtmdErrors();
    auto t0 = std::chrono::steady_clock::now();
    int32_t rc = m.mtmd_encode_chunk(core_->ctx, c);
    ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (rc != 0) {
      std::string why = mtmdError();
      SetError("The image could not be encoded (" + (why.empty() ? "mtmd_encode_chunk returned " + std::to_string(rc) : why) + ").");
      return;
    }
    const float* out = m.mtmd_get_output_embd(core_->ctx);
    img->data.assign(out, out + (size_t)img->nTokens * (size_t)img->nEmbd);
    embd_ = std::move(img);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object handle = ImageEmbeddingHandle::ctor.New({});
    ImageEmbeddingHandle::Unwrap(handle)->embd = embd_;
    Napi::Object o = Napi::Object::New(env);
    o.Set("embd", handle);
    o.Set("nTokens", embd_->nTokens);
    o.Set("nEmbd", embd_->nEmbd);
    o.Set("nPos", embd_->nPos);
    o.Set("mrope", !embd_->mropeBase.empty());
    o.Set("nonCausal", embd_->nonCausal);
    o.Set("id", embd_->id);
    o.Set("ms", ms_);
    core_.reset();
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override {
    core_.reset();
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ProjectorCore> core_;
  std::shared_ptr<const ChunkRef> chunk_;
  std::shared_ptr<ImageEmbedding> embd_;
  double ms_ = 0;
};

}  // namespace

Napi::Value Projector::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!mtmdLoaded()) throw Napi::Error::New(env, "The image library is not loaded yet.");
  std::string path = info[0].As<Napi::String>();
  Napi::Object modelObj = info[1].As<Napi::Object>();
  Model* model = Model::Unwrap(modelObj);
  if (!model->model()) throw Napi::Error::New(env, "The model was disposed.");
  Napi::Object opts = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  bool gpu = opts.Get("gpu").ToBoolean();
  int32_t threads = opts.Get("threads").IsNumber() ? opts.Get("threads").As<Napi::Number>().Int32Value() : 2;
  // The warmup encode allocates clip's compute buffers at load (a too-large model fails here, not
  // at the first image); tests of tiny models with huge warmup images turn it off.
  bool warmup = opts.Has("warmup") ? opts.Get("warmup").ToBoolean().Value() : true;
  auto* worker = new ProjectorLoadWorker(env, path, model, modelObj, gpu, std::max(1, threads), warmup);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value Projector::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = core(env);
  const MtmdApi& m = mtmdApi();
  Napi::Object o = Napi::Object::New(env);
  o.Set("vision", m.mtmd_support_vision(c->ctx));
  o.Set("audio", m.mtmd_support_audio(c->ctx));
  o.Set("marker", m.mtmd_get_marker(c->ctx));
  o.Set("embeddingSize", c->nEmbd);
  o.Set("mrope", m.mtmd_decode_use_mrope(c->ctx));
  o.Set("nonCausal", m.mtmd_decode_use_non_causal(c->ctx, nullptr));
  return o;
}

// tokenize(text, images: Uint8Array[], {addSpecial?, parseSpecial?, maxPixels?}) => Promise<{chunks, images}>
Napi::Value Projector::Tokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!core_) return rejected(env, kDisposed);
  auto c = core_;
  std::string text = info[0].As<Napi::String>();
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<std::vector<uint8_t>> images;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsTypedArray()) throw Napi::TypeError::New(env, "Each image must be a Buffer or Uint8Array.");
    Napi::Uint8Array b = v.As<Napi::Uint8Array>();
    images.emplace_back(b.Data(), b.Data() + b.ByteLength());
  }
  Napi::Object opts = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  bool addSpecial = opts.Get("addSpecial").ToBoolean();
  bool parseSpecial = opts.Has("parseSpecial") ? opts.Get("parseSpecial").ToBoolean().Value() : true;
  // 64 Mpx by default: a 12-bit-per-side bomb of a PNG would otherwise be decoded into gigabytes.
  double maxPixels = opts.Get("maxPixels").IsNumber() ? opts.Get("maxPixels").As<Napi::Number>().DoubleValue() : 64.0 * 1024 * 1024;
  auto* worker = new TokenizeWorker(env, c, std::move(text), std::move(images), addSpecial, parseSpecial, maxPixels);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// encode(chunk: NativeImageChunk) => Promise<{embd, nTokens, nEmbd, nPos, mrope, nonCausal, id, ms}>
Napi::Value Projector::Encode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!core_) return rejected(env, kDisposed);
  auto c = core_;
  if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(ImageChunk::ctor.Value()))
    throw Napi::TypeError::New(env, "encode() takes an image chunk from tokenize().");
  auto ref = ImageChunk::Unwrap(info[0].As<Napi::Object>())->ref;
  auto* worker = new EncodeWorker(env, c, ref);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value Projector::Dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}


namespace {
// loadMtmd(libPath) => undefined, or throws one sentence.
Napi::Value LoadMtmdJs(const Napi::CallbackInfo& info) {
  std::string err = loadMtmd(info[0].As<Napi::String>());
  if (!err.empty()) throw Napi::Error::New(info.Env(), err);
  return info.Env().Undefined();
}


// probeProjector(mmprojPath) => "" or clip's reason: loads the file with no text model, on the CPU,
// with the warmup encode (which builds the graph), then frees it. For a throwaway process: a file
// clip.cpp crashes on kills the caller (daemon/src/engine/probeProjector.ts).
Napi::Value ProbeProjector(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!mtmdLoaded()) throw Napi::Error::New(env, "The image library is not loaded yet.");
  std::string path = info[0].As<Napi::String>();
  const MtmdApi& m = mtmdApi();
  mtmd_context_params p = m.mtmd_context_params_default();
  p.use_gpu = false;
  p.n_threads = 1;
  p.print_timings = false;
  p.warmup = true;
  clearMtmdErrors();
  mtmd_context* ctx = m.mtmd_init_from_file(path.c_str(), nullptr, p);
  if (!ctx) {
    std::string why = mtmdError();
    return Napi::String::New(env, why.empty() ? "clip could not load it" : why);
  }
  m.mtmd_free(ctx);
  return Napi::String::New(env, "");
}
}  // namespace

void initMtmd(Napi::Env env, Napi::Object exports) {
  exports.Set("loadMtmd", Napi::Function::New(env, LoadMtmdJs));
  exports.Set("loadProjector", Napi::Function::New(env, Projector::Load));
  exports.Set("probeProjector", Napi::Function::New(env, ProbeProjector));
  exports.Set("NativeProjector", Projector::Init(env));
  exports.Set("NativeImageChunk", ImageChunk::Init(env));
  exports.Set("NativeImageEmbedding", ImageEmbeddingHandle::Init(env));
  initMtmdTest(env, exports);
}
