#include "hex_decode.h"

#include <array>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define ACCURACY_LOG_X86 1
#endif

namespace accuracy_log {
namespace {

// -1 for a character that is not a hex digit.
constexpr std::array<int8_t, 256> MakeTable() {
  std::array<int8_t, 256> table{};
  for (int c = 0; c < 256; ++c) table[c] = static_cast<int8_t>(HexValue(static_cast<uint8_t>(c)));
  return table;
}
constexpr std::array<int8_t, 256> kHexTable = MakeTable();

#ifdef ACCURACY_LOG_X86
// 32 characters to 32 nibble values; lanes that are not hex digits are set in *invalid.
__attribute__((target("avx2"))) inline __m256i Nibbles(__m256i c, __m256i* invalid) {
  const __m256i digit = _mm256_sub_epi8(c, _mm256_set1_epi8('0'));
  const __m256i is_digit = _mm256_cmpeq_epi8(_mm256_min_epu8(digit, _mm256_set1_epi8(9)), digit);
  const __m256i alpha = _mm256_sub_epi8(_mm256_or_si256(c, _mm256_set1_epi8(0x20)), _mm256_set1_epi8('a'));
  const __m256i is_alpha = _mm256_cmpeq_epi8(_mm256_min_epu8(alpha, _mm256_set1_epi8(5)), alpha);
  *invalid = _mm256_or_si256(*invalid, _mm256_cmpeq_epi8(_mm256_or_si256(is_digit, is_alpha), _mm256_setzero_si256()));
  return _mm256_blendv_epi8(_mm256_add_epi8(alpha, _mm256_set1_epi8(10)), digit, is_digit);
}

__attribute__((target("avx2"))) bool DecodeHexAvx2(const uint8_t* src, size_t n, uint8_t* dst) {
  // maddubs multiplies the first character of each pair (the high nibble) by 16 and the second by 1.
  const __m256i weights = _mm256_set1_epi16(0x0110);
  __m256i invalid = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m256i a = Nibbles(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)), &invalid);
    const __m256i b = Nibbles(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32)), &invalid);
    // packus works per 128-bit lane: [a0 b0 a1 b1]; the permute puts the quarters back in order.
    const __m256i packed =
        _mm256_packus_epi16(_mm256_maddubs_epi16(a, weights), _mm256_maddubs_epi16(b, weights));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i / 2), _mm256_permute4x64_epi64(packed, 0xD8));
  }
  if (!_mm256_testz_si256(invalid, invalid)) return false;
  return DecodeHexScalar(src + i, n - i, dst + i / 2);
}

bool CpuHasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

}  // namespace

bool DecodeHexScalar(const uint8_t* src, size_t n, uint8_t* dst) {
  int bad = 0;
  for (size_t i = 0; i + 1 < n; i += 2) {
    const int hi = kHexTable[src[i]], lo = kHexTable[src[i + 1]];
    bad |= hi | lo;  // a -1 sets the sign bit
    dst[i / 2] = static_cast<uint8_t>(((hi & 0xF) << 4) | (lo & 0xF));
  }
  return bad >= 0 && n % 2 == 0;
}

bool DecodeHex(const uint8_t* src, size_t n, uint8_t* dst) {
#ifdef ACCURACY_LOG_X86
  if (CpuHasAvx2()) return DecodeHexAvx2(src, n, dst);
#endif
  return DecodeHexScalar(src, n, dst);
}

bool HexDecodeUsesAvx2() {
#ifdef ACCURACY_LOG_X86
  return CpuHasAvx2();
#else
  return false;
#endif
}

}  // namespace accuracy_log
