// Names and fixed sizes of the cext3 cluster metadata inside an ext3
// filesystem. Byte layouts are documented in docs/FORMAT.md.
#pragma once

#include <cstdint>
#include <string>

namespace cext3::cluster {

// The hidden system directory in the root, and the files inside it.
inline constexpr const char* kSystemDirName = ".cext3";
inline constexpr const char* kClusterFileName = "cluster";
inline constexpr const char* kHeartbeatFileName = "heartbeat";
inline constexpr const char* kLocksFileName = "locks";
// journal.00, journal.01, ...
std::string journal_file_name(uint32_t slot);
// orphan.00, orphan.01, ...: a slot's orphan directory (docs/FORMAT.md),
// made by the engine at its first mount of the slot. Entries are named by
// inode number: inodes unlinked while still open somewhere.
std::string orphan_dir_name(uint32_t slot);
// The slot whose orphan directory `name` is, or -1.
int orphan_dir_slot(const std::string& name);

// Limits. 255 slots like OCFS2; a slot number fits one byte everywhere.
inline constexpr uint32_t kMaxSlots = 255;
// Every heartbeat and lock record is one 512-byte sector so a single
// O_DIRECT write updates it atomically on any disk (512e or 4Kn sectors are
// a multiple of it).
inline constexpr uint32_t kRecordSize = 512;

}  // namespace cext3::cluster
