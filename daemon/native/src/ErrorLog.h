// The error lines a library logged, kept (bounded) for error messages: llama.cpp and mtmd log every
// load step; only errors are kept, and a caller takes them after a call that failed.
#pragma once
#include <mutex>
#include <string>

class ErrorLog {
 public:
  void add(const char* text) {
    if (text == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (text_.size() > 4096) text_.erase(0, text_.size() - 2048);
    text_ += text;
  }

  /** Everything logged since the last take, trailing newlines trimmed; clears it. */
  std::string take() {
    std::string out;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out.swap(text_);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return out;
  }

 private:
  std::mutex mu_;
  std::string text_;
};
