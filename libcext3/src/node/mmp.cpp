#include "cext3/node/mmp.h"

#include <algorithm>
#include <cstring>

#include "cext3/node/fence.h"
#include "cluster/le_bytes.h"

namespace cext3::node {
namespace {

using cluster::get_le32;
using cluster::get_le64;
using cluster::put_le32;
using cluster::put_le64;

// struct mmp_struct (ext4): fields this code reads or writes.
constexpr size_t kMagicOff = 0;
constexpr size_t kSeqOff = 4;
constexpr size_t kTimeOff = 8;
constexpr size_t kNodeOff = 16;
constexpr size_t kNodeBytes = 64;
constexpr size_t kBdevOff = 80;
constexpr size_t kBdevBytes = 32;

std::string fixed_string(const uint8_t* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != 0) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

void put_fixed(uint8_t* p, size_t n, const std::string& s) {
  std::memset(p, 0, n);
  std::memcpy(p, s.data(), std::min(s.size(), n - 1));
}

// The whole MMP block: ext4 reads and writes it as one block, so do we.
Result<AlignedBuffer> read_block(ClusterDisk& disk) {
  AlignedBuffer b(disk.block_size());
  CEXT3_RETURN_IF_ERROR(disk.device().read(disk.mmp_offset(), b.data(), b.size()).Annotate("reading the MMP block"));
  if (get_le32(b.data() + kMagicOff) != kMmpMagic)
    return Status::Corruption(disk.device().name() + ": the MMP block does not carry the MMP magic; run `clusterify verify`");
  return b;
}

MmpState decode(const AlignedBuffer& b) {
  MmpState m;
  m.magic = get_le32(b.data() + kMagicOff);
  m.sequence = get_le32(b.data() + kSeqOff);
  m.time = get_le64(b.data() + kTimeOff);
  m.node_name = fixed_string(b.data() + kNodeOff, kNodeBytes);
  m.device_name = fixed_string(b.data() + kBdevOff, kBdevBytes);
  return m;
}

Status write_block(ClusterDisk& disk, AlignedBuffer& b, uint32_t seq, const std::string* node_name) {
  put_le32(b.data() + kSeqOff, seq);
  put_le64(b.data() + kTimeOff, realtime_ns() / 1000000000ull);
  if (node_name) {
    put_fixed(b.data() + kNodeOff, kNodeBytes, *node_name);
    std::string dev = disk.device().name();
    if (dev.size() >= kBdevBytes) dev = dev.substr(dev.size() - (kBdevBytes - 1));  // keep the tail: the file name
    put_fixed(b.data() + kBdevOff, kBdevBytes, dev);
  }
  // No checksum to maintain: mmp_checksum is used only with metadata_csum,
  // which ext3 never has.
  CEXT3_RETURN_IF_ERROR(disk.device().write(disk.mmp_offset(), b.data(), b.size()).Annotate("writing the MMP block"));
  return disk.device().flush().Annotate("writing the MMP block");
}

}  // namespace

Result<MmpState> read_mmp(ClusterDisk& disk) {
  if (!disk.has_mmp()) return MmpState{};
  auto b = read_block(disk);
  if (!b.ok()) return b.status();
  return decode(*b);
}

Status mark_mmp_in_use(ClusterDisk& disk, const std::string& node_name) {
  if (!disk.has_mmp()) return Status::OK();
  auto b = read_block(disk);
  if (!b.ok()) return b.status();
  if (get_le32(b->data() + kSeqOff) == kMmpSeqFsck) return Status::OK();
  const std::string name = "cext3:" + node_name;
  return write_block(disk, *b, kMmpSeqFsck, &name);
}

Status mark_mmp_clean(ClusterDisk& disk) {
  if (!disk.has_mmp()) return Status::OK();
  auto b = read_block(disk);
  if (!b.ok()) return b.status();
  if (get_le32(b->data() + kSeqOff) == kMmpSeqClean) return Status::OK();
  return write_block(disk, *b, kMmpSeqClean, nullptr);
}

}  // namespace cext3::node
