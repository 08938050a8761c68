// RecordingDevice: a BlockDevice wrapper that records every write and flush,
// and can inject I/O errors and a power loss.
//
// It is the front half of crash testing (the way dm-log-writes and
// CrashMonkey test filesystems): code under test runs over a RecordingDevice,
// which forwards every request to the device it wraps and appends each
// completed write (offset, length, data) and each completed flush, in
// completion order, to a record log. crash_states.h turns the base image (the
// device contents before recording began) plus that log into every state the
// disk could have been left in by a crash. docs/RECORD_LOG.md gives the log
// format byte by byte.
//
// Reads are forwarded and never recorded. All calls are thread-safe: writes,
// flushes and batches are serialized by one mutex held across the forwarded
// I/O, so the log order is the order in which the inner device completed them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cext3/block_device.h"

namespace cext3 {

// One entry of a record log.
struct LogRecord {
  enum class Type : uint16_t {
    kWrite = 1,        // applied write: offset, length, data
    kFlush = 2,        // completed flush: a barrier between flush epochs
    kWriteFailed = 3,  // a write that returned an error; its data is not logged
                       // and crash states treat it as never applied
    kFlushFailed = 4,  // a flush that returned an error; not a barrier
    kPowerLoss = 5,    // the injected power loss happened here; nothing follows
  };
  // Set on kWriteFailed/kFlushFailed when the failure was injected by the
  // FaultPlan rather than returned by the inner device.
  static constexpr uint16_t kFlagInjected = 1;
  // Set on the kWrite records of IoRequest::durable writes and on the kFlush
  // that follows them: the recording device makes a durable write durable by
  // writing it and then flushing, so it is logged as write + flush (an epoch
  // boundary). A real device may make only that write durable (FUA); a test
  // can use this flag to check that the code never relied on more (every
  // write of an epoch ended by such a flush is itself durable).
  static constexpr uint16_t kFlagDurable = 2;

  Type type = Type::kWrite;
  uint16_t flags = 0;
  uint64_t seq = 0;     // position in the log, 0-based, counts every record
  uint64_t offset = 0;  // kWrite/kWriteFailed: byte offset on the device
  uint64_t length = 0;  // kWrite/kWriteFailed: byte length
  std::vector<uint8_t> data;  // kWrite only: `length` bytes
};

// A whole record log, parsed (or captured in memory by RecordingDevice).
struct RecordLog {
  uint32_t sector_size = 512;
  uint64_t device_size = 0;
  std::vector<LogRecord> records;
  // The file ended inside a record (the recording process died mid-append):
  // the incomplete record was dropped, every record before it is valid.
  bool truncated_tail = false;
};

namespace record_log {

inline constexpr char kMagic[8] = {'C', 'X', '3', 'R', 'L', 'O', 'G', '\0'};
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kHeaderSize = 64;
inline constexpr uint32_t kRecordMagic = 0x43455252;  // "RREC" little-endian
inline constexpr size_t kRecordHeaderSize = 40;

// CRC-32C (Castagnoli, reflected, init and final xor 0xFFFFFFFF): the check
// used for the header, every record header and every write's data.
uint32_t crc32c(const void* data, size_t len);

// Encode the 64-byte file header / one record (header plus data).
std::vector<uint8_t> encode_header(uint32_t sector_size, uint64_t device_size);
std::vector<uint8_t> encode_record(const LogRecord& rec);

// Parse a whole log. Corruption (bad magic, bad checksum, records out of
// sequence, a write outside the device) is a kCorruption Status naming the
// byte offset; a log cut short inside its last record parses with
// truncated_tail set.
Result<RecordLog> parse(std::span<const uint8_t> bytes, const std::string& name);
Result<RecordLog> read_file(const std::string& path);
// Write a log file (the same bytes RecordingDevice would have produced).
Status write_file(const RecordLog& log, const std::string& path);

}  // namespace record_log

// Faults the recording device injects. Write and flush numbers are 1-based and
// count every valid, non-empty write (inside a batch: each write request, in
// batch order) and every flush that reached the wrapper, including ones that
// failed.
struct FaultPlan {
  // The Nth write returns IoError (EIO): it is not passed to the inner device
  // and is logged as kWriteFailed with kFlagInjected. 0 = never.
  uint64_t fail_write = 0;
  // The Nth flush returns IoError (EIO), is not passed down, and is logged as
  // kFlushFailed with kFlagInjected. 0 = never.
  uint64_t fail_flush = 0;
  // Power loss after N writes: writes 1..N behave normally; as soon as write
  // N has completed one kPowerLoss record is logged, and from then on every
  // write, flush and read returns Status::PowerLoss and nothing more reaches
  // the inner device or the log (the machine is off). Empty = never; 0 = the
  // power is off before the first write.
  std::optional<uint64_t> power_loss_after_writes;
};

struct RecordingOptions {
  // Append the log to this file (created or truncated). Empty: no file log.
  std::string log_path;
  // Also keep the log in memory (RecordingDevice::log()); for in-process tests.
  bool keep_in_memory = false;
  FaultPlan faults;
  // What native_durable_writes() reports (the write path code under test
  // picks). Empty: what the wrapped device reports.
  std::optional<bool> native_durable_writes;
};

class RecordingDevice : public BlockDevice {
 public:
  // Wrap a device the caller keeps alive for the wrapper's lifetime.
  static Result<std::unique_ptr<RecordingDevice>> create(BlockDevice& inner, RecordingOptions opts);
  // Wrap and own a device.
  static Result<std::unique_ptr<RecordingDevice>> create(std::unique_ptr<BlockDevice> inner,
                                                         RecordingOptions opts);
  ~RecordingDevice() override;

  uint64_t size() const override { return inner_->size(); }
  uint32_t sector_size() const override { return inner_->sector_size(); }
  bool read_only() const override { return inner_->read_only(); }
  std::string name() const override { return "recording(" + inner_->name() + ")"; }

  Status read(uint64_t offset, void* buf, size_t len) override;
  Status write(uint64_t offset, const void* buf, size_t len) override;
  // Each write of the batch becomes its own record, in batch order, all in
  // the current flush epoch. The batch reaches the inner device as one
  // submit() holding only the requests the fault plan lets through. If it
  // holds durable writes, they go down as plain writes followed by one
  // inner flush() (counted as a flush by the FaultPlan, which may fail it),
  // logged as their writes (kFlagDurable) and then a kFlush (kFlagDurable).
  Status submit(std::span<IoRequest> batch) override;
  Status flush() override;
  bool native_durable_writes() const override;

  // Change the faults from now on (counters keep running).
  void set_faults(const FaultPlan& faults);
  bool power_lost() const;
  uint64_t writes_seen() const;   // the 1-based counter FaultPlan refers to
  uint64_t flushes_seen() const;
  // A copy of the in-memory log (needs keep_in_memory).
  RecordLog log() const;
  // fdatasync the log file, so it survives a crash of this machine too.
  // Every record is handed to the kernel as soon as it is made, so a killed
  // process loses at most the record it was appending.
  Status sync_log();
  BlockDevice& inner() { return *inner_; }

 private:
  RecordingDevice(BlockDevice* inner, std::unique_ptr<BlockDevice> owned, RecordingOptions opts);
  Status open_log();
  // Both need mu_ held.
  Status append(LogRecord rec, const void* data);
  Status power_off_locked();
  // Count, forward and log one flush (flags go on its record).
  Status flush_locked(uint16_t flags);
  Status powered_off_status() const;

  BlockDevice* inner_;
  std::unique_ptr<BlockDevice> owned_;
  RecordingOptions opts_;
  int log_fd_ = -1;

  mutable std::mutex mu_;
  RecordLog memory_log_;
  uint64_t next_seq_ = 0;
  uint64_t writes_ = 0;
  uint64_t flushes_ = 0;
  std::atomic<bool> power_lost_{false};
  std::atomic<uint64_t> power_lost_after_{0};  // writes_ when the power went off
  // Once appending to the log fails the log no longer matches the device, so
  // every later write and flush fails with this status.
  Status log_error_;
};

}  // namespace cext3
