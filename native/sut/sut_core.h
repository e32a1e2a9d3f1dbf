// The native system under test: a mlperf::SystemUnderTest whose IssueQuery only timestamps and enqueues,
// in C++, without the GIL. Python worker threads pull batches (module.cc releases the GIL while they wait)
// and hand images back through Complete, which calls mlperf::QuerySamplesComplete from C++.
//
// Nothing here calls into Python: LoadGen's issue thread never waits for the interpreter, whatever the
// worker threads do with it (issue 18: the Python SUT's issue_queries ran under the GIL).
#ifndef HARNESS_NATIVE_SUT_SUT_CORE_H_
#define HARNESS_NATIVE_SUT_SUT_CORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "batcher.h"
#include "query_sample.h"
#include "system_under_test.h"

namespace harness_native {

// How responses reach LoadGen: mlperf::QuerySamplesComplete in the module; a recorder in the C++ tests,
// which run without a LoadGen test in progress (LoadGen's response ids are pointers into its own state).
using CompleteFn = void (*)(void* context, mlperf::QuerySampleResponse* responses, size_t count);

class SutCore : public mlperf::SystemUnderTest {
 public:
  // complete == nullptr: mlperf::QuerySamplesComplete.
  SutCore(size_t max_batch_size, int64_t max_wait_ns, CompleteFn complete = nullptr, void* context = nullptr);
  ~SutCore() override;

  // mlperf::SystemUnderTest, called on LoadGen's threads.
  const std::string& Name() override { return name_; }
  void IssueQuery(const std::vector<mlperf::QuerySample>& samples) override;
  void FlushQueries() override {}  // nothing is held back: the batcher's max wait bounds every stay

  // Worker side. NextBatch blocks (call it without the GIL); false once closed and empty.
  bool NextBatch(std::vector<Query>* out) { return batcher_.NextBatch(out); }
  void Requeue(const std::vector<Query>& batch) { batcher_.Requeue(batch); }
  // One response per query: `data + i * stride_bytes`, `image_bytes` long, in batch order. The caller
  // keeps the buffer alive until this returns (LoadGen copies what it logs inside the call).
  // Returns the wall time of QuerySamplesComplete in ns; *end_ns is when it returned.
  int64_t Complete(const std::vector<Query>& batch, const uint8_t* data, size_t stride_bytes, size_t image_bytes,
                   int64_t* end_ns);
  void CompleteEmpty(const std::vector<Query>& batch);
  // Answer every queued query now, and every later one on arrival, with an empty response.
  void Abort();
  void Close() { batcher_.Close(); }
  bool Aborted() { return batcher_.Aborted(); }

  uint64_t issued() const { return issued_.load(std::memory_order_relaxed); }
  uint64_t completed() const { return completed_.load(std::memory_order_relaxed); }
  size_t pending() { return batcher_.Size(); }
  Batcher& batcher() { return batcher_; }

 private:
  void Send(mlperf::QuerySampleResponse* responses, size_t count);

  const std::string name_ = "harness-native-sut";
  Batcher batcher_;
  CompleteFn complete_;
  void* context_;
  std::atomic<uint64_t> issued_{0};
  std::atomic<uint64_t> completed_{0};
};

}  // namespace harness_native

#endif  // HARNESS_NATIVE_SUT_SUT_CORE_H_
