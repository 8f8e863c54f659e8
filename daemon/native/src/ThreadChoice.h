// How many threads a decode gets, learned as the loop runs when the user did not fix the counts.
// On the 2-core bench box the best count depends on the model and on the machine's other load:
// a 114M-param model decodes one token faster on 2 threads than on 1 with a persistent threadpool,
// the 260K stories model 6× faster on 1 (4,800 vs 800 tok/s: its graph is hundreds of tiny nodes,
// each a barrier), and with another process busy 2 spinning threads collapsed to 15 tok/s where 1
// kept 160. So each kind of decode (one token; small, medium, large batches) keeps a running
// average of milliseconds per token for each candidate count, uses the cheapest, and now and then
// tries the other to follow changes.
#pragma once
#include <algorithm>
#include <map>
#include <utility>
#include <vector>

class ThreadChoice {
 public:
  /** `candidates`: the counts to choose from (one means the choice is fixed). */
  ThreadChoice(std::vector<int> candidates, double alpha = 0.05, int explore = 64)
      : candidates_(std::move(candidates)), alpha_(alpha), explore_(explore) {}

  static int bucket(int tokens) { return tokens <= 1 ? 1 : tokens < 8 ? 2 : tokens < 64 ? 8 : 64; }

  int pick(int tokens) {
    if (candidates_.size() == 1) return candidates_[0];
    int b = bucket(tokens);
    // Unmeasured counts are tried first, in order.
    for (int c : candidates_)
      if (ms_.find({b, c}) == ms_.end()) return c;
    int best = candidates_[0], second = -1;
    for (int c : candidates_) {
      if (ms_[{b, c}] < ms_[{b, best}]) best = c;
    }
    for (int c : candidates_)
      if (c != best && (second < 0 || ms_[{b, c}] < ms_[{b, second}])) second = c;
    return ++rounds_[b] % explore_ == 0 && second >= 0 ? second : best;
  }

  void record(int tokens, int threads, double ms) {
    if (candidates_.size() == 1 || tokens <= 0) return;
    double perToken = ms / tokens;
    auto key = std::make_pair(bucket(tokens), threads);
    auto it = ms_.find(key);
    // Quick to believe a faster time, slow to believe a slower one: a decode that was preempted
    // once (the event loop, another process) must not send every later decode to the other count,
    // but a count that stays slow (a busy machine) loses its place within a few dozen decodes.
    if (it == ms_.end()) ms_[key] = perToken;
    else it->second += (perToken < it->second ? std::max(alpha_, 0.5) : alpha_) * (perToken - it->second);
  }

  /** The running average for a kind of decode and count, or -1 when none was measured. */
  double estimate(int tokens, int threads) const {
    auto it = ms_.find({bucket(tokens), threads});
    return it == ms_.end() ? -1 : it->second;
  }

 private:
  std::vector<int> candidates_;
  double alpha_;
  int explore_;
  std::map<std::pair<int, int>, double> ms_;
  std::map<int, int> rounds_;
};
