// harness_native._accuracy_log: the Python face of LogDecoder (log_decoder.h).
//
// accuracy/_native_log.py reads the file in chunks and calls Decoder.feed(chunk) for each while another
// thread hashes the previous chunk; feed releases the GIL while it parses and decodes, so the two run
// on two cores. Each entry comes back as (byte offset, qsl_idx, 1-D uint8 numpy array) whose memory
// the decoder wrote once (no copy), owned by the array.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "hex_decode.h"
#include "log_decoder.h"

namespace py = pybind11;
using accuracy_log::Entry;
using accuracy_log::LogDecoder;

namespace {

py::array_t<uint8_t> ToArray(std::unique_ptr<uint8_t[]> data, size_t n) {
  uint8_t* raw = data.release();
  py::capsule owner(raw, [](void* p) { delete[] static_cast<uint8_t*>(p); });
  return py::array_t<uint8_t>({static_cast<py::ssize_t>(n)}, {static_cast<py::ssize_t>(1)}, raw, owner);
}

class PyDecoder {
 public:
  explicit PyDecoder(size_t image_bytes) : image_bytes_(image_bytes), decoder_(image_bytes) {
    if (image_bytes == 0) throw py::value_error("image_bytes must be positive");
  }

  py::list Feed(const py::buffer& chunk) {
    const py::buffer_info info = chunk.request();
    if (info.ndim != 1 || info.itemsize != 1 || (info.ndim == 1 && info.strides[0] != 1)) {
      throw py::type_error("feed() takes a contiguous bytes-like object");
    }
    std::vector<Entry> entries;
    {
      py::gil_scoped_release release;
      decoder_.Feed(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size), &entries);
    }
    py::list out;
    for (Entry& e : entries) out.append(py::make_tuple(e.offset, e.qsl_idx, ToArray(std::move(e.data), image_bytes_)));
    return out;
  }

  bool Finish() { return decoder_.Finish(); }
  bool stopped() const { return decoder_.stopped(); }
  uint64_t stop_offset() const { return decoder_.stop_offset(); }
  const char* stop_state() const { return accuracy_log::ArrayStateName(decoder_.stop_state()); }
  const std::string& stop_reason() const { return decoder_.stop_reason(); }
  uint64_t entries() const { return decoder_.entries(); }

 private:
  size_t image_bytes_;
  LogDecoder decoder_;
};

}  // namespace

PYBIND11_MODULE(_accuracy_log, m) {
  m.doc() = "Streaming decoder of LoadGen's mlperf_log_accuracy.json (hex data per entry).";
  py::class_<PyDecoder>(m, "Decoder")
      .def(py::init<size_t>(), py::arg("image_bytes"))
      .def("feed", &PyDecoder::Feed, py::arg("chunk"),
           "Decode the next bytes of the file; returns [(offset, qsl_idx, uint8 array)] of the entries completed.")
      .def("finish", &PyDecoder::Finish, "The end of the file: True if the log ended cleanly after its ']'.")
      .def_property_readonly("stopped", &PyDecoder::stopped)
      .def_property_readonly("stop_offset", &PyDecoder::stop_offset)
      .def_property_readonly("stop_state", &PyDecoder::stop_state)
      .def_property_readonly("stop_reason", &PyDecoder::stop_reason)
      .def_property_readonly("entries", &PyDecoder::entries);
  m.attr("uses_avx2") = accuracy_log::HexDecodeUsesAvx2();
}
