// The JS side of images (NativeProjector, NativeImageChunk, NativeImageEmbedding) over Mtmd.h: an
// mmproj loaded for one model; tokenize and encode run on worker threads. The loop takes an
// embedding's data with ImageEmbeddingHandle::from(value) and evaluates it with evalImageChunk.
#pragma once
#include <napi.h>
#include <memory>
#include <mutex>
#include "Mtmd.h"

class Model;

/** An mtmd chunk (image or audio) copied out of a tokenization; immutable, any thread may read it. */
struct ChunkRef {
  mtmd_input_chunk* chunk = nullptr;
  explicit ChunkRef(mtmd_input_chunk* c) : chunk(c) {}
  ~ChunkRef();
  ChunkRef(const ChunkRef&) = delete;
  ChunkRef& operator=(const ChunkRef&) = delete;
};

/** JS: NativeImageChunk, an image chunk from tokenize(), passed back to encode(). */
class ImageChunk : public Napi::ObjectWrap<ImageChunk> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ImageChunk(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ImageChunk>(info) {}
  std::shared_ptr<const ChunkRef> ref;
  static Napi::FunctionReference ctor;
};

/** JS: NativeImageEmbedding; `values()` copies the floats out (tests). */
class ImageEmbeddingHandle : public Napi::ObjectWrap<ImageEmbeddingHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ImageEmbeddingHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ImageEmbeddingHandle>(info) {}
  /** The embedding behind a JS value, or null when it is not a NativeImageEmbedding. */
  static std::shared_ptr<const ImageEmbedding> from(Napi::Value v);
  std::shared_ptr<const ImageEmbedding> embd;
  static Napi::FunctionReference ctor;

 private:
  Napi::Value Values(const Napi::CallbackInfo& info);
};


/**
 * The mtmd context and its lock (one encode at a time: clip's compute buffers are per context),
 * and the model it was made for, kept from disposal while it lives. Destroyed on the JS thread
 * (by the projector's dispose or GC, or by the last of its workers completing).
 */
struct ProjectorCore {
  mtmd_context* ctx = nullptr;
  std::mutex encodeMu;
  int32_t nEmbd = 0;
  int32_t nVocab = 0;
  Model* model = nullptr;
  Napi::ObjectReference modelRef;
  ~ProjectorCore();
};

/** JS: NativeProjector, an mmproj loaded for one NativeModel (which it keeps from being disposed). */
class Projector : public Napi::ObjectWrap<Projector> {
 public:
  static Napi::Function Init(Napi::Env env);
  /** loadProjector(mmprojPath, nativeModel, {gpu, threads}) => Promise<NativeProjector>. */
  static Napi::Value Load(const Napi::CallbackInfo& info);
  explicit Projector(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Projector>(info) {}
  ~Projector() override;
  void adopt(std::shared_ptr<ProjectorCore> core);
  /** The core, or null once disposed. */
  std::shared_ptr<ProjectorCore> shared() const { return core_; }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value Encode(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  std::shared_ptr<ProjectorCore> core(Napi::Env env) const;
  void release();

  std::shared_ptr<ProjectorCore> core_;
};

