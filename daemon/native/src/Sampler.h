// One reply's sampling: a grammar (optional), a ban on end-of-generation tokens until
// min_new_tokens, then a llama.cpp chain (repetition penalty, top-k, top-p, temperature, seeded
// draw; or greedy). Used only on the loop thread.
#pragma once
#include <memory>
#include <string>
#include <vector>
#include "Library.h"

struct SamplingSettings {
  bool doSample = false;
  float temperature = 1.0f;
  int32_t topK = 0;
  float topP = 1.0f;
  float repetitionPenalty = 1.0f;
  uint32_t seed = 0;
  int32_t minNewTokens = 0;
};

struct SamplerDeleter {
  void operator()(llama_sampler* s) const {
    if (s) api().llama_sampler_free(s);
  }
};
using SamplerPtr = std::unique_ptr<llama_sampler, SamplerDeleter>;

class Sampler {
 public:
  /** `history`: tokens before the reply (the penalty window sees them); `eog`: ids to ban. */
  Sampler(const llama_vocab* vocab, const SamplingSettings& s, const std::vector<llama_token>& history, const std::vector<llama_token>* eog);

  /** Takes a fresh grammar state; from the next sample on the grammar rules (and lifts the ban). */
  void setGrammar(SamplerPtr grammar) { grammar_ = std::move(grammar); }

  /** Samples from the logits at batch index `i`; throws std::runtime_error when none is allowed. */
  llama_token sample(llama_context* ctx, int32_t i, int32_t sampledSoFar);

  /** Tokens that entered the cache without being sampled (inserted function results). */
  void observe(const llama_token* tokens, size_t n);

 private:
  SamplingSettings settings_;
  int32_t nVocab_;
  SamplerPtr chain_;
  SamplerPtr penalties_;
  SamplerPtr grammar_;
  const std::vector<llama_token>* eog_;
  std::vector<llama_token_data> cur_;
};

/** Compiles GBNF once into a state that is cloned per reply; returns "" or why it was refused. */
std::string compileGrammar(const llama_vocab* vocab, const std::string& gbnf, SamplerPtr& out);
