#include "batcher.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace harness_native {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Batcher::Batcher(size_t max_batch_size, int64_t max_wait_ns)
    : max_batch_size_(max_batch_size), max_wait_ns_(max_wait_ns) {
  if (max_batch_size < 1) throw std::invalid_argument("max_batch_size must be >= 1");
  if (max_wait_ns < 0) throw std::invalid_argument("max_wait_ns must be >= 0");
}

bool Batcher::Put(const std::vector<Query>& queries) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted_) return false;
    pending_.insert(pending_.end(), queries.begin(), queries.end());
  }
  cv_.notify_all();
  return true;
}

void Batcher::Requeue(const std::vector<Query>& queries) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.insert(pending_.begin(), queries.begin(), queries.end());
  }
  cv_.notify_all();
}

void Batcher::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

std::vector<Query> Batcher::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Query> items(pending_.begin(), pending_.end());
  pending_.clear();
  return items;
}

std::vector<Query> Batcher::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  std::vector<Query> items(pending_.begin(), pending_.end());
  pending_.clear();
  return items;
}

size_t Batcher::Size() {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

bool Batcher::Aborted() {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_;
}

bool Batcher::NextBatch(std::vector<Query>* out) {
  const size_t limit = max_batch_size_;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    while (pending_.empty()) {
      if (closed_) return false;
      cv_.wait(lock);
    }
    if (max_wait_ns_ > 0) {
      // The oldest waiting query sets the deadline (as in batcher.py), on the clock of its timestamp.
      const auto deadline =
          std::chrono::steady_clock::time_point(std::chrono::nanoseconds(pending_.front().enqueued_ns + max_wait_ns_));
      while (!pending_.empty() && pending_.size() < limit && !closed_) {
        if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) break;
      }
    }
    if (!pending_.empty()) {  // else another worker took them while we waited: start over
      const size_t n = std::min(limit, pending_.size());
      out->assign(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
      return true;
    }
  }
}

}  // namespace harness_native
