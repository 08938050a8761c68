// Refusals that depend on the filesystem's superblock: the ext3 feature set,
// the journal, the clean state. Used by every offline change.
#pragma once

#include <string>

#include "cext3/status.h"

typedef struct struct_ext2_filsys* ext2_filsys;

namespace cext3::cluster {

// For convert: a clean ext3 with an internal journal and only accepted
// features, no orphans, nothing to recover.
Status check_plain_ext3_convertible(ext2_filsys fs, const std::string& device);

// For revert / slots on a cext3 filesystem: the same state checks, with mmp
// allowed.
Status check_cluster_fs_offline_ready(ext2_filsys fs, const std::string& device);

}  // namespace cext3::cluster
