// Batched, run-merging block I/O for the journal.
#include "journal/journal_io.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace cext3::journal::io {

namespace {

// Largest merged request; keeps bounce buffers in the backends bounded.
constexpr uint64_t kMaxRunBytes = 1u << 20;
// Requests handed to one submit() call.
constexpr size_t kMaxBatch = 64;

struct Run {
  uint64_t first_block;
  std::vector<BlockRef> refs;
  AlignedBuffer buf;
};

Status check_bounds(BlockDevice& dev, uint32_t bs, const std::vector<BlockRef>& blocks) {
  if (bs % dev.sector_size() != 0)
    return Status::InvalidArgument("journal I/O: block size " + std::to_string(bs) +
                                   " is not a multiple of the sector size of " + dev.name());
  for (const auto& b : blocks)
    if ((b.fs_block + 1) * bs > dev.size())
      return Status::InvalidArgument("journal I/O: block " + std::to_string(b.fs_block) +
                                     " lies past the end of " + dev.name());
  return Status::OK();
}

std::vector<Run> make_runs(uint32_t bs, std::vector<BlockRef>& blocks) {
  std::sort(blocks.begin(), blocks.end(),
            [](const BlockRef& a, const BlockRef& b) { return a.fs_block < b.fs_block; });
  std::vector<Run> runs;
  for (const auto& b : blocks) {
    if (!runs.empty()) {
      Run& r = runs.back();
      if (r.first_block + r.refs.size() == b.fs_block && (r.refs.size() + 1) * bs <= kMaxRunBytes) {
        r.refs.push_back(b);
        continue;
      }
    }
    runs.push_back(Run{b.fs_block, {b}, {}});
  }
  return runs;
}

Status run_batches(BlockDevice& dev, uint32_t bs, std::vector<Run>& runs, IoRequest::Op op,
                   bool durable = false) {
  for (size_t i = 0; i < runs.size(); i += kMaxBatch) {
    std::vector<IoRequest> batch;
    for (size_t j = i; j < std::min(runs.size(), i + kMaxBatch); ++j) {
      Run& r = runs[j];
      IoRequest req;
      req.op = op;
      req.offset = r.first_block * bs;
      req.len = r.refs.size() * bs;
      req.durable = durable;
      bool adjacent = true;  // already one contiguous span in memory?
      for (size_t k = 1; k < r.refs.size() && adjacent; ++k)
        adjacent = r.refs[k].data == r.refs[0].data + k * bs;
      if (adjacent) {
        req.buf = r.refs[0].data;
      } else {
        r.buf = AlignedBuffer(req.len);
        if (op == IoRequest::Op::kWrite)
          for (size_t k = 0; k < r.refs.size(); ++k)
            std::memcpy(r.buf.data() + k * bs, r.refs[k].data, bs);
        req.buf = r.buf.data();
      }
      batch.push_back(req);
    }
    CEXT3_RETURN_IF_ERROR(dev.submit(batch));
    if (op == IoRequest::Op::kRead)
      for (size_t j = i; j < std::min(runs.size(), i + kMaxBatch); ++j) {
        Run& r = runs[j];
        if (r.buf.size() > 0)
          for (size_t k = 0; k < r.refs.size(); ++k)
            std::memcpy(r.refs[k].data, r.buf.data() + k * bs, bs);
      }
  }
  return Status::OK();
}

}  // namespace

Status write_blocks(BlockDevice& dev, uint32_t bs, std::vector<BlockRef> blocks) {
  if (blocks.empty()) return Status::OK();
  CEXT3_RETURN_IF_ERROR(check_bounds(dev, bs, blocks));
  auto runs = make_runs(bs, blocks);
  return run_batches(dev, bs, runs, IoRequest::Op::kWrite);
}

Status write_blocks_durable(BlockDevice& dev, uint32_t bs, std::vector<BlockRef> blocks, bool* flushed) {
  if (flushed) *flushed = false;
  if (blocks.empty()) return Status::OK();
  CEXT3_RETURN_IF_ERROR(check_bounds(dev, bs, blocks));
  auto runs = make_runs(bs, blocks);
  if (runs.size() == 1 && dev.native_durable_writes())
    return run_batches(dev, bs, runs, IoRequest::Op::kWrite, /*durable=*/true);
  // Several requests: one flush after all of them costs less than a cache
  // flush per durable request on a disk without FUA.
  CEXT3_RETURN_IF_ERROR(run_batches(dev, bs, runs, IoRequest::Op::kWrite));
  if (flushed) *flushed = true;
  return dev.flush();
}

bool one_request(uint32_t bs, std::vector<BlockRef> blocks) {
  return !blocks.empty() && make_runs(bs, blocks).size() == 1;
}

Status read_blocks(BlockDevice& dev, uint32_t bs, std::vector<BlockRef> blocks) {
  if (blocks.empty()) return Status::OK();
  CEXT3_RETURN_IF_ERROR(check_bounds(dev, bs, blocks));
  auto runs = make_runs(bs, blocks);
  return run_batches(dev, bs, runs, IoRequest::Op::kRead);
}

Status read_block(BlockDevice& dev, uint32_t bs, uint64_t fs_block, uint8_t* data) {
  return read_blocks(dev, bs, {BlockRef{fs_block, data}});
}

Status write_block(BlockDevice& dev, uint32_t bs, uint64_t fs_block, const uint8_t* data) {
  return write_blocks(dev, bs, {BlockRef{fs_block, const_cast<uint8_t*>(data)}});
}

}  // namespace cext3::journal::io
