// What one batch carries (a pure policy, unit-tested through the addon): reply steps (one token
// left) first, then prompt tokens and inserted results, the room shared among them (each gets an
// equal share first, so a short prompt that arrives behind a 20,000-token one is not held up until
// that one is done; what is left goes in arrival order); then in sequence-id order, because with one KV stream per sequence llama.cpp cuts a batch wherever the
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
  std::vector<int32_t> taken(items.size(), 0);
  // Reply steps first: one token each.
  for (size_t i = 0; i < items.size() && room > 0; i++) {
    if (items[i].left != 1) continue;
    taken[i] = 1;
    room--;
  }
  // Prompts: an equal share each (at least 16 tokens), then the rest in arrival order.
  size_t prompts = 0;
  for (const PlanItem& it : items) prompts += it.left > 1 ? 1 : 0;
  if (prompts > 0 && room > 0) {
    int32_t share = std::max<int32_t>(16, room / (int32_t)prompts);
    for (size_t i = 0; i < items.size() && room > 0; i++) {
      if (items[i].left <= 1) continue;
      int32_t count = std::min({items[i].left, share, room});
      taken[i] = count;
      room -= count;
    }
    for (size_t i = 0; i < items.size() && room > 0; i++) {
      if (items[i].left <= 1) continue;
      int32_t more = std::min(items[i].left - taken[i], room);
      taken[i] += more;
      room -= more;
    }
  }
  for (size_t i = 0; i < items.size(); i++)
    if (taken[i] > 0) round.push_back({i, taken[i]});
  std::stable_sort(round.begin(), round.end(), [&](const PlanPick& a, const PlanPick& b) { return items[a.item].seq < items[b.item].seq; });
  return round;
}
