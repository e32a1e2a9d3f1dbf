#include "log_decoder.h"

#include <cstring>
#include <string_view>

#include "hex_decode.h"

namespace accuracy_log {
namespace {

inline bool IsSpace(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
inline bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
// 18 decimal digits always fit in 64 bits; a longer qsl_idx goes to the Python reader.
constexpr int kMaxDigits = 18;

}  // namespace

const char* ArrayStateName(ArrayState state) {
  switch (state) {
    case ArrayState::kStart:
      return "start";
    case ArrayState::kExpectEntry:
      return "expect_entry";
    case ArrayState::kAfterEntry:
      return "after_entry";
    case ArrayState::kAfterClose:
      return "after_close";
  }
  return "start";
}

LogDecoder::LogDecoder(size_t image_bytes) : image_bytes_(image_bytes) {}

bool LogDecoder::in_entry() const {
  return state_ != State::kStart && state_ != State::kExpectEntry && state_ != State::kAfterEntry &&
         state_ != State::kAfterClose;
}

bool LogDecoder::Stop(uint64_t offset, const char* reason) {
  if (stopped_) return false;
  stopped_ = true;
  stop_reason_ = reason;
  data_.reset();
  if (in_entry()) {
    // The Python reader parses the whole entry again, so that its message (or its result) is its own.
    stop_offset_ = entry_offset_;
    stop_state_ = ArrayState::kExpectEntry;
    return false;
  }
  stop_offset_ = offset;
  switch (state_) {
    case State::kStart:
      stop_state_ = ArrayState::kStart;
      break;
    case State::kExpectEntry:
      stop_state_ = ArrayState::kExpectEntry;
      break;
    case State::kAfterEntry:
      stop_state_ = ArrayState::kAfterEntry;
      break;
    default:
      stop_state_ = ArrayState::kAfterClose;
      break;
  }
  return false;
}

bool LogDecoder::DecodeData(const uint8_t* p, size_t i, size_t end, uint64_t base) {
  if (i < end && pending_nibble_ >= 0) {
    const int lo = HexValue(p[i]);
    if (lo < 0 || data_bytes_ >= image_bytes_) return Stop(base + i, "data: not hex or too long");
    data_[data_bytes_++] = static_cast<uint8_t>((pending_nibble_ << 4) | lo);
    pending_nibble_ = -1;
    ++i;
  }
  const size_t len = end - i, even = len & ~static_cast<size_t>(1);
  if (data_bytes_ + even / 2 > image_bytes_) return Stop(base + i, "data: more bytes than the image size");
  if (!DecodeHex(p + i, even, data_.get() + data_bytes_)) return Stop(base + i, "data: not hex");
  data_bytes_ += even / 2;
  if (len % 2 == 1) {
    pending_nibble_ = HexValue(p[end - 1]);
    if (pending_nibble_ < 0) return Stop(base + end - 1, "data: not hex");
  }
  return true;
}

bool LogDecoder::Feed(const uint8_t* p, size_t n, std::vector<Entry>* out) {
  if (stopped_ || finished_) return false;
  const uint64_t base = base_;
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    switch (state_) {
      case State::kStart:
        if (IsSpace(c)) break;
        if (c != '[') return Stop(base + i, "no '[' at the start");
        state_ = State::kExpectEntry;
        break;

      case State::kExpectEntry:
        if (IsSpace(c)) break;
        if (c == '{') {
          entry_offset_ = base + i;
          keys_seen_ = 0;
          state_ = State::kExpectFirstKey;
        } else if (c == ']' && entries_ == 0) {
          state_ = State::kAfterClose;
        } else {
          return Stop(base + i, "expected an entry");
        }
        break;

      case State::kAfterEntry:
        if (IsSpace(c)) break;
        if (c == ',') {
          state_ = State::kExpectEntry;
        } else if (c == ']') {
          state_ = State::kAfterClose;
        } else {
          return Stop(base + i, "expected ',' or ']'");
        }
        break;

      case State::kAfterClose:
        if (IsSpace(c)) break;
        return Stop(base + i, "data after ']'");

      case State::kExpectFirstKey:
      case State::kExpectKey:
        if (IsSpace(c)) break;
        if (c != '"') return Stop(base + i, "expected a key");
        key_len_ = 0;
        state_ = State::kKey;
        break;

      case State::kKey:
        if (c == '"') {
          const std::string_view key(key_text_, key_len_);
          if (key == "seq_id") {
            key_ = kSeqIdKey;
          } else if (key == "qsl_idx") {
            key_ = kQslIdxKey;
          } else if (key == "data") {
            key_ = kDataKey;
          } else {
            return Stop(base + i, "unknown key");
          }
          if (keys_seen_ & key_) return Stop(base + i, "repeated key");
          keys_seen_ |= key_;
          state_ = State::kExpectColon;
        } else if (key_len_ < sizeof(key_text_) && ((c >= 'a' && c <= 'z') || c == '_')) {
          key_text_[key_len_++] = static_cast<char>(c);
        } else {
          return Stop(base + i, "unknown key");
        }
        break;

      case State::kExpectColon:
        if (IsSpace(c)) break;
        if (c != ':') return Stop(base + i, "expected ':'");
        state_ = State::kExpectValue;
        break;

      case State::kExpectValue:
        if (IsSpace(c)) break;
        if (key_ == kDataKey) {
          if (c != '"') return Stop(base + i, "data is not a string");
          data_.reset(new uint8_t[image_bytes_]);  // uninitialised: every byte is written before use
          data_bytes_ = 0;
          pending_nibble_ = -1;
          state_ = State::kData;
        } else {
          if (!IsDigit(c)) return Stop(base + i, "not a non-negative integer");
          integer_ = static_cast<uint64_t>(c - '0');
          integer_digits_ = 1;
          integer_leading_zero_ = c == '0';
          state_ = State::kInteger;
        }
        break;

      case State::kInteger:
        if (IsDigit(c)) {
          if (integer_leading_zero_ || ++integer_digits_ > kMaxDigits) return Stop(base + i, "integer");
          integer_ = integer_ * 10 + static_cast<uint64_t>(c - '0');
          break;
        }
        if (!IsSpace(c) && c != ',' && c != '}') return Stop(base + i, "not an integer");
        if (key_ == kQslIdxKey) qsl_idx_ = integer_;
        state_ = State::kAfterValue;
        continue;  // the character after the number is the next state's

      case State::kData: {
        // The hot path: the rest of the string (or of the chunk) at once.
        const void* quote = std::memchr(p + i, '"', n - i);
        const size_t end = quote ? static_cast<size_t>(static_cast<const uint8_t*>(quote) - p) : n;
        if (!DecodeData(p, i, end, base)) return false;
        if (!quote) {
          i = n;
          continue;
        }
        if (pending_nibble_ >= 0 || data_bytes_ != image_bytes_) return Stop(base + end, "data: wrong size");
        i = end;
        state_ = State::kAfterValue;
        break;
      }

      case State::kAfterValue:
        if (IsSpace(c)) break;
        if (c == ',') {
          state_ = State::kExpectKey;
        } else if (c == '}') {
          if ((keys_seen_ & (kQslIdxKey | kDataKey)) != (kQslIdxKey | kDataKey)) {
            return Stop(base + i, "missing qsl_idx or data");
          }
          out->push_back(Entry{entry_offset_, qsl_idx_, std::move(data_)});
          ++entries_;
          state_ = State::kAfterEntry;
        } else {
          return Stop(base + i, "expected ',' or '}'");
        }
        break;
    }
    ++i;
  }
  base_ += n;
  return true;
}

bool LogDecoder::Finish() {
  if (stopped_) return false;
  if (state_ != State::kAfterClose) return Stop(base_, "the file ends before the closing ']'");
  finished_ = true;
  return true;
}

}  // namespace accuracy_log
