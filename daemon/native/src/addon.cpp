// nanollm's engine addon: llama.cpp loaded by path, models, contexts with their decode loop.
#include <napi.h>
#include "Context.h"
#include "Library.h"
#include "Model.h"
#include "Mtmd.h"
#include "Plan.h"
#include "ThreadChoice.h"

namespace {
// loadLibrary(llamaPath, ggmlPath, backendDir, cpuBackend) => {systemInfo, devices: [{name, type}], threadpool, ownCpu}
Napi::Value LoadLibrary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string err = loadLibrary(info[0].As<Napi::String>(), info[1].As<Napi::String>(), info[2].As<Napi::String>(), info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : std::string());
  if (!err.empty()) throw Napi::Error::New(env, err);
  const Api& a = api();
  Napi::Object o = Napi::Object::New(env);
  o.Set("systemInfo", a.llama_print_system_info());
  Napi::Array devices = Napi::Array::New(env);
  for (size_t i = 0; i < a.ggml_backend_dev_count(); i++) {
    ggml_backend_dev_t d = a.ggml_backend_dev_get(i);
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("name", a.ggml_backend_dev_name(d));
    enum ggml_backend_dev_type t = a.ggml_backend_dev_type(d);
    dev.Set("type", t == GGML_BACKEND_DEVICE_TYPE_CPU ? "cpu" : t == GGML_BACKEND_DEVICE_TYPE_GPU ? "gpu" : t == GGML_BACKEND_DEVICE_TYPE_IGPU ? "igpu" : "other");
    devices[(uint32_t)i] = dev;
  }
  o.Set("devices", devices);
  o.Set("threadpool", a.threadpool_new != nullptr);
  o.Set("ownCpu", ownCpuBackend());
  return o;
}
// The loop's policies, exposed for unit tests.
// planRound([{seq, left}], size) => [[seq, count]]
Napi::Value PlanRound(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array in = info[0].As<Napi::Array>();
  std::vector<PlanItem> items;
  for (uint32_t i = 0; i < in.Length(); i++) {
    Napi::Object o = in.Get(i).As<Napi::Object>();
    items.push_back({o.Get("seq").As<Napi::Number>().Int32Value(), o.Get("left").As<Napi::Number>().Int32Value()});
  }
  std::vector<PlanPick> picks = planRound(items, info[1].As<Napi::Number>().Int32Value());
  Napi::Array out = Napi::Array::New(env, picks.size());
  for (size_t i = 0; i < picks.size(); i++) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair[0u] = items[picks[i].item].seq;
    pair[1u] = picks[i].count;
    out[(uint32_t)i] = pair;
  }
  return out;
}

// decodeCostsTrace(alpha, explore, [["record", n, ms] | ["split", n] | ["estimate", n]]) => results
Napi::Value DecodeCostsTrace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DecodeCosts costs(info[0].As<Napi::Number>().DoubleValue(), info[1].As<Napi::Number>().Int32Value());
  Napi::Array steps = info[2].As<Napi::Array>();
  Napi::Array out = Napi::Array::New(env);
  for (uint32_t i = 0; i < steps.Length(); i++) {
    Napi::Array step = steps.Get(i).As<Napi::Array>();
    std::string what = step.Get(0u).As<Napi::String>();
    int n = step.Get(1u).As<Napi::Number>().Int32Value();
    if (what == "record") costs.record(n, step.Get(2u).As<Napi::Number>().DoubleValue());
    else if (what == "split") out[out.Length()] = Napi::Boolean::New(env, costs.split(n));
    else out[out.Length()] = Napi::Number::New(env, costs.estimate(n));
  }
  return out;
}
// threadChoiceTrace([1, 2], alpha, explore, [["record", tokens, threads, ms] | ["pick", tokens]]) => picks
Napi::Value ThreadChoiceTrace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array c = info[0].As<Napi::Array>();
  std::vector<int> candidates;
  for (uint32_t i = 0; i < c.Length(); i++) candidates.push_back(c.Get(i).As<Napi::Number>().Int32Value());
  ThreadChoice choice(candidates, info[1].As<Napi::Number>().DoubleValue(), info[2].As<Napi::Number>().Int32Value());
  Napi::Array steps = info[3].As<Napi::Array>();
  Napi::Array out = Napi::Array::New(env);
  for (uint32_t i = 0; i < steps.Length(); i++) {
    Napi::Array step = steps.Get(i).As<Napi::Array>();
    std::string what = step.Get(0u).As<Napi::String>();
    int tokens = step.Get(1u).As<Napi::Number>().Int32Value();
    if (what == "record") choice.record(tokens, step.Get(2u).As<Napi::Number>().Int32Value(), step.Get(3u).As<Napi::Number>().DoubleValue());
    else out[out.Length()] = Napi::Number::New(env, choice.pick(tokens));
  }
  return out;
}
}  // namespace

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("loadLibrary", Napi::Function::New(env, LoadLibrary));
  exports.Set("loadModel", Napi::Function::New(env, Model::Load));
  exports.Set("NativeModel", Model::Init(env));
  exports.Set("NativeContext", Context::Init(env));
  exports.Set("NativeGrammar", Grammar::Init(env));
  exports.Set("planRound", Napi::Function::New(env, PlanRound));
  exports.Set("decodeCostsTrace", Napi::Function::New(env, DecodeCostsTrace));
  exports.Set("threadChoiceTrace", Napi::Function::New(env, ThreadChoiceTrace));
  initMtmd(env, exports);
  return exports;
}

NODE_API_MODULE(nanollm, InitAddon)
