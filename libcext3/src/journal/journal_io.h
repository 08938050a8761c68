// Block-granular I/O helpers for the journal code: write or read a set of
// filesystem blocks through BlockDevice::submit(), merging runs of adjacent
// blocks into one request. Internal to src/journal.
#pragma once

#include <cstdint>
#include <vector>

#include "cext3/block_device.h"

namespace cext3::journal::io {

struct BlockRef {
  uint64_t fs_block;
  uint8_t* data;  // block_size bytes; read into / written from
};

// Every fs_block must be distinct (a batch may complete in any order).
// Blocks past the end of the device are InvalidArgument.
Status write_blocks(BlockDevice& dev, uint32_t block_size, std::vector<BlockRef> blocks);
Status read_blocks(BlockDevice& dev, uint32_t block_size, std::vector<BlockRef> blocks);

Status read_block(BlockDevice& dev, uint32_t block_size, uint64_t fs_block, uint8_t* data);
Status write_block(BlockDevice& dev, uint32_t block_size, uint64_t fs_block, const uint8_t* data);

}  // namespace cext3::journal::io
