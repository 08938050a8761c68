#include "cext3/overlay_device.h"

#include <cstring>

namespace cext3 {

OverlayDevice::OverlayDevice(BlockDevice& base) : base_(base) {}

Status OverlayDevice::read(uint64_t offset, void* buf, size_t len) {
  CEXT3_RETURN_IF_ERROR(check_range(offset, len));
  if (len == 0) return Status::OK();
  const uint32_t ss = sector_size();
  const uint64_t first = offset / ss, end = (offset + len) / ss;
  auto* out = static_cast<uint8_t*>(buf);
  auto it = dirty_.lower_bound(first);
  // Fully covered by the overlay: skip the base read entirely.
  bool all_dirty = true;
  {
    auto j = it;
    for (uint64_t s = first; s < end; ++s, ++j)
      if (j == dirty_.end() || j->first != s) { all_dirty = false; break; }
  }
  if (!all_dirty) CEXT3_RETURN_IF_ERROR(base_.read(offset, buf, len));
  for (; it != dirty_.end() && it->first < end; ++it)
    std::memcpy(out + (it->first - first) * ss, it->second.data(), ss);
  return Status::OK();
}

Status OverlayDevice::write(uint64_t offset, const void* buf, size_t len) {
  CEXT3_RETURN_IF_ERROR(check_range(offset, len));
  const uint32_t ss = sector_size();
  const auto* in = static_cast<const uint8_t*>(buf);
  for (size_t done = 0; done < len; done += ss) {
    auto& sec = dirty_[(offset + done) / ss];
    sec.assign(in + done, in + done + ss);
  }
  return Status::OK();
}

std::vector<uint64_t> OverlayDevice::dirty_units(uint32_t unit) const {
  std::vector<uint64_t> out;
  const uint32_t ss = sector_size();
  for (const auto& [sector, data] : dirty_) {
    uint64_t u = sector * ss / unit * unit;
    if (out.empty() || out.back() != u) out.push_back(u);
  }
  return out;
}

}  // namespace cext3
