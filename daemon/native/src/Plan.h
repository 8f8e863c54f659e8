// What one batch carries (a pure policy, unit-tested through the addon): reply steps (one token
// left) first, then prompt tokens and inserted results in arrival order, as many as fit; then in
// sequence-id order, because with one KV stream per sequence llama.cpp cuts a batch wherever the
// next token's sequence id is not ascending (arrival order cut a 15-session step into 2–3-token
// micro-batches, each reading every weight again: 112 ms instead of 36).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

struct PlanItem {
  int32_t seq;
  /** Tokens it still has to evaluate; 1 for a reply step. */
  int32_t left;
};

struct PlanPick {
  /** Index into the items (which are in arrival order). */
  size_t item;
  int32_t count;
};

inline std::vector<PlanPick> planRound(const std::vector<PlanItem>& items, int32_t size) {
  std::vector<PlanPick> round;
  int32_t room = size;
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < items.size() && room > 0; i++) {
      if (items[i].left <= 0 || (pass == 0) != (items[i].left == 1)) continue;
      int32_t count = std::min(items[i].left, room);
      round.push_back({i, count});
      room -= count;
    }
  }
  std::stable_sort(round.begin(), round.end(), [&](const PlanPick& a, const PlanPick& b) { return items[a.item].seq < items[b.item].seq; });
  return round;
}
