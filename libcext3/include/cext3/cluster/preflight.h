// Preflight: every reason to refuse an offline change, checked before the
// first write. Each refusal is one operator line: what, why, what to do.
#pragma once

#include <string>

#include "cext3/status.h"

namespace cext3::cluster {

// Refuse a device the kernel has mounted, directly or through a loop device
// whose backing file is `path` (/proc/mounts, /sys/block/loop*/loop/backing_file,
// libext2fs's mount check). Busy if so; NotFound if the path does not exist.
Status check_not_in_use(const std::string& path);

// The ext3 feature set clusterify accepts: exactly what `mke2fs -t ext3`
// makes (has_journal ext_attr resize_inode dir_index filetype sparse_super
// large_file) plus the harmless dir_prealloc/imagic_inodes. Anything else is
// named in the refusal.
inline constexpr uint32_t kAcceptedCompat = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 | 0x0020;
inline constexpr uint32_t kAcceptedRoCompat = 0x0001 | 0x0002;
inline constexpr uint32_t kAcceptedIncompat = 0x0002;  // filetype

// Names of the feature bits in `bits` of the given kind (0 compat,
// 1 ro_compat, 2 incompat), space separated, "FEATURE_C12" for unknown ones.
std::string feature_names(int kind, uint32_t bits);

}  // namespace cext3::cluster
