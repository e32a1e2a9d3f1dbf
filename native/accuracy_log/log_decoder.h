// A streaming decoder of LoadGen's mlperf_log_accuracy.json, fed the file chunk by chunk:
//
//   [
//   { "seq_id" : 0, "qsl_idx" : 7, "data" : "0A1B..." },
//   ...
//   ]
//
// It decodes each entry's hex "data" straight into that entry's own buffer (no copy of the hex text is
// kept, so memory stays at one chunk plus one image whatever the log's size) and hands back
// (byte offset, qsl_idx, bytes) per entry. It knows only the layout LoadGen writes (any JSON
// whitespace, the three keys in any order, seq_id optional, a non-negative integer qsl_idx, hex data of
// exactly the expected size). At anything else -- a malformed or truncated file, but also valid JSON it
// does not handle (escapes, other keys, floats, non-ASCII) -- it stops and says where: the byte offset
// of the entry (or of the top-level character) it could not take, and the state of the array there.
// The Python reader (accuracy/log_reader.py) carries on from that point, so every error message and
// every unusual-but-valid log is handled by the one Python parser; this one only makes the common
// case fast. Everything before the stop point is ASCII, so the Python reader's character offsets and
// these byte offsets agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace accuracy_log {

struct Entry {
  uint64_t offset = 0;  // byte offset of the entry's '{'
  uint64_t qsl_idx = 0;
  std::unique_ptr<uint8_t[]> data;  // image_bytes bytes
};

// Where the top-level array was when the decoder stopped (what the Python reader resumes with).
enum class ArrayState { kStart, kExpectEntry, kAfterEntry, kAfterClose };
const char* ArrayStateName(ArrayState state);

class LogDecoder {
 public:
  explicit LogDecoder(size_t image_bytes);

  // Decodes the next `n` bytes of the file; completed entries are appended to `out`. Returns false once
  // the decoder has stopped (then stop_offset() / stop_state() say where); the rest of the chunk is
  // ignored.
  bool Feed(const uint8_t* chunk, size_t n, std::vector<Entry>* out);

  // The end of the file. Returns true if the log ended cleanly (after its closing ']'); otherwise the
  // decoder stops where it was.
  bool Finish();

  bool stopped() const { return stopped_; }
  bool finished() const { return finished_; }
  uint64_t stop_offset() const { return stop_offset_; }
  ArrayState stop_state() const { return stop_state_; }
  uint64_t entries() const { return entries_; }
  // Why the decoder stopped, for debugging ("" while it has not).
  const std::string& stop_reason() const { return stop_reason_; }

 private:
  enum class State {
    kStart,
    kExpectEntry,
    kAfterEntry,
    kAfterClose,
    kExpectFirstKey,  // after '{'
    kExpectKey,       // after ','
    kKey,
    kExpectColon,
    kExpectValue,
    kInteger,
    kData,
    kAfterValue,
  };
  enum Key : unsigned { kSeqIdKey = 1, kQslIdxKey = 2, kDataKey = 4 };

  bool in_entry() const;
  // Stops at `offset` (a top-level character) or, inside an entry, at the entry's start.
  bool Stop(uint64_t offset, const char* reason);
  // Decodes part of a data string: chunk[i, end). Returns false when it stopped.
  bool DecodeData(const uint8_t* chunk, size_t i, size_t end, uint64_t base);

  size_t image_bytes_;
  State state_ = State::kStart;
  uint64_t base_ = 0;  // file offset of the next chunk
  uint64_t entries_ = 0;

  // The entry being read.
  uint64_t entry_offset_ = 0;
  unsigned keys_seen_ = 0;
  Key key_ = kSeqIdKey;
  char key_text_[8] = {};
  size_t key_len_ = 0;
  uint64_t integer_ = 0;
  int integer_digits_ = 0;
  bool integer_leading_zero_ = false;
  uint64_t qsl_idx_ = 0;
  std::unique_ptr<uint8_t[]> data_;
  size_t data_bytes_ = 0;
  int pending_nibble_ = -1;  // a hex character whose partner is in the next chunk

  bool stopped_ = false;
  bool finished_ = false;
  uint64_t stop_offset_ = 0;
  ArrayState stop_state_ = ArrayState::kStart;
  std::string stop_reason_;
};

}  // namespace accuracy_log
