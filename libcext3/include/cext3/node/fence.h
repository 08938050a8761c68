// Self-fencing: a node that cannot prove it still holds its slot stops
// writing to the shared disk before its peers may declare it dead.
//
// The timing equation (docs/DESIGN.md, "Membership and fencing"): a heartbeat
// write submitted at local monotonic time t_s that completes within the I/O
// timeout renews the node's write permission until t_s + fence_window, where
// fence_window = dead_after - fence_margin. A peer that observes that record
// change at t_obs >= t_s declares the node dead no earlier than
// t_obs + dead_after >= deadline + fence_margin. So by the time anyone
// recovers the node's journal, every write the node issues is refused here.
//
// Every write path of a node goes through a FencedDevice sharing one FenceGate:
// the check is made before each write or flush is submitted. Once fenced, a
// gate never reopens; the node must exit and start again under a new
// generation.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "cext3/block_device.h"
#include "cext3/status.h"

namespace cext3::node {

// CLOCK_MONOTONIC in ns. It keeps running while the process is stopped
// (SIGSTOP), which is what makes a resumed node see its deadline passed.
uint64_t monotonic_ns();
uint64_t realtime_ns();

class FenceGate {
 public:
  FenceGate() = default;
  FenceGate(const FenceGate&) = delete;
  FenceGate& operator=(const FenceGate&) = delete;

  // Writes are allowed until this monotonic time. Deadlines only move forward.
  void renew(uint64_t deadline_mono_ns);
  uint64_t deadline_mono_ns() const { return deadline_.load(); }
  // Close the gate for good (heartbeat failed, lease lost, shutdown race...).
  void fence(const std::string& why);
  bool fenced() const { return fenced_.load(); }
  std::string reason() const;
  // OK while not fenced and monotonic_ns() < deadline; otherwise fences the
  // gate (if not yet) and returns Status::Fenced naming the reason.
  // A gate never renewed (deadline 0: no slot claimed yet) refuses with
  // Fenced too but does not latch, so claim_slot can still open it.
  Status check();

 private:
  std::atomic<uint64_t> deadline_{0};
  std::atomic<bool> fenced_{false};
  mutable std::mutex mu_;
  std::string reason_;
};

// A BlockDevice that passes reads through and admits a write, a batch with
// writes, or a flush only after gate.check() succeeds.
class FencedDevice : public BlockDevice {
 public:
  FencedDevice(BlockDevice& inner, FenceGate& gate) : inner_(inner), gate_(gate) {}
  uint64_t size() const override { return inner_.size(); }
  uint32_t sector_size() const override { return inner_.sector_size(); }
  bool read_only() const override { return inner_.read_only(); }
  std::string name() const override { return inner_.name(); }
  // Durable writes pass the same gate check as any write, then go to the
  // inner device, which may implement them natively (RWF_DSYNC, NBD FUA).
  bool native_durable_writes() const override { return inner_.native_durable_writes(); }
  Status read(uint64_t offset, void* buf, size_t len) override;
  Status write(uint64_t offset, const void* buf, size_t len) override;
  Status submit(std::span<IoRequest> batch) override;
  Status flush() override;

 private:
  BlockDevice& inner_;
  FenceGate& gate_;
};

}  // namespace cext3::node
