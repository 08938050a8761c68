// File data and attributes: read, write, setattr, getattr, statfs.
//
// Invariants relied on:
//  * data blocks are written through the write-back set (data_writeback.cpp):
//    a fresh block's image is zero-filled where not written, and reaches the
//    disk before the commit that makes the inode point to it (ordered data);
//    another node reading after our EX left finds the bytes on disk;
//  * a file never has blocks mapped past i_size (e2fsck would complain), so
//    a write that fails half-way (ENOSPC) still sets i_size to cover what it
//    wrote and writes the inode back;
//  * atime is not updated by reads (as with noatime).
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {
Status no_such_inode(uint64_t ino) {
  return Status::NotFound("inode " + std::to_string(ino) + " is not in use (deleted or never created)");
}
bool inode_in_use(const ext2_inode& in) { return in.i_links_count != 0 && in.i_mode != 0; }
}  // namespace

Result<EngineFs::ReadPlan> EngineFs::plan_read(Op& op, uint64_t ino, const ext2_inode& cin, uint64_t offset,
                                               std::span<uint8_t> out) {
  ext2_inode in = cin;  // bmap without alloc does not change it
  ReadPlan plan;
  const uint64_t size = inode_size(in);
  if (offset >= size || out.empty()) return plan;
  const uint64_t n = std::min<uint64_t>(out.size(), size - offset);
  plan.bytes = size_t(n);
  const uint32_t bs = geo_.block_size;
  uint64_t pos = offset;
  const uint64_t end = offset + n;
  while (pos < end) {
    const uint64_t lblk = pos / bs;
    const uint32_t boff = uint32_t(pos % bs);
    const uint64_t len = std::min<uint64_t>(bs - boff, end - pos);
    auto phys = bmap(op, ino, in, lblk, false);
    if (!phys.ok()) return phys.status();
    uint8_t* dst = out.data() + (pos - offset);
    const std::vector<uint8_t>* img = *phys ? latest_data_image(*phys) : nullptr;
    if (*phys == 0) {
      std::memset(dst, 0, len);
    } else if (img) {
      // Not yet written in place: the bytes come from the write-back set.
      std::memcpy(dst, img->data() + boff, len);
    } else if (len == bs && !plan.reads.empty()) {
      // Whole blocks physically contiguous with the previous whole-block
      // read (and contiguous in `out`) join it: one request.
      DiskRead& last = plan.reads.back();
      if (last.boff == 0 && last.len == last.count * bs && last.phys + last.count == *phys &&
          last.dst + last.len == dst && last.count < 256) {
        ++last.count;
        last.len += bs;
      } else {
        plan.reads.push_back(DiskRead{*phys, 1, dst, 0, bs});
      }
    } else {
      plan.reads.push_back(DiskRead{*phys, 1, dst, boff, uint32_t(len)});
    }
    pos += len;
  }
  return plan;
}

Status EngineFs::run_reads(const ReadPlan& plan) {
  const uint32_t bs = geo_.block_size;
  std::vector<IoRequest> batch;
  std::vector<std::vector<uint8_t>> bounce;  // partial blocks: read whole, copy the part
  bounce.reserve(plan.reads.size());
  for (const DiskRead& r : plan.reads) {
    IoRequest q;
    q.op = IoRequest::Op::kRead;
    q.offset = r.phys * bs;
    q.len = r.count * bs;
    if (r.boff == 0 && r.len == r.count * bs) {
      q.buf = r.dst;
    } else {
      q.buf = bounce.emplace_back(bs).data();
    }
    batch.push_back(q);
  }
  if (batch.empty()) return Status::OK();
  CEXT3_RETURN_IF_ERROR(dev_.submit(std::span<IoRequest>(batch)));
  size_t k = 0;
  for (const DiskRead& r : plan.reads)
    if (!(r.boff == 0 && r.len == r.count * bs)) std::memcpy(r.dst, bounce[k++].data() + r.boff, r.len);
  return Status::OK();
}

Result<size_t> EngineFs::read_data(Op& op, uint64_t ino, const ext2_inode& in, uint64_t offset, std::span<uint8_t> out) {
  auto plan = plan_read(op, ino, in, offset, out);
  if (!plan.ok()) return plan.status();
  CEXT3_RETURN_IF_ERROR(run_reads(*plan));
  return plan->bytes;
}

Status EngineFs::write_data(Op& op, uint64_t ino, ext2_inode& in, uint64_t offset, std::span<const uint8_t> data) {
  const uint64_t end = offset + data.size();
  if (end < offset || end > geo_.max_file_size)
    return Status::FromErrno(EFBIG, "a write ending at byte " + std::to_string(end) + " is past ext3's file size limit " +
                                        std::to_string(geo_.max_file_size) + " for this block size");
  if (end > 0x7FFFFFFFull && !geo_.large_file)
    return Status::FromErrno(EFBIG, "files past 2 GiB need the large_file feature, which this filesystem lacks");
  const uint64_t old = inode_size(in);
  const uint32_t bs = geo_.block_size;
  if (offset > old) CEXT3_RETURN_IF_ERROR(zero_block_tail(op, ino, in, old));
  uint64_t pos = offset;
  Status failed;
  // Each block's bytes go into its image in the running transaction's
  // write-back set (data_writeback.cpp); the commit writes them in place.
  while (pos < end) {
    const uint64_t lblk = pos / bs;
    const uint32_t boff = uint32_t(pos % bs);
    const uint64_t len = std::min<uint64_t>(bs - boff, end - pos);
    bool fresh = false;
    auto phys = bmap(op, ino, in, lblk, true, &fresh);
    if (!phys.ok()) {
      failed = phys.status();
      break;
    }
    auto img = data_block_for_write(op, *phys, fresh, len == bs);
    if (!img.ok()) {
      failed = img.status().Annotate("writing data of inode " + std::to_string(ino));
      // The block is mapped: cover it by i_size so the map stays valid
      // (a fresh block has its zero-filled image; an old one keeps its bytes).
      pos = std::min(end, (lblk + 1) * bs);
      break;
    }
    std::memcpy(*img + boff, data.data() + (pos - offset), len);
    pos += len;
  }
  if (pos > old) set_inode_size(in, pos);
  in.i_mtime = in.i_ctime = now();
  Status w = write_inode(op, ino, in);
  if (!failed.ok()) return failed;
  return w;
}

Result<Attr> EngineFs::getattr(uint64_t ino) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  Op op(*this);
  op.want_inode(ino, LockMode::kPR);
  Attr a;
  Status s = run_op(op, [&]() -> Status {
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
    if (!inode_in_use(in)) return no_such_inode(ino);
    a = make_attr(ino, in);
    return Status::OK();
  });
  if (!s.ok()) return s;
  return a;
}

Result<size_t> EngineFs::read(uint64_t ino, uint64_t offset, std::span<uint8_t> out) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  Op op(*this);
  op.want_inode(ino, LockMode::kPR);
  size_t got = 0;
  Status s = run_op(op, [&]() -> Status {
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
    if (!inode_in_use(in)) return no_such_inode(ino);
    if (S_ISDIR(in.i_mode)) return Status::FromErrno(EISDIR, "read of directory inode " + std::to_string(ino));
    if (!S_ISREG(in.i_mode)) return Status::FromErrno(EINVAL, "read of a non-regular inode " + std::to_string(ino));
    auto plan = plan_read(op, ino, in, offset, out);
    if (!plan.ok()) return plan.status();
    // The disk reads run without mu_, so other ops go on meanwhile. The
    // file cannot change under them: this op holds its inode's lock in PR,
    // which keeps out writers of every node, this one's included; blocks
    // with an image in the write-back set were copied by plan_read.
    op.release_mu();
    CEXT3_RETURN_IF_ERROR(run_reads(*plan));
    got = plan->bytes;
    return Status::OK();
  });
  if (!s.ok()) return s;
  return got;
}

Result<size_t> EngineFs::write(uint64_t ino, uint64_t offset, std::span<const uint8_t> data) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  if (offset + data.size() < offset || offset + data.size() > geo_.max_file_size)
    return Status::FromErrno(EFBIG, "a write ending past byte " + std::to_string(geo_.max_file_size) +
                                        " is past ext3's file size limit for this block size");
  if (data.empty()) return size_t(0);  // POSIX: a zero-length write changes nothing
  const uint32_t bs = geo_.block_size;
  // One op per chunk keeps each transaction small next to the journal.
  const uint64_t chunk = uint64_t(bs) * kWriteChunkBlocks;
  uint64_t done = 0;
  do {
    const uint64_t pos = offset + done;
    // Chunk ends on a chunk boundary of the file, so chunks stay aligned.
    const uint64_t len = std::min<uint64_t>(data.size() - done, chunk - (pos % chunk));
    Op op(*this);
    op.want_inode(ino, LockMode::kEX);
    op.want_alloc(len / bs + 2 + (len / bs) / geo_.addr_per_block + 3);
    Status s = run_op(op, [&]() -> Status {
      ext2_inode in;
      CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
      if (!inode_in_use(in)) return no_such_inode(ino);
      if (S_ISDIR(in.i_mode)) return Status::FromErrno(EISDIR, "write to directory inode " + std::to_string(ino));
      if (!S_ISREG(in.i_mode)) return Status::FromErrno(EINVAL, "write to a non-regular inode " + std::to_string(ino));
      // As the kernel's ext3: an immutable file (the cluster's own files
      // in /.cext3 among them) is never written; an append-only one only
      // at its end.
      if (in.i_flags & EXT2_IMMUTABLE_FL)
        return Status::FromErrno(EPERM, "inode " + std::to_string(ino) + " is immutable");
      if ((in.i_flags & EXT2_APPEND_FL) && pos != inode_size(in))
        return Status::FromErrno(EPERM, "inode " + std::to_string(ino) + " is append-only");
      return write_data(op, ino, in, pos, data.subspan(done, len));
    });
    if (!s.ok()) return s;
    done += len;
  } while (done < data.size());
  return size_t(data.size());
}

Result<Attr> EngineFs::setattr(uint64_t ino, const SetAttr& ch) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  Op op(*this);
  op.want_inode(ino, LockMode::kEX);
  Attr a;
  Status s = run_op(op, [&]() -> Status {
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
    if (!inode_in_use(in)) return no_such_inode(ino);
    // The kernel refuses every attribute change of an immutable inode and
    // a size change of an append-only one.
    if (in.i_flags & EXT2_IMMUTABLE_FL)
      return Status::FromErrno(EPERM, "inode " + std::to_string(ino) + " is immutable");
    if (ch.size && (in.i_flags & EXT2_APPEND_FL))
      return Status::FromErrno(EPERM, "inode " + std::to_string(ino) + " is append-only");
    if (ch.size) {
      if (S_ISDIR(in.i_mode)) return Status::FromErrno(EISDIR, "truncate of directory inode " + std::to_string(ino));
      if (!S_ISREG(in.i_mode)) return Status::FromErrno(EINVAL, "truncate of a non-regular inode " + std::to_string(ino));
      if (*ch.size > geo_.max_file_size)
        return Status::FromErrno(EFBIG, "size " + std::to_string(*ch.size) + " is past ext3's file size limit");
      if (*ch.size > 0x7FFFFFFFull && !geo_.large_file)
        return Status::FromErrno(EFBIG, "files past 2 GiB need the large_file feature, which this filesystem lacks");
      // Locks for every group that gets blocks back; nothing changed yet.
      if (*ch.size < inode_size(in)) CEXT3_RETURN_IF_ERROR(prepare_truncate(op, ino, in, *ch.size));
    }
    const uint32_t t = now();
    if (ch.mode) in.i_mode = uint16_t((in.i_mode & S_IFMT) | (*ch.mode & 07777));
    if (ch.uid) {
      in.i_uid = uint16_t(*ch.uid & 0xFFFF);
      in.osd2.linux2.l_i_uid_high = uint16_t(*ch.uid >> 16);
    }
    if (ch.gid) {
      in.i_gid = uint16_t(*ch.gid & 0xFFFF);
      in.osd2.linux2.l_i_gid_high = uint16_t(*ch.gid >> 16);
    }
    if (ch.atime) in.i_atime = uint32_t(ch.atime->sec);
    if (ch.mtime) in.i_mtime = uint32_t(ch.mtime->sec);
    in.i_ctime = t;
    if (ch.size) {
      if (!ch.mtime) in.i_mtime = t;
      CEXT3_RETURN_IF_ERROR(truncate(op, ino, in, *ch.size));
    } else {
      CEXT3_RETURN_IF_ERROR(write_inode(op, ino, in));
    }
    a = make_attr(ino, in);
    return Status::OK();
  });
  if (!s.ok()) return s;
  return a;
}

Result<FsStats> EngineFs::statfs() {
  // Folded counts from the descriptors on disk (read under gdt:<block> PR,
  // so other nodes' folds are seen) plus this node's unfolded deltas.
  Op op(*this);
  const uint64_t gdt_blocks = (uint64_t(geo_.groups) + geo_.desc_per_block - 1) / geo_.desc_per_block;
  for (uint64_t i = 0; i < gdt_blocks; ++i) op.want(gdt_key(geo_.gdt_first_block + i), LockMode::kPR);
  FsStats st;
  Status s = run_op(op, [&]() -> Status {
    int64_t free_blocks = 0, free_inodes = 0;
    for (uint64_t i = 0; i < gdt_blocks; ++i) {
      const uint64_t blk = geo_.gdt_first_block + i;
      auto b = read_meta(op, blk, gdt_key(blk));
      if (!b.ok()) return b.status();
      for (uint32_t k = 0; k < geo_.desc_per_block; ++k) {
        const uint64_t g = i * geo_.desc_per_block + k;
        if (g >= geo_.groups) break;
        ext2_group_desc d;
        std::memcpy(&d, *b + k * sizeof(ext2_group_desc), sizeof d);
        GroupInfo& gi = groups_[g];
        gi.base_free_blocks = d.bg_free_blocks_count;
        gi.base_free_inodes = d.bg_free_inodes_count;
        gi.base_used_dirs = d.bg_used_dirs_count;
        free_blocks += gi.base_free_blocks + gi.d_free_blocks;
        free_inodes += gi.base_free_inodes + gi.d_free_inodes;
      }
    }
    st.block_size = geo_.block_size;
    st.blocks = geo_.blocks_count;
    st.free_blocks = uint64_t(std::max<int64_t>(free_blocks, 0));
    st.avail_blocks = st.free_blocks > geo_.reserved_blocks ? st.free_blocks - geo_.reserved_blocks : 0;
    st.inodes = geo_.inodes_count;
    st.free_inodes = uint64_t(std::max<int64_t>(free_inodes, 0));
    st.name_max = EXT2_NAME_LEN;
    return Status::OK();
  });
  if (!s.ok()) return s;
  return st;
}

}  // namespace cext3::engine
