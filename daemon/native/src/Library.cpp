#include "Library.h"
#include <dlfcn.h>
#include "ErrorLog.h"

namespace {
Api g_api;
bool g_loaded = false;
bool g_ownCpu = false;
std::string g_paths;
ErrorLog g_errors;

// The prebuilt libraries log every load step to stderr; keep only errors, for error messages.
void onLog(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) g_errors.add(text);
}

// The CPU backend built here in place of the prebuilt variant that load_all chose, when that is
// the same variant (libggml-cpu-<variant>.so in both folders): on another CPU ggml may have chosen
// a better one (say AMX where this was built for AVX-512), which then stays. ggml_backend_load also
// refuses a backend whose own score is 0 (this CPU lacks an instruction set it was built for).
// Nothing has used the prebuilt one yet, so unloading it is safe.
bool preferCpuBackend(const Api& a, const std::string& path, const std::string& backendDir) {
  if (path.empty()) return false;
  const std::string name = path.substr(path.find_last_of('/') + 1);
  void* chosen = dlopen((backendDir + "/" + name).c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (!chosen) return false;
  dlclose(chosen);  // RTLD_NOLOAD counted a reference; ggml_backend_unload drops ggml's own.
  ggml_backend_reg_t ours = a.ggml_backend_load(path.c_str());
  if (!ours) {
    g_errors.take();
    return false;
  }
  for (size_t i = 0; i < a.ggml_backend_reg_count(); i++) {
    ggml_backend_reg_t other = a.ggml_backend_reg_get(i);
    if (other != ours && std::string(a.ggml_backend_reg_name(other)) == a.ggml_backend_reg_name(ours)) {
      a.ggml_backend_unload(other);
      break;
    }
  }
  return true;
}

std::string dlerr() {
  const char* e = dlerror();
  return e ? e : "unknown error";
}
}  // namespace

const Api& api() { return g_api; }
bool libraryLoaded() { return g_loaded; }
bool ownCpuBackend() { return g_ownCpu; }

std::string takeLoggedErrors() { return g_errors.take(); }

std::string lastLoggedError(const std::string& otherwise) {
  std::string why = g_errors.take();
  auto nl = why.rfind('\n');
  if (nl != std::string::npos) why = why.substr(nl + 1);
  return why.empty() ? otherwise : why;
}

std::string loadLibrary(const std::string& llamaPath, const std::string& ggmlPath, const std::string& backendDir, const std::string& cpuBackend) {
  const std::string paths = llamaPath + "|" + ggmlPath + "|" + backendDir + "|" + cpuBackend;
  if (g_loaded) {
    if (paths == g_paths) return "";
    return "llama.cpp is already loaded from " + g_paths.substr(0, g_paths.find('|')) + "; one process runs one llama.cpp variant.";
  }
  // Never closed: llama.cpp keeps global state (backends, loggers) for the life of the process.
  void* ggml = dlopen(ggmlPath.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!ggml) return "Could not load " + ggmlPath + " (" + dlerr() + ").";
  void* llama = dlopen(llamaPath.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!llama) return "Could not load " + llamaPath + " (" + dlerr() + ").";
  Api a;
#define NANOLLM_RESOLVE(lib, name)                                                              \
  a.name = reinterpret_cast<decltype(a.name)>(dlsym(lib, #name));                               \
  if (!a.name) return std::string(#name) + " is missing from " + (lib == llama ? llamaPath : ggmlPath) + \
                      "; the library does not match the llama.cpp headers this addon was built with.";
#define NANOLLM_RESOLVE_LLAMA(name) NANOLLM_RESOLVE(llama, name)
#define NANOLLM_RESOLVE_GGML(name) NANOLLM_RESOLVE(ggml, name)
  NANOLLM_LLAMA_FNS(NANOLLM_RESOLVE_LLAMA)
  NANOLLM_GGML_FNS(NANOLLM_RESOLVE_GGML)
#undef NANOLLM_RESOLVE
  a.llama_log_set(onLog, nullptr);
  a.llama_backend_init();
  a.ggml_backend_load_all_from_path(backendDir.c_str());
  g_ownCpu = preferCpuBackend(a, cpuBackend, backendDir);
  if (ggml_backend_reg_t cpu = a.ggml_backend_reg_by_name("CPU")) {
    a.threadpool_new = reinterpret_cast<decltype(a.threadpool_new)>(a.ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_new"));
    a.threadpool_free = reinterpret_cast<decltype(a.threadpool_free)>(a.ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_free"));
  }
  if (a.ggml_backend_dev_count() == 0) return "No llama.cpp backend could be loaded from " + backendDir + "; the folder lacks its libggml-*.so backends.";
  g_api = a;
  g_loaded = true;
  g_paths = paths;
  return "";
}
