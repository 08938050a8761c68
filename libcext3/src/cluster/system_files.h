// Creating, finding and removing the contiguous system files under /.cext3,
// and reading/writing the cluster header through libext2fs. Private to the
// cluster units (convert, revert, slots, inspect).
#pragma once

#include <ext2fs/ext2fs.h>

#include <optional>
#include <string>
#include <vector>

#include "cext3/cluster/header.h"
#include "cext3/status.h"

namespace cext3::cluster {

// Metadata blocks ext3 needs to map `data_blocks` blocks (indirect, double
// and triple indirect blocks).
uint64_t indirect_blocks_for(uint64_t data_blocks, uint32_t block_size);

// Sizes of the fixed-size system files (in blocks). heartbeat and locks are
// sized for kMaxSlots so that a slot-count change never moves them.
uint64_t cluster_file_blocks(uint32_t groups, uint32_t block_size);
uint32_t cluster_copy_size(uint32_t groups, uint32_t block_size);
uint64_t heartbeat_file_blocks(uint32_t block_size);
uint64_t locks_file_blocks(uint32_t block_size);

// Create /.cext3 (mode 0700, immutable). Returns its inode.
Result<ext2_ino_t> create_system_dir(ext2_filsys fs);
// Find /.cext3; nullopt when absent.
Result<std::optional<ext2_ino_t>> find_system_dir(ext2_filsys fs);

// Create regular file `name` in `dir` whose `nblocks` data blocks are one
// contiguous run (searched from `goal`), immutable, mode 0600, size
// nblocks * block size. Content is whatever the blocks held: the caller
// writes it. NoSpace if no free run is long enough.
Result<SystemFileExtent> create_contiguous_file(ext2_filsys fs, ext2_ino_t dir, const std::string& name,
                                                uint64_t nblocks, blk64_t goal, SystemFileKind kind,
                                                uint32_t index);

// Remove file `name` (inode `ino`) from `dir`, freeing its blocks and inode.
Status remove_file(ext2_filsys fs, ext2_ino_t dir, const std::string& name, ext2_ino_t ino);
// Remove the (empty) system directory.
Status remove_system_dir(ext2_filsys fs, ext2_ino_t dir);

// The entries of directory `dir` other than "." and "..".
Result<std::vector<std::pair<std::string, ext2_ino_t>>> list_dir(ext2_filsys fs, ext2_ino_t dir);
// Remove the empty orphan directory `name` (inode `ino`, made by the engine
// as /.cext3/orphan.NN) from the system directory `sysdir`.
Status remove_orphan_dir(ext2_filsys fs, ext2_ino_t sysdir, const std::string& name, ext2_ino_t ino);

// Check that inode `ino` is a regular file whose data blocks are exactly the
// run [first, first+count) in order and whose size is count blocks.
Status check_contiguous(ext2_filsys fs, ext2_ino_t ino, uint64_t first, uint64_t count);

// Read the whole cluster file and pick the current header copy.
Result<HeaderChoice> read_cluster_header(ext2_filsys fs, const SystemFileExtent& cluster_file);
// Locate /.cext3/cluster by name and read it (for a filesystem whose
// header is not yet known).
struct LocatedCluster {
  ext2_ino_t dir = 0;
  ext2_ino_t cluster_ino = 0;
  SystemFileExtent cluster_file;
  HeaderChoice choice;
};
Result<LocatedCluster> locate_cluster(ext2_filsys fs);

// Write header `h` into copy `which` (0 = A, 1 = B) of the cluster file.
Status write_header_copy(ext2_filsys fs, const SystemFileExtent& cluster_file, const ClusterHeader& h,
                         int which);

// Write empty heartbeat records for kMaxSlots slots, and the locks file
// (global record + kMaxSlots free slot records).
Status write_empty_heartbeats(ext2_filsys fs, const SystemFileExtent& f);
Status write_initial_locks(ext2_filsys fs, const SystemFileExtent& f, uint32_t slot_count);

// Free blocks per slot from the group descriptors.
std::vector<uint64_t> free_blocks_per_slot(ext2_filsys fs, const std::vector<uint16_t>& group_slot,
                                           uint32_t slots);

}  // namespace cext3::cluster
