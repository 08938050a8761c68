#include "device.h"

#include "cext3/cluster/preflight.h"
#include "cext3/file_device.h"
#include "cext3/nbd_device.h"
#include "cext3/recording_device.h"

#include <cstdlib>

namespace clusterify {
namespace {

cext3::Result<std::unique_ptr<cext3::BlockDevice>> open_any(const std::string& spec, const cext3::OpenOptions& o) {
  if (cext3::is_nbd_uri(spec)) return cext3::open_nbd_device(spec, o);
  return cext3::open_file_device(spec, o);
}

}  // namespace

cext3::Result<std::unique_ptr<cext3::BlockDevice>> open_device_for_change(const std::string& spec, bool read_only) {
  if (!cext3::is_nbd_uri(spec)) {
    cext3::Status s = cext3::cluster::check_not_in_use(spec);
    if (!s.ok()) return s;
  }
  cext3::OpenOptions o;
  o.read_only = read_only;
  o.exclusive = !read_only;
  auto dev = open_any(spec, o);
  // Crash-state testing: CEXT3_RECORD_LOG=FILE records every write and flush
  // of the change (docs/RECORD_LOG.md) for cext3-crashstate to replay.
  const char* log = std::getenv("CEXT3_RECORD_LOG");
  if (!dev.ok() || read_only || !log || !*log) return dev;
  cext3::RecordingOptions ro;
  ro.log_path = log;
  auto rec = cext3::RecordingDevice::create(std::move(dev).value(), ro);
  if (!rec.ok()) return rec.status();
  return std::unique_ptr<cext3::BlockDevice>(std::move(rec).value());
}

cext3::Result<std::unique_ptr<cext3::BlockDevice>> open_device_read_only(const std::string& spec) {
  if (!cext3::is_nbd_uri(spec)) {
    // Reports work on mounted devices too, but a missing path is still an error.
    cext3::Status s = cext3::cluster::check_not_in_use(spec);
    if (!s.ok() && s.code() == cext3::Status::Code::kNotFound) return s;
  }
  cext3::OpenOptions o;
  o.read_only = true;
  return open_any(spec, o);
}

}  // namespace clusterify
