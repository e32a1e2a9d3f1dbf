// The native batcher: ordering under concurrent producers and consumers, the max-wait timing, requeue,
// close, drain and abort. The same rules as tests/test_batcher.py checks on the Python batcher.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "../batcher.h"
#include "check.h"

using harness_native::Batcher;
using harness_native::NowNs;
using harness_native::Query;

namespace {

std::vector<Query> Make(size_t first, size_t count, uintptr_t producer = 0) {
  std::vector<Query> out;
  for (size_t i = first; i < first + count; ++i) out.push_back(Query{producer, i, NowNs()});
  return out;
}

std::vector<size_t> Indices(const std::vector<Query>& qs) {
  std::vector<size_t> out;
  for (const auto& q : qs) out.push_back(q.sample_index);
  return out;
}

void SingleThreadKeepsArrivalOrderAndTheLimit() {
  Batcher b(3, 0);
  CHECK(b.Put(Make(0, 4)));
  CHECK(b.Put(Make(4, 3)));
  b.Close();
  std::vector<Query> batch;
  std::vector<size_t> got, sizes;
  while (b.NextBatch(&batch)) {
    sizes.push_back(batch.size());
    for (auto i : Indices(batch)) got.push_back(i);
  }
  CHECK((got == std::vector<size_t>{0, 1, 2, 3, 4, 5, 6}));
  CHECK((sizes == std::vector<size_t>{3, 3, 1}));  // batches fill across Put calls; only the last is short
}

// Four producers put numbered queries while consumers pull: every query comes out exactly once, no batch
// is over the limit, and the queue is FIFO: within a batch each producer's queries are consecutive and in
// order, and with one consumer each producer's queries come out in the order it put them.
void ConcurrentProducers(int consumers_count) {
  constexpr int kProducers = 4;
  constexpr size_t kPerProducer = 5000, kLimit = 7;
  Batcher b(kLimit, 0);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&b, p] {
      for (size_t i = 0; i < kPerProducer;) {
        const size_t n = std::min<size_t>(1 + (i % 5), kPerProducer - i);
        b.Put(Make(i, n, static_cast<uintptr_t>(p)));
        i += n;
      }
    });
  }
  std::mutex mu;
  std::vector<std::vector<Query>> batches;  // in pull order when there is one consumer
  std::atomic<bool> bad_size{false}, non_consecutive{false};
  std::vector<std::thread> consumers;
  for (int c = 0; c < consumers_count; ++c) {
    consumers.emplace_back([&] {
      std::vector<Query> batch;
      while (b.NextBatch(&batch)) {
        if (batch.size() > kLimit || batch.empty()) bad_size = true;
        std::map<uintptr_t, size_t> last;
        for (const auto& q : batch) {
          auto it = last.find(q.id);
          if (it != last.end() && q.sample_index != it->second + 1) non_consecutive = true;
          last[q.id] = q.sample_index;
        }
        std::lock_guard<std::mutex> lock(mu);
        batches.push_back(batch);
      }
    });
  }
  for (auto& t : producers) t.join();
  b.Close();
  for (auto& t : consumers) t.join();
  CHECK(!bad_size);
  CHECK(!non_consecutive);
  std::map<uintptr_t, std::vector<size_t>> seen;
  for (const auto& batch : batches) {
    for (const auto& q : batch) seen[q.id].push_back(q.sample_index);
  }
  CHECK(seen.size() == kProducers);
  for (auto& [producer, indices] : seen) {
    if (consumers_count > 1) std::sort(indices.begin(), indices.end());  // pull order is not recorded
    bool exact = indices.size() == kPerProducer;
    for (size_t i = 0; exact && i < indices.size(); ++i) exact = indices[i] == i;
    CHECK(exact);
  }
}

void ConcurrentProducersOneConsumerKeepEachProducersOrder() { ConcurrentProducers(1); }
void ConcurrentProducersThreeConsumersHandOutEachQueryOnce() { ConcurrentProducers(3); }

// The oldest waiting query sets the deadline: a query 60 ms younger does not restart the 100 ms clock, so
// the batch comes out 100 ms after the oldest query's enqueue (160 ms if the younger one set it).
void MaxWaitIsMeasuredFromTheOldestQuery() {
  constexpr int64_t kWaitNs = 100'000'000;
  Batcher b(4, kWaitNs);
  const auto oldest = Make(0, 1);
  CHECK(b.Put(oldest));
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  CHECK(b.Put(Make(1, 1)));
  std::vector<Query> batch;
  CHECK(b.NextBatch(&batch));
  const int64_t waited = NowNs() - oldest[0].enqueued_ns;
  CHECK(batch.size() == 2);
  CHECK(waited >= kWaitNs);
  CHECK(waited < kWaitNs + 50'000'000);  // 50 ms of slack for a loaded 2-core machine

  CHECK(b.Put(Make(10, 4)));  // full: no wait
  const int64_t start = NowNs();
  CHECK(b.NextBatch(&batch));
  CHECK(batch.size() == 4);
  CHECK(NowNs() - start < 20'000'000);
}

// A consumer waiting on a part-filled batch takes it as soon as producers fill it.
void AFilledBatchEndsTheWait() {
  Batcher b(3, 5'000'000'000);  // 5 s: far longer than the test
  CHECK(b.Put(Make(0, 1)));
  std::thread producer([&b] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    b.Put(Make(1, 2));
  });
  const int64_t start = NowNs();
  std::vector<Query> batch;
  CHECK(b.NextBatch(&batch));
  producer.join();
  CHECK((Indices(batch) == std::vector<size_t>{0, 1, 2}));
  CHECK(NowNs() - start < 1'000'000'000);
}

void RequeuePutsABatchBackAtTheHead() {
  Batcher b(2, 0);
  CHECK(b.Put(Make(0, 5)));
  std::vector<Query> first;
  CHECK(b.NextBatch(&first));
  b.Requeue(first);
  b.Close();
  std::vector<Query> batch;
  std::vector<size_t> got;
  while (b.NextBatch(&batch)) {
    for (auto i : Indices(batch)) got.push_back(i);
  }
  CHECK((got == std::vector<size_t>{0, 1, 2, 3, 4}));
}

void CloseWakesWaitingWorkersAndDrainEmpties() {
  Batcher b(4, 0);
  std::atomic<int> ended{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < 3; ++i) {
    workers.emplace_back([&] {
      std::vector<Query> batch;
      while (b.NextBatch(&batch)) {
      }
      ++ended;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  b.Close();
  for (auto& t : workers) t.join();
  CHECK(ended == 3);

  Batcher d(4, 0);
  CHECK(d.Put(Make(0, 6)));
  CHECK(Indices(d.Drain()).size() == 6);
  CHECK(d.Size() == 0);
  CHECK(d.Put(Make(6, 1)));  // a drain is not an abort
}

// Shutdown with queries in flight: a worker waiting out a long max-wait on a part-filled batch gets it at
// once on close, and every query is handed out exactly once before the workers end.
void CloseHandsOutWhatIsLeft() {
  Batcher b(8, 10'000'000'000);  // 10 s
  CHECK(b.Put(Make(0, 3)));
  std::vector<size_t> got;
  std::thread worker([&] {
    std::vector<Query> batch;
    while (b.NextBatch(&batch)) {
      for (auto i : Indices(batch)) got.push_back(i);
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const int64_t start = NowNs();
  b.Close();
  worker.join();
  CHECK(NowNs() - start < 1'000'000'000);
  CHECK((got == std::vector<size_t>{0, 1, 2}));
}

void AbortDrainsAndRefusesLaterQueries() {
  Batcher b(4, 0);
  CHECK(b.Put(Make(0, 3)));
  CHECK(Indices(b.Abort()).size() == 3);
  CHECK(b.Aborted());
  CHECK(!b.Put(Make(3, 2)));
  CHECK(b.Size() == 0);
}

}  // namespace

int main() {
  RUN(SingleThreadKeepsArrivalOrderAndTheLimit);
  RUN(ConcurrentProducersOneConsumerKeepEachProducersOrder);
  RUN(ConcurrentProducersThreeConsumersHandOutEachQueryOnce);
  RUN(MaxWaitIsMeasuredFromTheOldestQuery);
  RUN(AFilledBatchEndsTheWait);
  RUN(RequeuePutsABatchBackAtTheHead);
  RUN(CloseWakesWaitingWorkersAndDrainEmpties);
  RUN(CloseHandsOutWhatIsLeft);
  RUN(AbortDrainsAndRefusesLaterQueries);
  return CheckFailures() == 0 ? 0 : 1;
}
