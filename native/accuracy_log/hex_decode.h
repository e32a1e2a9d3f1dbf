// Hex text to bytes, the hot loop of the accuracy-log decoder: AVX2 where the CPU has it (checked at
// run time, so one build runs on any x86-64 and on aarch64), a table-driven loop elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>

namespace accuracy_log {

// Decodes `n` hex characters (n even; upper- or lower-case) from `src` into n / 2 bytes at `dst`.
// Returns false if any character is not a hex digit; `dst` then holds unspecified bytes.
bool DecodeHex(const uint8_t* src, size_t n, uint8_t* dst);

// The portable loop alone (the unit test compares it with DecodeHex).
bool DecodeHexScalar(const uint8_t* src, size_t n, uint8_t* dst);

// Whether DecodeHex uses AVX2 on this CPU.
bool HexDecodeUsesAvx2();

// One hex digit's value, or -1.
constexpr int HexValue(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  const uint8_t lower = c | 0x20;
  if (lower >= 'a' && lower <= 'f') return lower - 'a' + 10;
  return -1;
}

}  // namespace accuracy_log
