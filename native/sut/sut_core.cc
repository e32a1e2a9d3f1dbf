#include "sut_core.h"

#include "loadgen.h"

namespace harness_native {

namespace {
void LoadGenComplete(void* /*context*/, mlperf::QuerySampleResponse* responses, size_t count) {
  mlperf::QuerySamplesComplete(responses, count);
}
}  // namespace

SutCore::SutCore(size_t max_batch_size, int64_t max_wait_ns, CompleteFn complete, void* context)
    : batcher_(max_batch_size, max_wait_ns), complete_(complete ? complete : &LoadGenComplete), context_(context) {}

SutCore::~SutCore() { batcher_.Close(); }

void SutCore::IssueQuery(const std::vector<mlperf::QuerySample>& samples) {
  const int64_t now = NowNs();
  std::vector<Query> queries;
  queries.reserve(samples.size());
  for (const auto& s : samples) queries.push_back(Query{s.id, s.index, now});
  issued_.fetch_add(samples.size(), std::memory_order_relaxed);
  if (!batcher_.Put(queries)) CompleteEmpty(queries);  // aborted: answered on arrival, on this thread
}

void SutCore::Send(mlperf::QuerySampleResponse* responses, size_t count) {
  if (count == 0) return;
  complete_(context_, responses, count);
  completed_.fetch_add(count, std::memory_order_relaxed);
}

int64_t SutCore::Complete(const std::vector<Query>& batch, const uint8_t* data, size_t stride_bytes,
                          size_t image_bytes, int64_t* end_ns) {
  std::vector<mlperf::QuerySampleResponse> responses;
  responses.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    responses.emplace_back(batch[i].id, reinterpret_cast<uintptr_t>(data + i * stride_bytes), image_bytes);
  }
  const int64_t start = NowNs();
  Send(responses.data(), responses.size());
  const int64_t end = NowNs();
  if (end_ns != nullptr) *end_ns = end;
  return end - start;
}

void SutCore::CompleteEmpty(const std::vector<Query>& batch) {
  std::vector<mlperf::QuerySampleResponse> responses;
  responses.reserve(batch.size());
  for (const auto& q : batch) responses.emplace_back(q.id, 0, 0);
  Send(responses.data(), responses.size());
}

void SutCore::Abort() { CompleteEmpty(batcher_.Abort()); }

}  // namespace harness_native
