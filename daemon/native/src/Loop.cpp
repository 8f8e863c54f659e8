#include "Loop.h"
#include <algorithm>
#include <chrono>

Loop::Loop(llama_context* ctx, const llama_vocab* vocab, int32_t nBatch, int32_t seqs, LoopThreads threads, std::function<void()> notify)
    : ctx_(ctx), vocab_(vocab), nBatch_(nBatch), notify_(std::move(notify)), stepThreads_(threads.steps), batchThreads_(threads.batches), cache_(seqs) {
  const Api& a = api();
  mem_ = a.llama_get_memory(ctx);
  nCtxSeq_ = (int32_t)a.llama_n_ctx_seq(ctx);
  batch_ = a.llama_batch_init(nBatch, 0, 1);
  thread_ = std::thread([this] { run(); });
}

Loop::~Loop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  api().llama_batch_free(batch_);
}

uint32_t Loop::submit(JobSpec spec) {
  std::lock_guard<std::mutex> lock(mu_);
  auto job = std::make_unique<Job>();
  job->id = nextId_++;
  job->spec = std::move(spec);
  uint32_t id = job->id;
  incoming_.push_back(std::move(job));
  wake_.notify_all();
  return id;
}

void Loop::resume(uint32_t id, std::vector<llama_token> tokens, SamplerPtr grammar) {
  std::lock_guard<std::mutex> lock(mu_);
  resumes_.push_back(Resume{id, std::move(tokens), std::move(grammar)});
  wake_.notify_all();
}

void Loop::cancel(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  cancels_.push_back(id);
  wake_.notify_all();
}

uint32_t Loop::op(OpKind kind, int32_t seq, int32_t from, std::string path) {
  std::lock_guard<std::mutex> lock(mu_);
  uint32_t id = nextId_++;
  ops_.push_back(Op{id, kind, seq, from, std::move(path)});
  wake_.notify_all();
  return id;
}

std::vector<llama_token> Loop::cached(int32_t seq) {
  std::lock_guard<std::mutex> lock(cacheMu_);
  if (seq < 0 || seq >= (int32_t)cache_.size()) return {};
  return cache_[seq];
}

size_t Loop::cacheSize(int32_t seq) {
  std::lock_guard<std::mutex> lock(cacheMu_);
  if (seq < 0 || seq >= (int32_t)cache_.size()) return 0;
  return cache_[seq].size();
}

std::vector<Event> Loop::takeEvents() {
  std::lock_guard<std::mutex> lock(mu_);
  notified_ = false;
  std::vector<Event> out;
  out.swap(events_);
  return out;
}

LoopStats Loop::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

// JS is woken at most this often for tokens of a reply already under way: on a 2-core machine
// each wake-up of the event loop takes a core from a compute thread for a moment, which the other
// waits for at the next barrier. A reply's first token, ends, lockstep tokens and operations go at
// once; a 60 Hz screen needs no more than one batch of text every 16 ms anyway.
static constexpr std::chrono::milliseconds kNotifyEvery{8};

void Loop::emit(Event ev, bool urgent) {
  bool call = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A job's tokens since JS last looked travel in one event.
    if (!events_.empty() && events_.back().id == ev.id && events_.back().end.empty()) {
      Event& prev = events_.back();
      prev.tokens.insert(prev.tokens.end(), ev.tokens.begin(), ev.tokens.end());
      prev.end = ev.end;
      prev.error = ev.error;
    } else {
      events_.push_back(std::move(ev));
    }
    if (!notified_) {
      auto now = std::chrono::steady_clock::now();
      if (urgent || now - lastNotify_ >= kNotifyEvery) {
        call = notified_ = true;
        deferred_ = false;
        lastNotify_ = now;
      } else {
        deferred_ = true;
      }
    }
  }
  if (call) notify_();
}

void Loop::flushDeferred(bool force) {
  bool call = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (deferred_ && !notified_ && (force || now - lastNotify_ >= kNotifyEvery)) {
      call = notified_ = true;
      deferred_ = false;
      lastNotify_ = now;
    }
  }
  if (call) notify_();
}

void Loop::finish(Job& job, const std::string& end, const std::string& error) {
  Event ev;
  ev.id = job.id;
  ev.end = end;
  ev.error = error;
  emit(std::move(ev));
  job.ended = true;  // removed from jobs_ by the loop
}

// Commands are taken between rounds, in the order they came.
void Loop::takeCommands(std::unique_lock<std::mutex>& lock) {
  while (!incoming_.empty()) {
    auto job = std::move(incoming_.front());
    incoming_.pop_front();
    jobs_[job->id] = std::move(job);
  }
  std::vector<uint32_t> cancels;
  cancels.swap(cancels_);
  std::deque<Resume> resumes;
  resumes.swap(resumes_);
  std::deque<Op> ops;
  ops.swap(ops_);
  lock.unlock();
  for (uint32_t id : cancels) {
    auto it = jobs_.find(id);
    if (it != jobs_.end() && !it->second->ended) finish(*it->second, "cancelled");
  }
  for (Resume& r : resumes) {
    auto it = jobs_.find(r.id);
    if (it == jobs_.end() || it->second->ended || !it->second->paused) continue;
    Job& job = *it->second;
    if (r.grammar) job.spec.sampler->setGrammar(std::move(r.grammar));
    if (r.tokens.empty()) r.tokens.push_back(job.last);
    // The sampled token is already in the penalty window; inserted ones join it now.
    if (r.tokens.size() > 1) job.spec.sampler->observe(r.tokens.data() + 1, r.tokens.size() - 1);
    job.spec.tokens = std::move(r.tokens);
    // The prompt's images (offsets into the old tokens) are in the cache; inserted tokens are text.
    job.spec.images.clear();
    job.done = 0;
    job.paused = false;
    if (cacheSize(job.spec.seq) + job.spec.tokens.size() >= (size_t)nCtxSeq_) finish(job, "ctx");
  }
  for (const Op& op : ops) runOp(op);
  dropEnded();
  lock.lock();
}

void Loop::dropEnded() {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (it->second->ended) it = jobs_.erase(it);
    else ++it;
  }
}

void Loop::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    takeCommands(lock);
    if (quit_) break;
    lock.unlock();
    std::vector<Job*> images;
    std::vector<Segment> round = plan(images);
    // An image is one decode of its own (embeddings, not tokens); one a round, so text sessions
    // wait at most one image between their steps.
    if (!images.empty()) decodeImage(*images.front());
    if (!round.empty()) {
      bool stepsOnly = std::all_of(round.begin(), round.end(), [](const Segment& s) {
        return s.count == 1 && s.job->spec.sample && s.job->done + 1 == s.job->spec.tokens.size();
      });
      int carried = (int)std::count_if(round.begin(), round.end(), [](const Segment& s) {
        return s.job->spec.sample && s.job->done + s.count == s.job->spec.tokens.size();
      });
      if (carried > 0) {
        std::lock_guard<std::mutex> statsLock(mu_);
        stats_.steps++;
        stats_.carried += carried;
      }
      if (stepsOnly && costs_.split((int)round.size())) {
        for (const Segment& s : round) decode({s});
      } else {
        decode(round);
      }
    }
    dropEnded();
    flushDeferred(round.empty() && images.empty());
    lock.lock();
    if (round.empty() && images.empty() && incoming_.empty() && ops_.empty() && resumes_.empty() && cancels_.empty() && !quit_) {
      wake_.wait(lock);
    }
  }
  // Whatever is still running ends as cancelled.
  lock.unlock();
  for (auto& [id, job] : jobs_) finish(*job, "cancelled");
  jobs_.clear();
  lock.lock();
}

namespace {
/** The image that starts where the job stands, if any. */
const ImageSpan* imageAt(const JobSpec& spec, size_t done) {
  for (const ImageSpan& im : spec.images)
    if (im.offset == done) return &im;
  return nullptr;
}

/** Text tokens from `done` up to the next image (or the end). */
int32_t textRun(const JobSpec& spec, size_t done) {
  size_t end = spec.tokens.size();
  for (const ImageSpan& im : spec.images)
    if (im.offset >= done && im.offset < end) end = im.offset;
  return (int32_t)(end - done);
}
}  // namespace

// A job standing at an image goes to `images` (evaluated on its own after the round's batch).
std::vector<Loop::Segment> Loop::plan(std::vector<Job*>& images) {
  std::vector<Job*> ready;
  std::vector<PlanItem> items;
  for (auto& [id, job] : jobs_) {
    if (job->ended || job->paused || job->done == job->spec.tokens.size()) continue;
    if (imageAt(job->spec, job->done)) {
      images.push_back(job.get());
      continue;
    }
    ready.push_back(job.get());
    items.push_back({job->spec.seq, textRun(job->spec, job->done)});
  }
  std::vector<Segment> round;
  for (const PlanPick& p : planRound(items, nBatch_)) round.push_back({ready[p.item], p.count});
  return round;
}

void Loop::decode(const std::vector<Segment>& segments) {
  const Api& a = api();
  std::vector<int32_t> logitAt(segments.size(), -1);
  batch_.n_tokens = 0;
  for (size_t s = 0; s < segments.size(); s++) {
    const Segment& seg = segments[s];
    Job& job = *seg.job;
    size_t base = cacheSize(job.spec.seq);
    bool last = job.done + seg.count == job.spec.tokens.size();
    for (int32_t k = 0; k < seg.count; k++) {
      int32_t n = batch_.n_tokens++;
      batch_.token[n] = job.spec.tokens[job.done + k];
      batch_.pos[n] = (llama_pos)(base + k);
      batch_.n_seq_id[n] = 1;
      batch_.seq_id[n][0] = job.spec.seq;
      bool logits = last && job.spec.sample && k == seg.count - 1;
      batch_.logits[n] = logits;
      if (logits) logitAt[s] = n;
    }
  }
  const int32_t size = batch_.n_tokens;
  ThreadChoice& choice = size == 1 ? stepThreads_ : batchThreads_;
  const int threads = choice.pick(size);
  a.llama_set_n_threads(ctx_, threads, threads);
  auto t0 = std::chrono::steady_clock::now();
  int32_t rc;
  try {
    rc = a.llama_decode(ctx_, batch_);
  } catch (const std::exception& e) {
    rc = -100;
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (rc != 0) {
    // Whatever part of the batch reached the cache leaves it, so each sequence holds what its
    // record says.
    std::string why = takeLoggedErrors();
    for (const Segment& seg : segments) {
      a.llama_memory_seq_rm(mem_, seg.job->spec.seq, (llama_pos)cacheSize(seg.job->spec.seq), -1);
      finish(*seg.job, "error", "llama.cpp could not evaluate a batch (code " + std::to_string(rc) + (why.empty() ? "" : ": " + why) + ")");
    }
    return;
  }
  costs_.record(size, ms);
  choice.record(size, threads, ms);
  {
    std::lock_guard<std::mutex> lock(cacheMu_);
    for (const Segment& seg : segments) {
      auto& c = cache_[seg.job->spec.seq];
      const auto& t = seg.job->spec.tokens;
      c.insert(c.end(), t.begin() + seg.job->done, t.begin() + seg.job->done + seg.count);
      seg.job->done += seg.count;
    }
  }
  for (size_t s = 0; s < segments.size(); s++) {
    Job& job = *segments[s].job;
    if (job.done < job.spec.tokens.size()) continue;
    if (!job.spec.sample) {
      finish(job, "done");
      continue;
    }
    afterStep(job, logitAt[s]);
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.decodes++;
  stats_.tokens += size;
  stats_.decodeMs += ms;
  (size == 1 ? stats_.stepThreads : stats_.batchThreads) = threads;
}

void Loop::decodeImage(Job& job) {
  const ImageSpan* im = imageAt(job.spec, job.done);
  const llama_pos nPast = (llama_pos)cacheSize(job.spec.seq);
  llama_pos next = nPast;
  auto t0 = std::chrono::steady_clock::now();
  std::string err;
  try {
    err = evalImageChunk(ctx_, *im->embd, nPast, job.spec.seq, nBatch_, &next);
  } catch (const std::exception& e) {
    err = e.what();
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!err.empty()) {
    api().llama_memory_seq_rm(mem_, job.spec.seq, nPast, -1);
    finish(job, "error", "llama.cpp could not evaluate an image: " + err);
    return;
  }
  const size_t n = (size_t)im->embd->nPos;
  {
    std::lock_guard<std::mutex> lock(cacheMu_);
    auto& c = cache_[job.spec.seq];
    c.insert(c.end(), job.spec.tokens.begin() + job.done, job.spec.tokens.begin() + job.done + n);
  }
  job.done += n;
  std::lock_guard<std::mutex> lock(mu_);
  stats_.decodes++;
  stats_.tokens += im->embd->nTokens;
  stats_.decodeMs += ms;
  stats_.images++;
}

void Loop::afterStep(Job& job, int32_t logitIndex) {
  llama_token token;
  try {
    token = job.spec.sampler->sample(ctx_, logitIndex, job.sampled);
  } catch (const std::exception& e) {
    finish(job, "error", std::string("llama.cpp could not sample a token: ") + e.what());
    return;
  }
  job.sampled++;
  job.last = token;
  Event ev;
  ev.id = job.id;
  ev.tokens.push_back(token);
  if (api().llama_vocab_is_eog(vocab_, token)) ev.end = "eog";
  else if (job.sampled >= job.spec.maxSamples) ev.end = "max";
  else if (cacheSize(job.spec.seq) + 1 >= (size_t)nCtxSeq_) ev.end = "ctx";
  const bool urgent = !ev.end.empty() || job.spec.lockstep || job.sampled == 1;
  if (!ev.end.empty()) job.ended = true;
  else if (job.spec.lockstep) job.paused = true;
  else {
    job.spec.tokens.assign(1, token);
    // The prompt's image offsets meant the old tokens: one at offset 0 (a prompt whose new part
    // starts with an image, e.g. after a wrap) was taken again for the sampled token, reading 16
    // entries past it into the cache record and leaving the job stuck past its end.
    job.spec.images.clear();
    job.done = 0;
  }
  emit(std::move(ev), urgent);
}

void Loop::runOp(const Op& op) {
  const Api& a = api();
  Event ev;
  ev.id = op.id;
  ev.end = "ok";
  if (op.seq < 0 || op.seq >= (int32_t)cache_.size()) {
    ev.end = "error";
    ev.error = "no such sequence";
    emit(std::move(ev));
    return;
  }
  auto clear = [&] {
    a.llama_memory_seq_rm(mem_, op.seq, -1, -1);
    std::lock_guard<std::mutex> lock(cacheMu_);
    cache_[op.seq].clear();
  };
  switch (op.kind) {
    case OpKind::Erase: {
      size_t from = (size_t)std::max(0, op.from);
      if (from >= cacheSize(op.seq)) break;
      // Models that cannot cut a cache tail (recurrent) lose the whole sequence instead.
      if (!a.llama_memory_seq_rm(mem_, op.seq, (llama_pos)from, -1)) clear();
      else {
        std::lock_guard<std::mutex> lock(cacheMu_);
        cache_[op.seq].resize(from);
      }
      break;
    }
    case OpKind::Clear:
      clear();
      break;
    case OpKind::Save: {
      std::vector<llama_token> tokens = cached(op.seq);
      size_t bytes = a.llama_state_seq_save_file(ctx_, op.path.c_str(), op.seq, tokens.data(), tokens.size());
      if (bytes == 0) {
        ev.end = "error";
        ev.error = "llama.cpp could not write the state file";
      }
      ev.value = (double)bytes;
      break;
    }
    case OpKind::Load: {
      clear();
      std::vector<llama_token> tokens(nCtxSeq_);
      size_t count = 0;
      size_t bytes = 0;
      try {
        bytes = a.llama_state_seq_load_file(ctx_, op.path.c_str(), op.seq, tokens.data(), tokens.size(), &count);
      } catch (const std::exception& e) {
        bytes = 0;
      }
      if (bytes == 0 || count > tokens.size() || (llama_pos)count != a.llama_memory_seq_pos_max(mem_, op.seq) + 1) {
        clear();
        ev.end = "error";
        ev.error = "the state file does not fit this context";
        break;
      }
      tokens.resize(count);
      {
        std::lock_guard<std::mutex> lock(cacheMu_);
        cache_[op.seq] = tokens;
      }
      ev.tokens = std::move(tokens);
      ev.value = (double)bytes;
      break;
    }
  }
  emit(std::move(ev));
}
