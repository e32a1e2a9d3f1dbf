// The native SUT without a LoadGen test: IssueQuery from several threads while workers pull and complete,
// abort with queries queued and in a worker's hands, close with queries in flight. Responses go to a
// recorder instead of mlperf::QuerySamplesComplete; every query must be answered exactly once.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "../sut_core.h"
#include "check.h"

using harness_native::Query;
using harness_native::SutCore;

namespace {

struct Recorder {
  std::mutex mu;
  std::map<uintptr_t, int> answers;          // id -> times answered
  std::map<uintptr_t, uintptr_t> data;       // id -> response data pointer
  std::map<uintptr_t, size_t> size;          // id -> response size

  static void Complete(void* self, mlperf::QuerySampleResponse* r, size_t n) {
    auto* rec = static_cast<Recorder*>(self);
    std::lock_guard<std::mutex> lock(rec->mu);
    for (size_t i = 0; i < n; ++i) {
      ++rec->answers[r[i].id];
      rec->data[r[i].id] = r[i].data;
      rec->size[r[i].id] = r[i].size;
    }
  }
  bool EachOnce(uintptr_t first, uintptr_t count) {
    std::lock_guard<std::mutex> lock(mu);
    if (answers.size() != count) return false;
    for (uintptr_t id = first; id < first + count; ++id) {
      auto it = answers.find(id);
      if (it == answers.end() || it->second != 1) return false;
    }
    return true;
  }
};

std::vector<mlperf::QuerySample> Samples(uintptr_t first_id, size_t count) {
  std::vector<mlperf::QuerySample> out;
  for (size_t i = 0; i < count; ++i) out.push_back(mlperf::QuerySample{first_id + i, (first_id + i) % 97});
  return out;
}

// Three issue threads, two workers completing with images: each query answered once, with a pointer to
// its own image in the batch's buffer and the image's size.
void IssueWhileWorkersComplete() {
  Recorder rec;
  SutCore core(5, 0, &Recorder::Complete, &rec);
  constexpr size_t kThreads = 3, kPerThread = 3000, kImageBytes = 12;
  std::vector<std::thread> workers;
  std::atomic<bool> wrong_pointer{false};
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&] {
      std::vector<Query> batch;
      while (core.NextBatch(&batch)) {
        std::vector<uint8_t> images(batch.size() * kImageBytes);
        int64_t end_ns = 0;
        const int64_t took = core.Complete(batch, images.data(), kImageBytes, kImageBytes, &end_ns);
        if (took < 0 || end_ns <= 0) wrong_pointer = true;
        std::lock_guard<std::mutex> lock(rec.mu);
        for (size_t i = 0; i < batch.size(); ++i) {
          if (rec.data[batch[i].id] != reinterpret_cast<uintptr_t>(images.data() + i * kImageBytes)) {
            wrong_pointer = true;
          }
          if (rec.size[batch[i].id] != kImageBytes) wrong_pointer = true;
        }
      }
    });
  }
  std::vector<std::thread> issuers;
  for (size_t t = 0; t < kThreads; ++t) {
    issuers.emplace_back([&core, t] {
      for (size_t i = 0; i < kPerThread; i += 10) core.IssueQuery(Samples(1 + t * kPerThread + i, 10));
    });
  }
  for (auto& t : issuers) t.join();
  core.Close();
  for (auto& t : workers) t.join();
  CHECK(!wrong_pointer);
  CHECK(rec.EachOnce(1, kThreads * kPerThread));
  CHECK(core.issued() == kThreads * kPerThread);
  CHECK(core.completed() == kThreads * kPerThread);
}

// Abort with queries in flight: queued ones are answered by Abort, the batch a worker holds by the
// worker, later ones on arrival (on the issuing thread), and none twice.
void AbortAnswersQueuedInHandAndLater() {
  Recorder rec;
  SutCore core(2, 0, &Recorder::Complete, &rec);
  core.IssueQuery(Samples(1, 6));
  std::vector<Query> in_hand;
  CHECK(core.NextBatch(&in_hand));
  CHECK(in_hand.size() == 2);
  core.Abort();
  CHECK(core.completed() == 4);
  CHECK(core.pending() == 0);
  core.IssueQuery(Samples(7, 3));  // after the abort: answered before IssueQuery returns
  CHECK(core.completed() == 7);
  core.CompleteEmpty(in_hand);
  CHECK(rec.EachOnce(1, 9));
  std::lock_guard<std::mutex> lock(rec.mu);
  bool all_empty = true;
  for (const auto& [id, size] : rec.size) all_empty = all_empty && size == 0 && rec.data[id] == 0;
  CHECK(all_empty);
}

// Abort racing the issue threads: whatever the interleaving, every query is answered exactly once.
void AbortRacingIssueThreads() {
  Recorder rec;
  SutCore core(4, 1'000'000, &Recorder::Complete, &rec);
  constexpr size_t kThreads = 3, kPerThread = 4000;
  std::thread worker([&] {
    std::vector<Query> batch;
    while (core.NextBatch(&batch)) {
      if (core.Aborted()) {
        core.CompleteEmpty(batch);
      } else {
        std::vector<uint8_t> images(batch.size());
        core.Complete(batch, images.data(), 1, 1, nullptr);
      }
    }
  });
  std::vector<std::thread> issuers;
  for (size_t t = 0; t < kThreads; ++t) {
    issuers.emplace_back([&core, t] {
      for (size_t i = 0; i < kPerThread; i += 4) core.IssueQuery(Samples(1 + t * kPerThread + i, 4));
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  core.Abort();
  for (auto& t : issuers) t.join();
  core.Close();
  worker.join();
  CHECK(rec.EachOnce(1, kThreads * kPerThread));
  CHECK(core.completed() == core.issued());
}

// Shutdown with queries in flight: Close while workers are mid-batch and queries still queue; the workers
// take what is left, answer it and end; nothing is lost or answered twice.
void CloseWithQueriesInFlight() {
  Recorder rec;
  SutCore core(3, 50'000'000, &Recorder::Complete, &rec);  // Server-like: 50 ms max wait
  core.IssueQuery(Samples(1, 10));
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&] {
      std::vector<Query> batch;
      while (core.NextBatch(&batch)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a batch "running"
        core.CompleteEmpty(batch);
      }
    });
  }
  core.IssueQuery(Samples(11, 1));
  core.Close();
  for (auto& t : workers) t.join();
  CHECK(rec.EachOnce(1, 11));
}

}  // namespace

int main() {
  RUN(IssueWhileWorkersComplete);
  RUN(AbortAnswersQueuedInHandAndLater);
  RUN(AbortRacingIssueThreads);
  RUN(CloseWithQueriesInFlight);
  return CheckFailures() == 0 ? 0 : 1;
}
