// File data write-back: data blocks an op writes are kept in memory, as
// whole-block images, until the commit of the transaction the op joined
// hands them to the journal as ordered data (Transaction::add_ordered_data:
// written in place and durable before the commit block, as jbd2's
// data=ordered).
//
// Why: writing each data block in place inside the op, synchronously and
// under mu_, made every write wait for the disk and every other op wait for
// that write. At commit, the blocks of many ops go to the device in one
// batch with the journal's own writes, outside mu_.
//
// Invariants relied on:
//  * the latest contents of a data block are, in this order of precedence:
//    its image in running_data_ (ops since the last commit snapshot), its
//    image in committing_data_ (in the commit in progress), the disk. Every
//    reader of file data on this node goes through latest_data_image;
//  * before an EX lock leaves the node, on_lock_leaving commits, so another
//    node that then reads the file finds every byte on the disk;
//  * a data block freed while it has an image in running_data_ loses the
//    image (nothing may be written into a block after it is free). An image
//    in the commit in progress is still written: the block cannot be reused
//    before the freeing transaction is durable, which is after that write.
#include <cstring>

#include "engine/engine_impl.h"

namespace cext3::engine {

const std::vector<uint8_t>* EngineFs::latest_data_image(uint64_t blk) const {
  if (auto it = running_data_.find(blk); it != running_data_.end()) return &it->second;
  if (auto it = committing_data_.find(blk); it != committing_data_.end()) return &it->second;
  return nullptr;
}

Result<uint8_t*> EngineFs::data_block_for_write(Op& op, uint64_t blk, bool fresh, bool whole) {
  const uint32_t bs = geo_.block_size;
  op.data_written_ = true;
  auto it = running_data_.find(blk);
  if (it != running_data_.end()) return it->second.data();
  // Fresh: zeros where nothing is written. Whole: the caller overwrites it.
  std::vector<uint8_t> img(bs, 0);
  if (!fresh && !whole) {
    if (auto c = committing_data_.find(blk); c != committing_data_.end()) {
      img = c->second;
    } else {
      Status s = dev_.read(blk * bs, img.data(), bs);
      if (!s.ok()) return s;
    }
  }
  return running_data_.emplace(blk, std::move(img)).first->second.data();
}

void EngineFs::drop_buffered_data(uint64_t blk) { running_data_.erase(blk); }

bool EngineFs::running_data_too_big() const {
  return running_data_.size() * geo_.block_size >= kDataWritebackLimitBytes;
}

}  // namespace cext3::engine
