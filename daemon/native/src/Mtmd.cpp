#include "Mtmd.h"
#include <dlfcn.h>
#include <sys/stat.h>
#include <algorithm>
#include "ErrorLog.h"

namespace {
MtmdApi g_mtmd;
bool g_loaded = false;
std::string g_path;
ErrorLog g_errors;

// clip and mtmd log every load step; keep only errors, for error messages.
void onLog(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) g_errors.add(text);
}

std::string dlerr() {
  const char* e = dlerror();
  return e ? e : "unknown error";
}
}  // namespace

// Only mtmd's and clip's own log: llama.cpp's (Library.cpp) belongs to model and context loading.
void clearMtmdErrors() { g_errors.take(); }

/** The error lines mtmd or clip logged since clearMtmdErrors(), without function-name prefixes. */
static std::vector<std::string> loggedErrors() {
  std::string all = g_errors.take();
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
std::string mtmdError() {
  std::vector<std::string> lines = loggedErrors();
  return lines.empty() ? "" : lines.front();
}


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

