// The cluster header: what the `cluster` system file holds.
//
// Two copies, A at file offset 0 and B at offset copy_size (the file is
// exactly 2 * copy_size bytes). Each copy ends in a CRC-32C over everything
// before it. A reader takes the valid copy with the higher generation; a
// writer overwrites the copy that is NOT current with generation + 1, flushes,
// and only then may touch the other. So a torn write can only damage the copy
// being written, and the other one stays valid: updates are atomic.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cext3/status.h"

namespace cext3::cluster {

inline constexpr char kHeaderMagic[8] = {'C', 'E', 'X', 'T', '3', 'C', 'L', 'U'};
inline constexpr uint32_t kFormatVersion = 1;
// Fixed part of the header before the system-file table.
inline constexpr uint32_t kHeaderFixedBytes = 128;
inline constexpr uint32_t kSystemFileEntryBytes = 32;

enum class SystemFileKind : uint32_t {
  kCluster = 1,
  kHeartbeat = 2,
  kLocks = 3,
  kJournal = 4,  // index = slot
};
const char* to_string(SystemFileKind k);

enum class GroupPolicy : uint32_t {
  kContiguous = 0,  // slot i owns one contiguous run of groups
  kBalanced = 1,    // group g belongs to slot g mod N (spread over the disk)
};
const char* to_string(GroupPolicy p);

// A system file: its inode and the one contiguous block run it occupies.
struct SystemFileExtent {
  SystemFileKind kind = SystemFileKind::kCluster;
  uint32_t index = 0;  // slot number for journals, 0 otherwise
  uint32_t inode = 0;
  uint64_t first_block = 0;
  uint64_t block_count = 0;
  bool operator==(const SystemFileExtent&) const = default;
};

// Timing parameters every node of the cluster must agree on; stored here so
// they cannot differ between nodes.
struct Timing {
  // Defaults detect a dead node within dead_after + one interval = 2.9 s
  // (the product's goal is <= 3 s) while a node may miss 4 heartbeats in a
  // row before it fences itself (fence window = dead_after - margin = 1.8 s).
  // The margin must cover the I/O timeout: a write admitted just before the
  // deadline may still land up to io_timeout later.
  uint32_t heartbeat_interval_ms = 400;   // a node writes its record this often
  uint32_t io_timeout_ms = 700;           // a heartbeat write slower than this counts as failed
  uint32_t dead_after_ms = 2500;          // peers declare a node dead after no update for this long
  uint32_t fence_margin_ms = 700;         // extra wait past the fence deadline before recovery
  bool operator==(const Timing&) const = default;
};

struct ClusterHeader {
  uint32_t version = kFormatVersion;
  uint64_t generation = 1;
  std::array<uint8_t, 16> uuid{};
  uint32_t slot_count = 0;
  uint32_t block_size = 0;
  uint64_t blocks_count = 0;  // filesystem size in blocks when written
  GroupPolicy policy = GroupPolicy::kContiguous;
  Timing timing;
  uint32_t system_dir_inode = 0;
  std::vector<SystemFileExtent> files;
  std::vector<uint16_t> group_slot;  // group number -> slot

  const SystemFileExtent* find(SystemFileKind kind, uint32_t index = 0) const;
  bool operator==(const ClusterHeader&) const = default;
};

// Bytes one encoded copy needs (before rounding up to copy_size).
uint32_t header_encoded_bytes(uint32_t system_files, uint32_t groups);
// Size of one copy: the encoded size rounded up to a whole number of blocks.
uint32_t header_copy_size(uint32_t system_files, uint32_t groups, uint32_t block_size);

// Encode into exactly copy_size bytes (zero padded, CRC in the last 4 bytes
// of the used region). copy_size must be >= header_encoded_bytes().
Result<std::vector<uint8_t>> encode_header(const ClusterHeader& h, uint32_t copy_size);
// Decode one copy; Corruption if the magic, length or CRC is wrong.
Result<ClusterHeader> decode_header(std::span<const uint8_t> copy);

// Which copy is current: the valid one with the higher generation.
struct HeaderChoice {
  ClusterHeader header;
  int current = 0;       // 0 = A, 1 = B
  bool a_valid = false;
  bool b_valid = false;
  std::string a_error, b_error;
};
// `file` is the whole cluster file (2 * copy_size bytes).
Result<HeaderChoice> choose_header(std::span<const uint8_t> file);

}  // namespace cext3::cluster
