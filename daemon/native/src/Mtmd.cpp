#include "Mtmd.h"
#include <dlfcn.h>
#include <sys/stat.h>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include "Model.h"

namespace {
MtmdApi g_mtmd;
bool g_loaded = false;
std::string g_path;
std::mutex g_logMu;
std::string g_errors;

// clip and mtmd log every load step; keep only errors, for error messages.
void onLog(ggml_log_level level, const char* text, void*) {
  if (level != GGML_LOG_LEVEL_ERROR || text == nullptr) return;
  std::lock_guard<std::mutex> lock(g_logMu);
  if (g_errors.size() > 4096) g_errors.erase(0, g_errors.size() - 2048);
  g_errors += text;
}

// Only mtmd's and clip's own log: llama.cpp's (Library.cpp) belongs to model and context loading.
void clearErrors() {
  std::lock_guard<std::mutex> lock(g_logMu);
  g_errors.clear();
}

/** The error lines mtmd or clip logged since clearErrors(), without function-name prefixes. */
std::vector<std::string> loggedErrors() {
  std::string all;
  {
    std::lock_guard<std::mutex> lock(g_logMu);
    all.swap(g_errors);
  }
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\n', start);
    if (end == std::string::npos) end = all.size();
    std::string line = all.substr(start, end - start);
    start = end + 1;
    // "mtmd_init_from_file: error: load_hparams: unknown projector type: x" -> "unknown projector type: x"
    for (size_t p = line.find(": "); p != std::string::npos && line.find(' ') >= p; p = line.find(": ")) line = line.substr(p + 2);
    // clip_init's "failed to load model '<file>': load_hparams: Key not found: x" -> "Key not found: x"
    if (line.rfind("failed to load model '", 0) == 0 && line.find("': ") != std::string::npos) {
      line = line.substr(line.find("': ") + 3);
      for (size_t p = line.find(": "); p != std::string::npos && line.find(' ') >= p; p = line.find(": ")) line = line.substr(p + 2);
    }
    while (!line.empty() && (line.back() == ' ' || line.back() == '.' || line.back() == '\r')) line.pop_back();
    if (!line.empty() && line.rfind("hint", 0) != 0) lines.push_back(line);
  }
  return lines;
}

/** The first logged error (the cause; later lines are the callers giving up). */
std::string lastError() {
  std::vector<std::string> lines = loggedErrors();
  return lines.empty() ? "" : lines.front();
}

std::string dlerr() {
  const char* e = dlerror();
  return e ? e : "unknown error";
}

bool isWebp(const std::vector<uint8_t>& b) {
  return b.size() >= 12 && std::memcmp(b.data(), "RIFF", 4) == 0 && std::memcmp(b.data() + 8, "WEBP", 4) == 0;
}

size_t countMarkers(const std::string& text, const std::string& marker) {
  size_t n = 0;
  for (size_t p = text.find(marker); p != std::string::npos; p = text.find(marker, p + marker.size())) n++;
  return n;
}
}  // namespace

const MtmdApi& mtmdApi() { return g_mtmd; }
bool mtmdLoaded() { return g_loaded; }

std::string loadMtmd(const std::string& path) {
  if (!libraryLoaded()) return "llama.cpp must be loaded before the image library.";
  if (g_loaded) {
    if (path == g_path) return "";
    return "The image library is already loaded from " + g_path + "; one process runs one llama.cpp variant.";
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return "The image library " + path + " is not built; run 'npm ci' (or 'node daemon/native/mtmd.mjs') to build it.";
  // Never closed, like libllama: clip keeps backends for the life of the process.
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) return "Could not load " + path + " (" + dlerr() + ").";
  MtmdApi m;
#define NANOLLM_RESOLVE(name)                                                    \
  m.name = reinterpret_cast<decltype(m.name)>(dlsym(h, #name));                  \
  if (!m.name) return std::string(#name) + " is missing from " + path + "; rebuild it with 'node daemon/native/mtmd.mjs'.";
  NANOLLM_MTMD_FNS(NANOLLM_RESOLVE)
  NANOLLM_MTMD_LLAMA_FNS(NANOLLM_RESOLVE)
#undef NANOLLM_RESOLVE
  // Linked against another variant's libllama (other soname), it would have pulled in a second
  // llama.cpp whose models are not ours.
  m.stbi_info_from_memory = reinterpret_cast<decltype(m.stbi_info_from_memory)>(dlsym(h, "stbi_info_from_memory"));
  if (reinterpret_cast<void*>(m.llama_decode) != reinterpret_cast<void*>(api().llama_decode))
    return path + " was built for another llama.cpp variant than the one loaded; use the library built for this variant.";
  m.mtmd_helper_log_set(onLog, nullptr);
  g_mtmd = m;
  g_loaded = true;
  g_path = path;
  return "";
}

ChunkRef::~ChunkRef() {
  if (chunk) g_mtmd.mtmd_input_chunk_free(chunk);
}

ProjectorCore::~ProjectorCore() {
  if (ctx) g_mtmd.mtmd_free(ctx);
  if (model) model->contexts--;
}

std::string evalImageChunk(llama_context* ctx, const ImageEmbedding& img, llama_pos nPast, llama_seq_id seq, int32_t nBatch,
                           llama_pos* newNPast) {
  const MtmdApi& m = g_mtmd;
  const int32_t n = img.nTokens;
  if (n <= 0 || nBatch <= 0 || img.data.size() != (size_t)n * (size_t)img.nEmbd) return "The image embedding is empty or malformed.";
  if (img.nonCausal && (int32_t)m.llama_n_ubatch(ctx) < n)
    return "The image takes " + std::to_string(n) + " tokens but a batch holds " + std::to_string(m.llama_n_ubatch(ctx)) +
           "; this model needs a whole image in one batch (raise the batch size).";
  if (img.nonCausal) nBatch = n;
  // Positions, section-major for M-RoPE: [t × n][y × n][x × n][z × n].
  const bool mrope = !img.mropeBase.empty();
  const int per = mrope ? 4 : 1;
  if (mrope && (img.mropeBase.size() != (size_t)n * 4 || img.mropeStep.size() != img.mropeBase.size()))
    return "The image embedding's positions are malformed.";
  std::vector<llama_pos> pos((size_t)n * per);
  for (size_t k = 0; k < pos.size(); k++) pos[k] = mrope ? img.mropeBase[k] + nPast * img.mropeStep[k] : nPast + (llama_pos)k;
  llama_seq_id seqId = seq;
  std::vector<int32_t> nSeq(n, 1);
  std::vector<llama_seq_id*> seqIds(n, &seqId);
  std::vector<int8_t> logits(n, 0);
  std::vector<llama_pos> view;
  if (img.nonCausal) m.llama_set_causal_attn(ctx, false);
  std::string error;
  for (int32_t off = 0; off < n && error.empty(); off += nBatch) {
    const int32_t count = std::min(nBatch, n - off);
    llama_pos* p = pos.data() + off;
    if (per > 1) {
      view.clear();
      for (int s = 0; s < per; s++) view.insert(view.end(), pos.begin() + (size_t)s * n + off, pos.begin() + (size_t)s * n + off + count);
      p = view.data();
    }
    llama_batch b{count, nullptr, const_cast<float*>(img.data.data()) + (size_t)off * img.nEmbd, p, nSeq.data() + off, seqIds.data() + off, logits.data() + off};
    int32_t rc = m.llama_decode(ctx, b);
    if (rc != 0) error = "llama.cpp could not evaluate the image (llama_decode returned " + std::to_string(rc) + ").";
  }
  if (img.nonCausal) m.llama_set_causal_attn(ctx, true);
  if (error.empty()) *newNPast = nPast + img.nPos;
  return error;
}

// --- JS classes ---------------------------------------------------------------------------------

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
    const MtmdApi& m = g_mtmd;
    mtmd_context_params p = m.mtmd_context_params_default();
    p.use_gpu = gpu_;
    p.n_threads = threads_;
    p.print_timings = false;
    p.warmup = warmup_;
    clearErrors();
    const llama_model* model = core_->model->model();
    try {
      core_->ctx = m.mtmd_init_from_file(path_.c_str(), model, p);
    } catch (const std::exception&) {
      core_->ctx = nullptr;
    }
    if (!core_->ctx) {
      std::string why = lastError();
      SetError(why.empty() ? "clip could not load it" : why);
      return;
    }
    core_->nEmbd = m.llama_model_n_embd_inp(model);
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
    const MtmdApi& m = g_mtmd;
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
    clearErrors();
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
      std::string why = lastError();
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
    const MtmdApi& m = g_mtmd;
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
    clearErrors();
    auto t0 = std::chrono::steady_clock::now();
    int32_t rc = m.mtmd_encode_chunk(core_->ctx, c);
    ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (rc != 0) {
      std::string why = lastError();
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
  if (!g_loaded) throw Napi::Error::New(env, "The image library is not loaded yet.");
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
  const MtmdApi& m = g_mtmd;
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

// The logits after `before`, an image step and `after` in a fresh one-sequence context whose batch
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
  if (!core) throw Napi::Error::New(env, kDisposed);
  if (!info[2].IsObject() || !info[2].As<Napi::Object>().InstanceOf(ImageChunk::ctor.Value())) throw Napi::TypeError::New(env, "The third argument must be an image chunk.");
  auto chunk = ImageChunk::Unwrap(info[2].As<Napi::Object>())->ref;
  int32_t nBatch = std::max(1, std::min(batchArg(info, 5), 64));
  return logitsAround(info, Model::Unwrap(info[0].As<Napi::Object>()), info[3].As<Napi::Int32Array>(), info[4].As<Napi::Int32Array>(), nBatch,
                      [&](llama_context* ctx, llama_pos* pos) -> std::string {
                        std::lock_guard<std::mutex> lock(core->encodeMu);
                        llama_pos next = *pos;
                        int32_t rc = g_mtmd.mtmd_helper_eval_chunk_single(core->ctx, ctx, chunk->chunk, *pos, 0, nBatch, false, &next);
                        *pos = next;
                        return rc == 0 ? "" : "mtmd_helper_eval_chunk_single returned " + std::to_string(rc) + ".";
                      });
}
}  // namespace

void initMtmd(Napi::Env env, Napi::Object exports) {
  exports.Set("loadMtmd", Napi::Function::New(env, LoadMtmdJs));
  exports.Set("loadProjector", Napi::Function::New(env, Projector::Load));
  exports.Set("NativeProjector", Projector::Init(env));
  exports.Set("NativeImageChunk", ImageChunk::Init(env));
  exports.Set("NativeImageEmbedding", ImageEmbeddingHandle::Init(env));
  exports.Set("evalImageForTest", Napi::Function::New(env, EvalImageForTest));
  exports.Set("evalImageReferenceForTest", Napi::Function::New(env, EvalImageReferenceForTest));
}
