// Sha256: the SHA-256 message digest of FIPS 180-4, written here so that the
// test oracle (cext3-manifest) and the format code share one small, tested
// implementation with no extra library dependency.
//
// Streaming use: construct, Update() any number of times with any split of
// the input, then Finish() once. Finish() leaves the object reset to a fresh
// state, so it can be reused for the next message.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace cext3 {

class Sha256 {
 public:
  static constexpr size_t kDigestSize = 32;
  static constexpr size_t kBlockSize = 64;
  using Digest = std::array<uint8_t, kDigestSize>;

  Sha256() { Reset(); }

  void Reset();
  void Update(const void* data, size_t len);
  Digest Finish();

  // One-shot digest of a buffer.
  static Digest Of(const void* data, size_t len);
  // Lower-case hexadecimal, 64 characters, as sha256sum prints it.
  static std::string ToHex(const Digest& digest);

 private:
  void CompressBlock(const uint8_t* block);

  std::array<uint32_t, 8> state_{};
  std::array<uint8_t, kBlockSize> pending_{};  // input not yet compressed
  size_t pending_len_ = 0;                      // invariant: < kBlockSize
  uint64_t total_len_ = 0;                      // bytes seen, for the length trailer
};

}  // namespace cext3
