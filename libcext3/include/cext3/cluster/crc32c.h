// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
// cext3 cluster record. Standard parameters: initial value ~0, final xor ~0,
// so crc32c("123456789") == 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cext3::cluster {

// Continue a CRC: pass the previous result as `crc` (0 to start).
uint32_t crc32c(const void* data, size_t len, uint32_t crc = 0);

}  // namespace cext3::cluster
