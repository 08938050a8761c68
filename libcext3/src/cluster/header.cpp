#include "cext3/cluster/header.h"

#include <cstring>

#include "cext3/cluster/crc32c.h"
#include "cext3/cluster/layout.h"
#include "cluster/le_bytes.h"

namespace cext3::cluster {

const char* to_string(SystemFileKind k) {
  switch (k) {
    case SystemFileKind::kCluster: return "cluster";
    case SystemFileKind::kHeartbeat: return "heartbeat";
    case SystemFileKind::kLocks: return "locks";
    case SystemFileKind::kJournal: return "journal";
  }
  return "unknown";
}

const char* to_string(GroupPolicy p) {
  return p == GroupPolicy::kBalanced ? "balanced" : "contiguous";
}

const SystemFileExtent* ClusterHeader::find(SystemFileKind kind, uint32_t index) const {
  for (const auto& f : files)
    if (f.kind == kind && f.index == index) return &f;
  return nullptr;
}

uint32_t header_encoded_bytes(uint32_t system_files, uint32_t groups) {
  // The group map is padded to 4 bytes so the CRC is 4-byte aligned.
  uint32_t map = (2 * groups + 3) / 4 * 4;
  return kHeaderFixedBytes + kSystemFileEntryBytes * system_files + map + 4;
}

uint32_t header_copy_size(uint32_t system_files, uint32_t groups, uint32_t block_size) {
  uint32_t n = header_encoded_bytes(system_files, groups);
  return (n + block_size - 1) / block_size * block_size;
}

Result<std::vector<uint8_t>> encode_header(const ClusterHeader& h, uint32_t copy_size) {
  const uint32_t groups = static_cast<uint32_t>(h.group_slot.size());
  const uint32_t used = header_encoded_bytes(static_cast<uint32_t>(h.files.size()), groups);
  if (copy_size < used)
    return Status::InvalidArgument("cluster header needs " + std::to_string(used) +
                                   " bytes but the copy holds " + std::to_string(copy_size));
  std::vector<uint8_t> b(copy_size, 0);
  uint8_t* p = b.data();
  std::memcpy(p, kHeaderMagic, 8);
  put_le32(p + 8, h.version);
  put_le32(p + 12, used);
  put_le64(p + 16, h.generation);
  std::memcpy(p + 24, h.uuid.data(), 16);
  put_le32(p + 40, h.slot_count);
  put_le32(p + 44, groups);
  put_le32(p + 48, h.block_size);
  put_le32(p + 52, static_cast<uint32_t>(h.policy));
  put_le64(p + 56, h.blocks_count);
  put_le32(p + 64, h.timing.heartbeat_interval_ms);
  put_le32(p + 68, h.timing.io_timeout_ms);
  put_le32(p + 72, h.timing.dead_after_ms);
  put_le32(p + 76, h.timing.fence_margin_ms);
  put_le32(p + 80, h.system_dir_inode);
  put_le32(p + 84, static_cast<uint32_t>(h.files.size()));
  uint8_t* e = p + kHeaderFixedBytes;
  for (const auto& f : h.files) {
    put_le32(e, static_cast<uint32_t>(f.kind));
    put_le32(e + 4, f.index);
    put_le32(e + 8, f.inode);
    put_le64(e + 16, f.first_block);
    put_le64(e + 24, f.block_count);
    e += kSystemFileEntryBytes;
  }
  for (uint32_t g = 0; g < groups; ++g) put_le16(e + 2 * g, h.group_slot[g]);
  put_le32(p + used - 4, crc32c(p, used - 4));
  return b;
}

Result<ClusterHeader> decode_header(std::span<const uint8_t> copy) {
  if (copy.size() < kHeaderFixedBytes + 4) return Status::Corruption("cluster header copy is too short");
  const uint8_t* p = copy.data();
  if (std::memcmp(p, kHeaderMagic, 8) != 0) return Status::Corruption("cluster header magic is wrong");
  ClusterHeader h;
  h.version = get_le32(p + 8);
  if (h.version != kFormatVersion)
    return Status::NotSupported("cluster header format version " + std::to_string(h.version) +
                                " is not supported (this build reads version " +
                                std::to_string(kFormatVersion) + ")");
  const uint32_t used = get_le32(p + 12);
  const uint32_t groups = get_le32(p + 44);
  const uint32_t nfiles = get_le32(p + 84);
  if (nfiles > 4 * kMaxSlots || groups > (1u << 24) || used > copy.size() ||
      used != header_encoded_bytes(nfiles, groups))
    return Status::Corruption("cluster header length " + std::to_string(used) + " is inconsistent");
  const uint32_t want = get_le32(p + used - 4);
  const uint32_t got = crc32c(p, used - 4);
  if (want != got) return Status::Corruption("cluster header checksum mismatch");
  h.generation = get_le64(p + 16);
  std::memcpy(h.uuid.data(), p + 24, 16);
  h.slot_count = get_le32(p + 40);
  h.block_size = get_le32(p + 48);
  const uint32_t policy = get_le32(p + 52);
  if (policy > 1) return Status::Corruption("cluster header group policy " + std::to_string(policy) + " is unknown");
  h.policy = static_cast<GroupPolicy>(policy);
  h.blocks_count = get_le64(p + 56);
  h.timing.heartbeat_interval_ms = get_le32(p + 64);
  h.timing.io_timeout_ms = get_le32(p + 68);
  h.timing.dead_after_ms = get_le32(p + 72);
  h.timing.fence_margin_ms = get_le32(p + 76);
  h.system_dir_inode = get_le32(p + 80);
  const uint8_t* e = p + kHeaderFixedBytes;
  for (uint32_t i = 0; i < nfiles; ++i, e += kSystemFileEntryBytes) {
    SystemFileExtent f;
    uint32_t kind = get_le32(e);
    if (kind < 1 || kind > 4) return Status::Corruption("cluster header lists an unknown system file kind");
    f.kind = static_cast<SystemFileKind>(kind);
    f.index = get_le32(e + 4);
    f.inode = get_le32(e + 8);
    f.first_block = get_le64(e + 16);
    f.block_count = get_le64(e + 24);
    h.files.push_back(f);
  }
  h.group_slot.resize(groups);
  for (uint32_t g = 0; g < groups; ++g) h.group_slot[g] = get_le16(e + 2 * g);
  return h;
}

Result<HeaderChoice> choose_header(std::span<const uint8_t> file) {
  if (file.size() < 2 * (kHeaderFixedBytes + 4) || file.size() % 2 != 0)
    return Status::Corruption("cluster file has an impossible size " + std::to_string(file.size()));
  const size_t half = file.size() / 2;
  auto a = decode_header(file.subspan(0, half));
  auto b = decode_header(file.subspan(half, half));
  HeaderChoice c;
  c.a_valid = a.ok();
  c.b_valid = b.ok();
  if (!a.ok()) c.a_error = a.status().message();
  if (!b.ok()) c.b_error = b.status().message();
  if (!a.ok() && !b.ok())
    return Status::Corruption("both cluster header copies are invalid (A: " + c.a_error +
                              "; B: " + c.b_error + ")");
  if (a.ok() && (!b.ok() || a->generation >= b->generation)) {
    c.header = std::move(a).value();
    c.current = 0;
  } else {
    c.header = std::move(b).value();
    c.current = 1;
  }
  return c;
}

}  // namespace cext3::cluster
