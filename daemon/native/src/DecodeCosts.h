// What a llama_decode of n tokens costs here, learned as the loop runs, so a round of n one-token
// reply steps can go as n single decodes when that is cheaper than one n-token batch. On CPU a
// one-token batch uses matrix-vector kernels and larger ones matrix-matrix kernels that pay off only
// with enough rows: measured on the 2-core bench machine (114M q8_0, 1 thread) one token 6.5 ms, two
// 20 ms, four 29 ms, eight 39 ms, sixteen 49 ms on the prebuilt CPU backend; llama.cpp compiled here
// (as native/cpu.mjs now builds it) one 8.8 ms, two 20, four 24.5, eight 32 (llama-bench pp1..pp8).
// Where the line falls depends on the model, the quantization, the device and the threads, hence
// measured, not configured. (Splitting also changes the kernels, and so the rounding: a one-token
// decode takes vec_dot, a batch tinyBLAS; greedy replies are not batch-invariant.)
#pragma once
#include <map>

class DecodeCosts {
 public:
  /** `alpha`: weight of a new measurement; every `explore` rounds of a size the other way is tried. */
  explicit DecodeCosts(double alpha = 0.2, int explore = 64) : alpha_(alpha), explore_(explore) {}

  void record(int tokens, double ms) {
    auto it = ms_.find(tokens);
    if (it == ms_.end()) ms_[tokens] = ms;
    else it->second += alpha_ * (ms - it->second);
  }

  /** The running average for `tokens`, or -1 when none was measured. */
  double estimate(int tokens) const {
    auto it = ms_.find(tokens);
    return it == ms_.end() ? -1 : it->second;
  }

  /** Whether a round of `n` one-token steps should go as n single decodes. */
  bool split(int n) {
    if (n < 2) return false;
    int round = ++rounds_[n];
    auto many = ms_.find(n);
    auto one = ms_.find(1);
    // Unknown costs are measured first: the batch, then the singles.
    if (many == ms_.end()) return false;
    if (one == ms_.end()) return true;
    bool pays = n * one->second * 1.05 < many->second;
    // Now and then the other way is tried, to follow changes (other load, other lengths).
    return round % explore_ == 0 ? !pays : pays;
  }

 private:
  double alpha_;
  int explore_;
  std::map<int, double> ms_;
  std::map<int, int> rounds_;
};
