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

// Write `blocks` and make them durable before returning: the end of a flush
// epoch that holds exactly these writes. When they merge into a single
// request and the device has native durable writes, that request is written
// durable (one round trip: RWF_DSYNC, NBD FUA); otherwise they are written
// and then flushed. A durable write makes only itself durable, which is
// enough because every write of the epoch is in `blocks`; callers that need
// earlier writes durable first flush before (the journal always does).
// *flushed (if given) says whether a flush() was issued.
Status write_blocks_durable(BlockDevice& dev, uint32_t block_size, std::vector<BlockRef> blocks,
                            bool* flushed = nullptr);

// True when `blocks` (distinct) merge into a single request: then a
// durable write of them is one round trip on a device with native durable
// writes.
bool one_request(uint32_t block_size, std::vector<BlockRef> blocks);

Status read_block(BlockDevice& dev, uint32_t block_size, uint64_t fs_block, uint8_t* data);
Status write_block(BlockDevice& dev, uint32_t block_size, uint64_t fs_block, const uint8_t* data);

}  // namespace cext3::journal::io
