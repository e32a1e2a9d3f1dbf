// The C++ twin of harness/sut/batcher.py: a thread-safe FIFO of queries that workers pull batches from.
//
// Same semantics as the Python batcher (the parity tests run both): arrival order is kept, a batch never
// exceeds max_batch_size, and with max_wait_ns > 0 (Server) the OLDEST waiting query waits at most
// max_wait_ns for its batch to fill. `requeue` puts a failed batch back at the head, `close` wakes every
// waiting worker (they get what is left, then nothing), `drain` empties the queue.
//
// One addition the Python side does with a flag and a lock of its own: `abort` drains the queue and
// makes every later `put` refuse its queries (the caller answers them at once), atomically, so no query
// can slip in between the drain and the refusal.
#ifndef HARNESS_NATIVE_SUT_BATCHER_H_
#define HARNESS_NATIVE_SUT_BATCHER_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

namespace harness_native {

// Nanoseconds on the monotonic clock: std::chrono::steady_clock is CLOCK_MONOTONIC on Linux, the clock of
// Python's time.perf_counter_ns(), so the Python side can subtract its own timestamps from these.
int64_t NowNs();

struct Query {
  uintptr_t id;           // LoadGen's ResponseId; opaque to everything but the SUT
  size_t sample_index;    // the QSL index
  int64_t enqueued_ns;    // NowNs() when IssueQuery received it
};

class Batcher {
 public:
  Batcher(size_t max_batch_size, int64_t max_wait_ns);

  // Appends to the tail. Returns false (and queues nothing) once aborted: the caller answers them.
  bool Put(const std::vector<Query>& queries);
  // Puts queries back at the head, in their order (a failed batch sent to another worker).
  void Requeue(const std::vector<Query>& queries);
  void Close();
  std::vector<Query> Drain();
  // Drain, and refuse every later Put: one step under the lock.
  std::vector<Query> Abort();
  size_t Size();
  bool Aborted();

  // Blocks until a batch is ready (filled, max wait passed, or closed) and moves it into *out.
  // Returns false once closed and empty.
  bool NextBatch(std::vector<Query>* out);

  size_t max_batch_size() const { return max_batch_size_; }
  int64_t max_wait_ns() const { return max_wait_ns_; }

 private:
  const size_t max_batch_size_;
  const int64_t max_wait_ns_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Query> pending_;
  bool closed_ = false;
  bool aborted_ = false;
};

}  // namespace harness_native

#endif  // HARNESS_NATIVE_SUT_BATCHER_H_
