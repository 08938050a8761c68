// Opening the device named on the command line.
#pragma once

#include <memory>
#include <string>

#include "cext3/block_device.h"

namespace clusterify {

// For an offline change: refuse a mounted device (before anything else),
// then open it read-write and exclusive (O_EXCL on block devices). With
// `read_only` (dry runs) it is opened read-only.
cext3::Result<std::unique_ptr<cext3::BlockDevice>> open_device_for_change(const std::string& spec, bool read_only);
// For reports: read-only, not exclusive.
cext3::Result<std::unique_ptr<cext3::BlockDevice>> open_device_read_only(const std::string& spec);

int fail(const std::string& cmd, const cext3::Status& s);

}  // namespace clusterify
