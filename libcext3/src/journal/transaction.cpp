// Transaction: the blocks one atomic change logs, revokes and orders.
#include <algorithm>
#include <string>
#include <utility>

#include "cext3/journal.h"

namespace cext3::journal {

Status Transaction::add_block(uint64_t fs_block, std::span<const uint8_t> data) {
  if (data.empty())
    return Status::InvalidArgument("transaction: empty image for block " + std::to_string(fs_block));
  if (!blocks_.empty() && data.size() != blocks_.front().data.size())
    return Status::InvalidArgument("transaction: block " + std::to_string(fs_block) + " has " +
                                   std::to_string(data.size()) + " bytes, the others " +
                                   std::to_string(blocks_.front().data.size()));
  if (revoked_.erase(fs_block))
    revokes_.erase(std::remove(revokes_.begin(), revokes_.end(), fs_block), revokes_.end());
  auto it = block_index_.find(fs_block);
  if (it != block_index_.end()) {
    blocks_[it->second].data.assign(data.begin(), data.end());
  } else {
    block_index_[fs_block] = blocks_.size();
    blocks_.push_back(Block{fs_block, std::vector<uint8_t>(data.begin(), data.end())});
  }
  return Status::OK();
}

void Transaction::revoke(uint64_t fs_block) {
  auto it = block_index_.find(fs_block);
  if (it != block_index_.end()) {
    // Swap with the last block so the erase is O(1); order within a
    // transaction does not matter on disk.
    const size_t idx = it->second;
    block_index_.erase(it);
    if (idx + 1 != blocks_.size()) {
      blocks_[idx] = std::move(blocks_.back());
      block_index_[blocks_[idx].fs_block] = idx;
    }
    blocks_.pop_back();
  }
  if (revoked_.insert(fs_block).second) revokes_.push_back(fs_block);
}

Status Transaction::add_ordered_data(uint64_t fs_block, std::span<const uint8_t> data) {
  if (data.empty())
    return Status::InvalidArgument("transaction: empty ordered-data image for block " +
                                   std::to_string(fs_block));
  auto it = ordered_index_.find(fs_block);
  if (it != ordered_index_.end()) {
    ordered_[it->second].data.assign(data.begin(), data.end());
  } else {
    ordered_index_[fs_block] = ordered_.size();
    ordered_.push_back(Block{fs_block, std::vector<uint8_t>(data.begin(), data.end())});
  }
  return Status::OK();
}

std::vector<Transaction::Block> Transaction::take_blocks() {
  block_index_.clear();
  return std::exchange(blocks_, {});
}

std::vector<Transaction::Block> Transaction::take_ordered_data() {
  ordered_index_.clear();
  return std::exchange(ordered_, {});
}

}  // namespace cext3::journal
