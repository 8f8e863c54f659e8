// The scheduler loop, on its own thread, the only one that touches the llama_context (llama-server's
// slot loop in small): each round is one llama_decode of every generating sequence's next token plus
// prompt chunks filling the batch, in sequence-id order, then a sample per finished reply step, on
// the same thread. Results go to JS in batches through `notify`; JS only queues commands.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include "DecodeCosts.h"
#include "Plan.h"
#include "ThreadChoice.h"
#include "Mtmd.h"
#include "Sampler.h"

/** What the loop tells JS: a job's new tokens and/or its end, or a finished KV operation. */
struct Event {
  uint32_t id = 0;
  std::vector<llama_token> tokens;
  /** "" while a reply goes on; else done|eog|max|ctx|cancelled|error (jobs), ok|error (operations). */
  std::string end;
  std::string error;
  double value = 0;
};

/** An encoded image inside a job's tokens: `nPos` placeholder entries from `offset` stand for it. */
struct ImageSpan {
  size_t offset = 0;
  std::shared_ptr<const ImageEmbedding> embd;
};

struct JobSpec {
  int32_t seq = 0;
  std::vector<llama_token> tokens;
  /** Images among the tokens, in order; each is evaluated as its own llama_decode. */
  std::vector<ImageSpan> images;
  bool sample = false;
  /** Pause after every sampled token until resume() (function calls and tool grammars decide in JS). */
  bool lockstep = false;
  int32_t maxSamples = 0;
  std::unique_ptr<Sampler> sampler;
};

enum class OpKind { Erase, Clear, Save, Load };

struct LoopStats {
  uint64_t rounds = 0, steps = 0, carried = 0, decodes = 0, tokens = 0, images = 0;
  double decodeMs = 0;
  /** Threads the last one-token decode and the last batch ran on. */
  int stepThreads = 0, batchThreads = 0;
};

/** Thread counts to choose from: one count each when the user fixed them. */
struct LoopThreads {
  std::vector<int> steps;
  std::vector<int> batches;
};

class Loop {
 public:
  Loop(llama_context* ctx, const llama_vocab* vocab, int32_t nBatch, int32_t seqs, LoopThreads threads, std::function<void()> notify);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uint32_t submit(JobSpec spec);
  /** Continues a paused lockstep job with `tokens` (empty: its last token), maybe under a grammar. */
  void resume(uint32_t id, std::vector<llama_token> tokens, SamplerPtr grammar);
  void cancel(uint32_t id);
  uint32_t op(OpKind kind, int32_t seq, int32_t from, std::string path);
  /** The tokens the sequence's cache holds now (any thread). */
  std::vector<llama_token> cached(int32_t seq);
  /** How many tokens the sequence's cache holds now (any thread; 0 for no such sequence). */
  size_t cacheSize(int32_t seq);
  /** How many tokens the sequence's cache holds now (any thread; 0 for no such sequence). */
  std::vector<Event> takeEvents();
  LoopStats stats();
  int32_t nCtxSeq() const { return nCtxSeq_; }

 private:
  struct Job {
    uint32_t id;
    JobSpec spec;
    size_t done = 0;
    int32_t sampled = 0;
    llama_token last = -1;
    bool paused = false;
    bool ended = false;
  };
  struct Op {
    uint32_t id;
    OpKind kind;
    int32_t seq;
    int32_t from;
    std::string path;
  };
  struct Resume {
    uint32_t id;
    std::vector<llama_token> tokens;
    SamplerPtr grammar;
  };
  struct Segment {
    Job* job;
    int32_t count;
  };

  void run();
  void takeCommands(std::unique_lock<std::mutex>& lock);
  /** Forgets the jobs that ended (their last event is out). */
  void dropEnded();
  std::vector<Segment> plan(std::vector<Job*>& images);
  void decodeImage(Job& job);
  void decode(const std::vector<Segment>& segments);
  void afterStep(Job& job, int32_t logitIndex);
  void runOp(const Op& op);
  void finish(Job& job, const std::string& end, const std::string& error = "");
  /** `urgent`: JS must see it at once (a reply's first token, an end, lockstep, an operation). */
  void emit(Event ev, bool urgent = true);
  /** Wakes JS for tokens held back by emit (forced when the loop is about to sleep). */
  void flushDeferred(bool force);

  llama_context* ctx_;
  const llama_vocab* vocab_;
  llama_memory_t mem_;
  int32_t nBatch_;
  int32_t nCtxSeq_;
  std::function<void()> notify_;
  llama_batch batch_;
  DecodeCosts costs_;
  ThreadChoice stepThreads_;
  ThreadChoice batchThreads_;

  std::mutex mu_;  // commands, events, stats
  std::condition_variable wake_;
  bool quit_ = false;
  uint32_t nextId_ = 1;
  std::deque<std::unique_ptr<Job>> incoming_;
  std::deque<Op> ops_;
  std::deque<Resume> resumes_;
  std::vector<uint32_t> cancels_;
  std::vector<Event> events_;
  bool notified_ = false;
  /** Events wait for a later wake-up (each wake of the event loop takes CPU from the decode). */
  bool deferred_ = false;
  std::chrono::steady_clock::time_point lastNotify_{};
  LoopStats stats_;

  std::mutex cacheMu_;
  std::vector<std::vector<llama_token>> cache_;

  // Loop thread only.
  std::map<uint32_t, std::unique_ptr<Job>> jobs_;
  std::thread thread_;
};
