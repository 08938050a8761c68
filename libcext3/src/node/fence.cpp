#include "cext3/node/fence.h"

#include <time.h>

namespace cext3::node {
namespace {

uint64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::string ms_string(uint64_t ns) { return std::to_string(ns / 1000000) + " ms"; }

}  // namespace

uint64_t monotonic_ns() { return clock_ns(CLOCK_MONOTONIC); }
uint64_t realtime_ns() { return clock_ns(CLOCK_REALTIME); }

void FenceGate::renew(uint64_t deadline_mono_ns) {
  // A fenced gate never reopens; checking before the CAS keeps renew() cheap,
  // and check() looks at fenced_ first, so a late renew cannot undo a fence.
  if (fenced_.load()) return;
  uint64_t cur = deadline_.load();
  while (deadline_mono_ns > cur && !deadline_.compare_exchange_weak(cur, deadline_mono_ns)) {
  }
}

void FenceGate::fence(const std::string& why) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fenced_.load()) return;  // keep the first reason: it is the cause
  reason_ = why;
  fenced_.store(true);
}

std::string FenceGate::reason() const {
  std::lock_guard<std::mutex> lk(mu_);
  return reason_;
}

Status FenceGate::check() {
  if (fenced_.load())
    return Status::Fenced("write refused: this node is fenced (" + reason() +
                          "); restart jcoord so it rejoins under a new generation");
  const uint64_t deadline = deadline_.load();
  if (deadline == 0)
    // Never renewed: the node holds no slot yet. Refuse, but do not latch:
    // a claim renews the gate before its first write.
    return Status::Fenced("write refused: this node holds no slot lease yet; claim a slot first");
  const uint64_t now = monotonic_ns();
  if (now < deadline) return Status::OK();
  fence("heartbeat not renewed in time: the write permission expired " + ms_string(now - deadline) + " ago");
  return Status::Fenced("write refused: this node is fenced (" + reason() +
                        "); restart jcoord so it rejoins under a new generation");
}

Status FencedDevice::read(uint64_t offset, void* buf, size_t len) { return inner_.read(offset, buf, len); }

Status FencedDevice::write(uint64_t offset, const void* buf, size_t len) {
  CEXT3_RETURN_IF_ERROR(gate_.check());
  return inner_.write(offset, buf, len);
}

Status FencedDevice::submit(std::span<IoRequest> batch) {
  for (const IoRequest& r : batch)
    if (r.op == IoRequest::Op::kWrite) {
      CEXT3_RETURN_IF_ERROR(gate_.check());
      break;
    }
  return inner_.submit(batch);
}

Status FencedDevice::flush() {
  CEXT3_RETURN_IF_ERROR(gate_.check());
  return inner_.flush();
}

}  // namespace cext3::node
