#include "Sampler.h"
#include <cmath>
#include <stdexcept>

static constexpr int32_t kPenaltyWindow = 64;

Sampler::Sampler(const llama_vocab* vocab, const SamplingSettings& s, const std::vector<llama_token>& history, const std::vector<llama_token>* eog)
    : settings_(s), nVocab_(api().llama_vocab_n_tokens(vocab)), eog_(eog) {
  const Api& a = api();
  chain_.reset(a.llama_sampler_chain_init(a.llama_sampler_chain_default_params()));
  if (s.repetitionPenalty != 1.0f) {
    penalties_.reset(a.llama_sampler_init_penalties(nVocab_, kPenaltyWindow, s.repetitionPenalty, 0.0f, 0.0f));
    size_t from = history.size() > kPenaltyWindow ? history.size() - kPenaltyWindow : 0;
    for (size_t i = from; i < history.size(); i++)
      if (history[i] >= 0) a.llama_sampler_accept(penalties_.get(), history[i]);  // images are not tokens
  }
  if (s.doSample && s.temperature > 0) {
    if (s.topK > 0) a.llama_sampler_chain_add(chain_.get(), a.llama_sampler_init_top_k(s.topK));
    if (s.topP < 1.0f) a.llama_sampler_chain_add(chain_.get(), a.llama_sampler_init_top_p(s.topP, 1));
    a.llama_sampler_chain_add(chain_.get(), a.llama_sampler_init_temp(s.temperature));
    a.llama_sampler_chain_add(chain_.get(), a.llama_sampler_init_dist(s.seed));
  } else {
    a.llama_sampler_chain_add(chain_.get(), a.llama_sampler_init_greedy());
  }
  cur_.resize(nVocab_);
}

llama_token Sampler::sample(llama_context* ctx, int32_t i, int32_t sampledSoFar) {
  const Api& a = api();
  const float* logits = a.llama_get_logits_ith(ctx, i);
  if (!logits) throw std::runtime_error("llama.cpp returned no logits for the step");
  const bool ban = !grammar_ && sampledSoFar < settings_.minNewTokens && eog_ && !eog_->empty();
  if (!settings_.doSample && !penalties_ && !grammar_ && !ban) {
    // Plain greedy: the largest logit, without building the candidate array (what llama.cpp's
    // greedy sampler would pick: the first of equal maxima).
    llama_token best = 0;
    for (int32_t id = 1; id < nVocab_; id++)
      if (logits[id] > logits[best]) best = id;
    return best;
  }
  for (int32_t id = 0; id < nVocab_; id++) cur_[id] = llama_token_data{id, logits[id], 0.0f};
  llama_token_data_array arr{cur_.data(), cur_.size(), -1, false};
  // A grammar in force decides when the reply may end: a finished grammar allows only the end.
  if (ban) {
    for (llama_token id : *eog_) cur_[id].logit = -INFINITY;
  }
  if (penalties_) a.llama_sampler_apply(penalties_.get(), &arr);
  if (grammar_) a.llama_sampler_apply(grammar_.get(), &arr);
  a.llama_sampler_apply(chain_.get(), &arr);
  if (arr.selected < 0 || arr.selected >= (int64_t)arr.size) throw std::runtime_error("the sampler selected no token");
  const llama_token_data& picked = arr.data[arr.selected];
  if (std::isinf(picked.logit) && picked.logit < 0) throw std::runtime_error("no token is allowed here (the grammar or the bans exclude every token)");
  llama_token token = picked.id;
  if (grammar_) a.llama_sampler_accept(grammar_.get(), token);
  if (penalties_) a.llama_sampler_accept(penalties_.get(), token);
  a.llama_sampler_accept(chain_.get(), token);
  return token;
}

void Sampler::observe(const llama_token* tokens, size_t n) {
  if (!penalties_) return;
  for (size_t i = 0; i < n; i++) api().llama_sampler_accept(penalties_.get(), tokens[i]);
}

std::string compileGrammar(const llama_vocab* vocab, const std::string& gbnf, SamplerPtr& out) {
  takeLoggedErrors();
  try {
    out.reset(api().llama_sampler_init_grammar(vocab, gbnf.c_str(), "root"));
  } catch (const std::exception& e) {
    return e.what();
  }
  if (!out) {
    std::string why = takeLoggedErrors();
    auto nl = why.find('\n');
    if (nl != std::string::npos) why = why.substr(0, nl);
    return why.empty() ? "llama.cpp could not parse it" : why;
  }
  return "";
}
