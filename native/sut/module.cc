// harness_native._sut_core: the Python face of SutCore (harness/sut/native_sut.py drives it).
//
// Bound with pybind11 rather than nanobind because LoadGen's own module (bindings/python_api.cc) is
// pybind11: the harness builds both from one CMake project against the same pybind11 and Python, needs no
// second binding library, and a handle from here goes straight into lg.StartTestWithLogSettings, which
// casts the integer back to mlperf::SystemUnderTest*.
//
// GIL rules: IssueQuery never takes it (LoadGen's thread never enters Python); next_batch, complete,
// complete_empty and abort release it for everything that waits or calls LoadGen.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "batcher.h"
#include "sut_core.h"

namespace py = pybind11;

namespace harness_native {
namespace {

// A batch a worker pulled: the queries in arrival order. Python reads its sample indices and enqueue
// times; the LoadGen ids stay here (they are pointers into LoadGen's state).
struct Batch {
  std::vector<Query> queries;
  bool answered = false;  // completed or requeued: a second answer would hand LoadGen a stale id
};

// Marks the batch answered; a second answer is a bug in the caller, refused before LoadGen sees it.
void Claim(Batch& b) {
  if (b.answered) throw std::logic_error("this batch was already completed or requeued");
  b.answered = true;
}

py::list Indices(const Batch& b) {
  py::list out(b.queries.size());
  for (size_t i = 0; i < b.queries.size(); ++i) out[i] = py::int_(b.queries[i].sample_index);
  return out;
}

py::list EnqueuedNs(const Batch& b) {
  py::list out(b.queries.size());
  for (size_t i = 0; i < b.queries.size(); ++i) out[i] = py::int_(b.queries[i].enqueued_ns);
  return out;
}

py::list Ids(const Batch& b) {
  py::list out(b.queries.size());
  for (size_t i = 0; i < b.queries.size(); ++i) out[i] = py::int_(static_cast<uint64_t>(b.queries[i].id));
  return out;
}

py::object NextBatch(SutCore& core) {
  auto batch = std::make_unique<Batch>();
  bool got;
  {
    py::gil_scoped_release release;
    got = core.NextBatch(&batch->queries);
  }
  if (!got) return py::none();
  return py::cast(std::move(batch));
}

// Returns (QuerySamplesComplete's wall time in ns, [(sample index, latency ns)] in batch order).
py::tuple Complete(SutCore& core, Batch& batch, const py::array& images) {
  if (!py::isinstance<py::array_t<uint8_t>>(images)) {  // an equal dtype, not necessarily the same object
    throw py::value_error("images must be uint8 (NHWC), got dtype " + std::string(py::str(images.dtype())));
  }
  // A C-contiguous view (a copy only if the array was not), referenced until this function returns.
  auto arr = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(images);
  if (!arr || arr.ndim() < 1) throw py::value_error("images must be an array with a batch dimension");
  const size_t n = batch.queries.size();
  if (static_cast<size_t>(arr.shape(0)) != n) {
    throw py::value_error("returned " + std::to_string(arr.shape(0)) + " images for a batch of " + std::to_string(n));
  }
  Claim(batch);
  const size_t image_bytes = n ? static_cast<size_t>(arr.nbytes()) / n : 0;
  const uint8_t* data = arr.data();
  int64_t end_ns = 0;
  int64_t handback_ns;
  {
    py::gil_scoped_release release;
    handback_ns = core.Complete(batch.queries, data, image_bytes, image_bytes, &end_ns);
  }
  // Each sample's latency as the SUT sees it: IssueQuery to QuerySamplesComplete's return.
  py::list latencies(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& q = batch.queries[i];
    latencies[i] = py::make_tuple(q.sample_index, end_ns - q.enqueued_ns);
  }
  return py::make_tuple(handback_ns, latencies);
}

}  // namespace
}  // namespace harness_native

PYBIND11_MODULE(_sut_core, m) {
  using harness_native::Batch;
  using harness_native::SutCore;
  m.doc() = "The native system under test: LoadGen's IssueQuery enqueues in C++; Python workers pull batches.";

  py::class_<Batch>(m, "Batch")
      .def("__len__", [](const Batch& b) { return b.queries.size(); })
      .def_property_readonly("indices", &harness_native::Indices, "sample indices, in arrival order")
      .def_property_readonly("enqueued_ns", &harness_native::EnqueuedNs, "IssueQuery's perf_counter_ns, per query")
      .def_property_readonly("ids", &harness_native::Ids, "LoadGen's response ids (opaque)");

  py::class_<SutCore>(m, "SutCore")
      .def(py::init([](size_t max_batch_size, int64_t max_wait_ns) {
             return std::make_unique<SutCore>(max_batch_size, max_wait_ns);
           }),
           py::arg("max_batch_size"), py::arg("max_wait_ns") = 0)
      .def("handle", [](SutCore& c) { return reinterpret_cast<uintptr_t>(static_cast<mlperf::SystemUnderTest*>(&c)); },
           "the mlperf::SystemUnderTest* as an int, for lg.StartTestWithLogSettings")
      .def("next_batch", &harness_native::NextBatch,
           "the next batch (waits without the GIL), or None once closed and empty")
      .def("complete", &harness_native::Complete, py::arg("batch"), py::arg("images"),
           "QuerySamplesComplete with pointers into images (uint8, one image per query); "
           "returns (handback_ns, [(sample index, ns from IssueQuery to the return)])")
      .def(
          "complete_empty",
          [](SutCore& c, Batch& b) {
            harness_native::Claim(b);
            py::gil_scoped_release release;
            c.CompleteEmpty(b.queries);
          },
          py::arg("batch"))
      .def(
          "requeue",
          [](SutCore& c, Batch& b) {
            harness_native::Claim(b);
            py::gil_scoped_release release;
            c.Requeue(b.queries);
          },
          py::arg("batch"), "put a batch back at the head of the queue")
      .def(
          "abort",
          [](SutCore& c) {
            py::gil_scoped_release release;
            c.Abort();
          },
          "answer every queued query now, and every later one on arrival, with an empty response")
      .def(
          "close",
          [](SutCore& c) {
            py::gil_scoped_release release;
            c.Close();
          },
          "wake every waiting worker: they get what is left, then None")
      .def_property_readonly("issued", &SutCore::issued)
      .def_property_readonly("completed", &SutCore::completed)
      .def_property_readonly("pending", &SutCore::pending)
      .def_property_readonly("aborted", &SutCore::Aborted)
      .def_property_readonly("max_batch_size", [](SutCore& c) { return c.batcher().max_batch_size(); })
      .def_property_readonly("max_wait_ns", [](SutCore& c) { return c.batcher().max_wait_ns(); });

  m.def("now_ns", &harness_native::NowNs, "the clock of the enqueue times (time.perf_counter_ns's on Linux)");
}
