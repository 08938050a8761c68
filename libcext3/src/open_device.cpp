// open_block_device(): pick the backend from the name the operator typed.
#include "cext3/block_device.h"
#include "cext3/file_device.h"
#include "cext3/nbd_device.h"

namespace cext3 {

Result<std::unique_ptr<BlockDevice>> open_block_device(const std::string& spec,
                                                       const OpenOptions& opts) {
  if (spec.empty()) {
    return Status::InvalidArgument("no device given: name an image file, a block device or an nbd:// URI");
  }
  if (is_nbd_uri(spec)) return open_nbd_device(spec, opts);
  return open_file_device(spec, opts);
}

}  // namespace cext3
