// ctest: the hex decoder against the portable loop, and the log decoder fed in every chunking.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hex_decode.h"
#include "log_decoder.h"

using accuracy_log::ArrayState;
using accuracy_log::Entry;
using accuracy_log::LogDecoder;

namespace {

int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

std::string Hex(const std::vector<uint8_t>& bytes, bool upper) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

void TestHex() {
  std::mt19937 rng(1);
  for (size_t n : {0, 1, 2, 31, 32, 33, 63, 64, 65, 100, 1000}) {
    std::vector<uint8_t> bytes(n);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    for (bool upper : {true, false}) {
      const std::string hex = Hex(bytes, upper);
      std::vector<uint8_t> out(n + 1, 0xEE);
      CHECK(accuracy_log::DecodeHex(reinterpret_cast<const uint8_t*>(hex.data()), hex.size(), out.data()));
      CHECK(std::equal(bytes.begin(), bytes.end(), out.begin()));
      CHECK(out[n] == 0xEE);  // nothing written past the end
      // Every position of a bad character is found, by both loops.
      for (size_t bad = 0; bad < hex.size(); bad += 7) {
        for (char c : {'g', 'G', ' ', '"', '/', ':', '@', '`', '\x80', '\0'}) {
          std::string broken = hex;
          broken[bad] = c;
          const auto* src = reinterpret_cast<const uint8_t*>(broken.data());
          CHECK(!accuracy_log::DecodeHex(src, broken.size(), out.data()));
          CHECK(!accuracy_log::DecodeHexScalar(src, broken.size(), out.data()));
        }
      }
    }
  }
}

struct Result {
  std::vector<Entry> entries;
  bool ok = false;
  uint64_t stop_offset = 0;
  ArrayState stop_state = ArrayState::kStart;
};

Result Decode(const std::string& text, size_t image_bytes, const std::vector<size_t>& cuts) {
  LogDecoder decoder(image_bytes);
  Result r;
  size_t start = 0;
  for (size_t cut : cuts) {
    if (cut <= start || cut > text.size()) continue;
    decoder.Feed(reinterpret_cast<const uint8_t*>(text.data()) + start, cut - start, &r.entries);
    start = cut;
  }
  decoder.Feed(reinterpret_cast<const uint8_t*>(text.data()) + start, text.size() - start, &r.entries);
  r.ok = decoder.Finish();
  r.stop_offset = decoder.stop_offset();
  r.stop_state = decoder.stop_state();
  return r;
}

void TestLog() {
  const size_t image_bytes = 5;
  const std::vector<std::vector<uint8_t>> images = {{0, 1, 2, 3, 255}, {16, 32, 64, 128, 7}, {9, 9, 9, 9, 9}};
  std::string log = "[";
  std::vector<size_t> offsets;
  for (size_t k = 0; k < images.size(); ++k) {
    log += k ? ",\n" : "\n";
    offsets.push_back(log.size());
    log += "{ \"seq_id\" : " + std::to_string(k) + ", \"qsl_idx\" : " + std::to_string(10 * k + 3) +
           ", \"data\" : \"" + Hex(images[k], k != 1) + "\" }";
  }
  log += "\n]\n";

  // One piece, every split point, and byte by byte.
  std::vector<std::vector<size_t>> chunkings = {{}};
  for (size_t cut = 1; cut < log.size(); ++cut) chunkings.push_back({cut});
  std::vector<size_t> bytewise;
  for (size_t cut = 1; cut < log.size(); ++cut) bytewise.push_back(cut);
  chunkings.push_back(bytewise);
  for (const auto& cuts : chunkings) {
    Result r = Decode(log, image_bytes, cuts);
    CHECK(r.ok);
    CHECK(r.entries.size() == images.size());
    for (size_t k = 0; k < r.entries.size() && k < images.size(); ++k) {
      CHECK(r.entries[k].offset == offsets[k]);
      CHECK(r.entries[k].qsl_idx == 10 * k + 3);
      CHECK(std::memcmp(r.entries[k].data.get(), images[k].data(), image_bytes) == 0);
    }
  }

  // Truncated anywhere inside an entry: stops at that entry's start, ready for the next entry.
  for (size_t cut = offsets[1] + 1; cut < offsets[2] - 2; ++cut) {
    Result r = Decode(log.substr(0, cut), image_bytes, {cut / 2});
    CHECK(!r.ok);
    CHECK(r.entries.size() == 1);
    CHECK(r.stop_offset == offsets[1]);
    CHECK(r.stop_state == ArrayState::kExpectEntry);
  }
  // Without the closing ']': stops at the end, after an entry.
  const size_t close = log.rfind(']');
  Result open = Decode(log.substr(0, close), image_bytes, {});
  CHECK(!open.ok && open.entries.size() == 3 && open.stop_offset == close && open.stop_state == ArrayState::kAfterEntry);
  // Data after ']': stops at it.
  Result after = Decode(log + "x", image_bytes, {});
  CHECK(!after.ok && after.entries.size() == 3 && after.stop_offset == log.size() &&
        after.stop_state == ArrayState::kAfterClose);
  // A wrong image size, odd hex, an escape, a negative or huge qsl_idx, another key: handed to Python at the entry.
  const std::string head = "[{\"qsl_idx\":1,\"data\":\"";
  for (const std::string& bad : {head + "0001020304\"}", head + "000102030405\"}", head + "000102030\"}",
                                  head + "00010203\\u0030\"}", std::string("[{\"qsl_idx\":-1,\"data\":\"0001020304\"}"),
                                  std::string("[{\"qsl_idx\":1234567890123456789,\"data\":\"0001020304\"}"),
                                  std::string("[{\"qsl_idx\":01,\"data\":\"0001020304\"}"),
                                  std::string("[{\"qsl_idx\":1.0,\"data\":\"0001020304\"}"),
                                  std::string("[{\"qsl_idx\":1,\"x\":2,\"data\":\"0001020304\"}"),
                                  std::string("[{\"qsl_idx\":1,\"qsl_idx\":2,\"data\":\"0001020304\"}"),
                                  std::string("[{\"qsl_idx\":1}]"), std::string("[{}]")}) {
    const std::string text = bad.back() == ']' ? bad : bad + "]";
    Result r = Decode(text, image_bytes, {});
    const bool good = bad == head + "0001020304\"}";
    CHECK(r.ok == good);
    if (!good) CHECK(r.entries.empty() && r.stop_offset == 1 && r.stop_state == ArrayState::kExpectEntry);
  }
  // An empty array is a clean end (the Python reader says it has no entries); '[' then ']' after an entry's ',' is not.
  CHECK(Decode(" [ ] ", image_bytes, {}).ok);
  Result comma = Decode("[" + log.substr(offsets[0], offsets[1] - offsets[0] - 2) + ",]", image_bytes, {});
  CHECK(!comma.ok && comma.entries.size() == 1 && comma.stop_state == ArrayState::kExpectEntry);
  Result empty = Decode("  \n", image_bytes, {});
  CHECK(!empty.ok && empty.stop_state == ArrayState::kStart && empty.stop_offset == 3);
}

}  // namespace

int main() {
  TestHex();
  TestLog();
  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("accuracy_log_test: all checks passed (AVX2 %s)\n", accuracy_log::HexDecodeUsesAvx2() ? "on" : "off");
  return 0;
}
