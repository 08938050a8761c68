// RecordingDevice and the record-log format (docs/RECORD_LOG.md).
#include "cext3/recording_device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <utility>

namespace cext3 {

// ------------------------------------------------------------------ format

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

void put16(uint8_t* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The 40-byte record header; data_crc covers the data that follows it.
std::array<uint8_t, record_log::kRecordHeaderSize> encode_record_header(const LogRecord& rec,
                                                                        uint32_t data_crc) {
  std::array<uint8_t, record_log::kRecordHeaderSize> h{};
  put32(&h[0], record_log::kRecordMagic);
  put16(&h[4], static_cast<uint16_t>(rec.type));
  put16(&h[6], rec.flags);
  put64(&h[8], rec.seq);
  put64(&h[16], rec.offset);
  put64(&h[24], rec.length);
  put32(&h[32], data_crc);
  put32(&h[36], record_log::crc32c(h.data(), 36));
  return h;
}

bool valid_type(uint16_t t) { return t >= 1 && t <= 5; }

Status write_all(int fd, const struct iovec* iov_in, int n, const std::string& path) {
  std::array<struct iovec, 4> iov{};
  for (int i = 0; i < n; ++i) iov[i] = iov_in[i];
  int first = 0;
  while (first < n) {
    ssize_t w = ::writev(fd, &iov[first], n - first);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "appending to record log " + path +
                                          " (check free space and permissions)");
    }
    size_t left = static_cast<size_t>(w);
    while (first < n && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < n) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return Status::OK();
}

}  // namespace

namespace record_log {

uint32_t crc32c(const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < len; ++i) c = kCrc32cTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::vector<uint8_t> encode_header(uint32_t sector_size, uint64_t device_size) {
  std::vector<uint8_t> h(kHeaderSize, 0);
  std::memcpy(h.data(), kMagic, sizeof kMagic);
  put32(&h[8], kVersion);
  put32(&h[12], static_cast<uint32_t>(kHeaderSize));
  put32(&h[16], sector_size);
  put32(&h[20], static_cast<uint32_t>(kRecordHeaderSize));
  put64(&h[24], device_size);
  put32(&h[60], crc32c(h.data(), 60));
  return h;
}

std::vector<uint8_t> encode_record(const LogRecord& rec) {
  const bool has_data = rec.type == LogRecord::Type::kWrite;
  uint32_t dcrc = has_data ? crc32c(rec.data.data(), rec.data.size()) : 0;
  LogRecord head = rec;  // the header's length is the data actually written
  head.data.clear();
  if (has_data) head.length = rec.data.size();
  auto h = encode_record_header(head, dcrc);
  std::vector<uint8_t> out(h.size() + (has_data ? rec.data.size() : 0));
  std::memcpy(out.data(), h.data(), h.size());
  if (has_data && !rec.data.empty()) std::memcpy(out.data() + h.size(), rec.data.data(), rec.data.size());
  return out;
}

Result<RecordLog> parse(std::span<const uint8_t> bytes, const std::string& name) {
  auto corrupt = [&](uint64_t at, const std::string& why) {
    return Status::Corruption(name + ": record log is damaged at byte " + std::to_string(at) + ": " +
                              why + "; record the run again");
  };
  if (bytes.size() < kHeaderSize || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return Status::Corruption(name + ": not a cext3 record log (no CX3RLOG header); pass the file "
                                     "written by RecordingDevice or cext3-crashstate record");
  }
  const uint8_t* h = bytes.data();
  if (get32(h + 8) != kVersion) {
    return Status::NotSupported(name + ": record log version " + std::to_string(get32(h + 8)) +
                                " is not supported (this build reads version " +
                                std::to_string(kVersion) + "); use the matching cext3 build");
  }
  if (get32(h + 60) != crc32c(h, 60)) return corrupt(60, "header checksum mismatch");
  if (get32(h + 12) != kHeaderSize || get32(h + 20) != kRecordHeaderSize)
    return corrupt(12, "unexpected header or record header size");
  RecordLog log;
  log.sector_size = get32(h + 16);
  log.device_size = get64(h + 24);
  if (log.sector_size < 512 || (log.sector_size & (log.sector_size - 1)) != 0 ||
      log.device_size % log.sector_size != 0) {
    return corrupt(16, "sector size " + std::to_string(log.sector_size) + " or device size " +
                           std::to_string(log.device_size) + " is invalid");
  }

  size_t pos = kHeaderSize;
  bool powered_off = false;
  while (pos < bytes.size()) {
    if (bytes.size() - pos < kRecordHeaderSize) {
      log.truncated_tail = true;
      break;
    }
    const uint8_t* r = bytes.data() + pos;
    if (get32(r) != kRecordMagic) return corrupt(pos, "bad record magic");
    if (get32(r + 36) != crc32c(r, 36)) return corrupt(pos, "record header checksum mismatch");
    LogRecord rec;
    uint16_t type = get16(r + 4);
    if (!valid_type(type)) return corrupt(pos, "unknown record type " + std::to_string(type));
    rec.type = static_cast<LogRecord::Type>(type);
    rec.flags = get16(r + 6);
    rec.seq = get64(r + 8);
    rec.offset = get64(r + 16);
    rec.length = get64(r + 24);
    const uint32_t dcrc = get32(r + 32);
    if (rec.seq != log.records.size())
      return corrupt(pos, "sequence number " + std::to_string(rec.seq) + " where " +
                              std::to_string(log.records.size()) + " was expected");
    if (powered_off) return corrupt(pos, "record after the power-loss record");
    if (rec.type == LogRecord::Type::kWrite || rec.type == LogRecord::Type::kWriteFailed) {
      if (rec.length == 0 || rec.offset % log.sector_size != 0 || rec.length % log.sector_size != 0 ||
          rec.offset > log.device_size || rec.length > log.device_size - rec.offset) {
        return corrupt(pos, "write at offset " + std::to_string(rec.offset) + ", length " +
                                std::to_string(rec.length) + " does not fit the device");
      }
    } else if (rec.offset != 0 || rec.length != 0) {
      return corrupt(pos, "flush or marker record with an offset or length");
    }
    pos += kRecordHeaderSize;
    if (rec.type == LogRecord::Type::kWrite) {
      if (bytes.size() - pos < rec.length) {
        log.truncated_tail = true;
        break;
      }
      if (crc32c(bytes.data() + pos, rec.length) != dcrc)
        return corrupt(pos, "data checksum mismatch in write record " + std::to_string(rec.seq));
      rec.data.assign(bytes.data() + pos, bytes.data() + pos + rec.length);
      pos += rec.length;
    } else if (dcrc != 0) {
      return corrupt(pos, "data checksum on a record without data");
    }
    if (rec.type == LogRecord::Type::kPowerLoss) powered_off = true;
    log.records.push_back(std::move(rec));
  }
  return log;
}

Result<RecordLog> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "opening record log " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = Status::FromErrno(errno, "reading record log " + path);
    ::close(fd);
    return s;
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = n < 0 ? Status::FromErrno(errno, "reading record log " + path)
                       : Status::IoError("reading record log " + path + ": file shrank while reading");
      ::close(fd);
      return s;
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return parse(bytes, path);
}

Status write_file(const RecordLog& log, const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "creating record log " + path);
  auto h = encode_header(log.sector_size, log.device_size);
  struct iovec iov = {h.data(), h.size()};
  Status s = write_all(fd, &iov, 1, path);
  for (size_t i = 0; s.ok() && i < log.records.size(); ++i) {
    auto r = encode_record(log.records[i]);
    iov = {r.data(), r.size()};
    s = write_all(fd, &iov, 1, path);
  }
  if (::close(fd) != 0 && s.ok()) s = Status::FromErrno(errno, "closing record log " + path);
  return s;
}

}  // namespace record_log

// ------------------------------------------------------------------ device

Result<std::unique_ptr<RecordingDevice>> RecordingDevice::create(BlockDevice& inner, RecordingOptions opts) {
  std::unique_ptr<RecordingDevice> d(new RecordingDevice(&inner, nullptr, std::move(opts)));
  CEXT3_RETURN_IF_ERROR(d->open_log());
  return d;
}

Result<std::unique_ptr<RecordingDevice>> RecordingDevice::create(std::unique_ptr<BlockDevice> inner,
                                                                 RecordingOptions opts) {
  if (!inner) return Status::InvalidArgument("recording device: no device to wrap");
  BlockDevice* raw = inner.get();
  std::unique_ptr<RecordingDevice> d(new RecordingDevice(raw, std::move(inner), std::move(opts)));
  CEXT3_RETURN_IF_ERROR(d->open_log());
  return d;
}

RecordingDevice::RecordingDevice(BlockDevice* inner, std::unique_ptr<BlockDevice> owned,
                                 RecordingOptions opts)
    : inner_(inner), owned_(std::move(owned)), opts_(std::move(opts)) {
  memory_log_.sector_size = inner_->sector_size();
  memory_log_.device_size = inner_->size();
}

RecordingDevice::~RecordingDevice() {
  if (log_fd_ >= 0) ::close(log_fd_);
}

Status RecordingDevice::open_log() {
  std::lock_guard<std::mutex> g(mu_);
  if (!opts_.log_path.empty()) {
    log_fd_ = ::open(opts_.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd_ < 0) return Status::FromErrno(errno, "creating record log " + opts_.log_path);
    auto h = record_log::encode_header(inner_->sector_size(), inner_->size());
    struct iovec iov = {h.data(), h.size()};
    CEXT3_RETURN_IF_ERROR(write_all(log_fd_, &iov, 1, opts_.log_path));
  }
  if (opts_.faults.power_loss_after_writes && *opts_.faults.power_loss_after_writes == 0)
    return power_off_locked();
  return Status::OK();
}

Status RecordingDevice::append(LogRecord rec, const void* data) {
  rec.seq = next_seq_;
  const bool has_data = rec.type == LogRecord::Type::kWrite;
  if (log_fd_ >= 0) {
    const uint32_t dcrc = has_data ? record_log::crc32c(data, rec.length) : 0;
    auto h = encode_record_header(rec, dcrc);
    struct iovec iov[2] = {{h.data(), h.size()}, {const_cast<void*>(data), has_data ? rec.length : 0}};
    Status s = write_all(log_fd_, iov, has_data ? 2 : 1, opts_.log_path);
    if (!s.ok()) {
      log_error_ = s;
      return s;
    }
  }
  ++next_seq_;
  if (opts_.keep_in_memory) {
    if (has_data) {
      const auto* p = static_cast<const uint8_t*>(data);
      rec.data.assign(p, p + rec.length);
    }
    memory_log_.records.push_back(std::move(rec));
  }
  return Status::OK();
}

Status RecordingDevice::power_off_locked() {
  if (power_lost_) return Status::OK();
  power_lost_after_ = writes_;
  power_lost_ = true;
  LogRecord rec;
  rec.type = LogRecord::Type::kPowerLoss;
  rec.flags = LogRecord::kFlagInjected;
  return append(std::move(rec), nullptr);
}

Status RecordingDevice::powered_off_status() const {
  return Status::PowerLoss(name() + ": the power is off (injected power loss after write " +
                           std::to_string(power_lost_after_.load()) +
                           "); nothing reaches the device any more, as in a real crash");
}

Status RecordingDevice::read(uint64_t offset, void* buf, size_t len) {
  CEXT3_RETURN_IF_ERROR(check_range(offset, len));
  if (power_lost_) return powered_off_status();
  return inner_->read(offset, buf, len);
}

Status RecordingDevice::write(uint64_t offset, const void* buf, size_t len) {
  IoRequest r{IoRequest::Op::kWrite, offset, const_cast<void*>(buf), len};
  return submit(std::span<IoRequest>(&r, 1));
}

Status RecordingDevice::submit(std::span<IoRequest> batch) {
  // Refuse a malformed batch whole, before anything is transferred.
  for (const IoRequest& r : batch) CEXT3_RETURN_IF_ERROR(check_range(r.offset, r.len));

  std::lock_guard<std::mutex> g(mu_);
  if (!log_error_.ok()) return log_error_;
  if (power_lost_) return powered_off_status();

  // Decide the fate of every write in batch order, then forward the survivors
  // as one batch. `fate` keeps batch order so the log does too.
  enum class Fate { kForward, kInjectedFailure, kPowerOff, kSkip };
  std::vector<Fate> fate(batch.size(), Fate::kSkip);
  std::vector<IoRequest> forward;
  forward.reserve(batch.size());
  Status first;
  bool power_off_after = false;
  bool durable = false;  // a forwarded durable write needs the flush below
  for (size_t i = 0; i < batch.size(); ++i) {
    const IoRequest& r = batch[i];
    if (r.op == IoRequest::Op::kRead) {
      forward.push_back(r);
      continue;
    }
    if (r.len == 0) continue;  // an empty write transfers nothing: not counted, not logged
    if (power_off_after) {
      fate[i] = Fate::kPowerOff;
      if (first.ok()) first = powered_off_status();
      continue;
    }
    ++writes_;
    if (writes_ == opts_.faults.fail_write) {
      fate[i] = Fate::kInjectedFailure;
      if (first.ok())
        first = Status::IoError(name() + ": injected I/O error on write #" + std::to_string(writes_) +
                                " (offset " + std::to_string(r.offset) + ", length " +
                                std::to_string(r.len) + "); a test fault, the device is unchanged");
    } else {
      fate[i] = Fate::kForward;
      forward.push_back(r);
      // Made durable by the flush after the batch, so that the log's flush
      // record is exactly what the inner device was asked to do.
      forward.back().durable = false;
      durable = durable || r.durable;
    }
    if (opts_.faults.power_loss_after_writes && writes_ == *opts_.faults.power_loss_after_writes)
      power_off_after = true;
  }

  Status inner_status;
  if (!forward.empty()) inner_status = inner_->submit(forward);

  for (size_t i = 0; i < batch.size(); ++i) {
    if (fate[i] != Fate::kForward && fate[i] != Fate::kInjectedFailure) continue;
    LogRecord rec;
    rec.offset = batch[i].offset;
    rec.length = batch[i].len;
    if (fate[i] == Fate::kInjectedFailure) {
      rec.type = LogRecord::Type::kWriteFailed;
      rec.flags = LogRecord::kFlagInjected;
    } else if (!inner_status.ok()) {
      // The inner batch failed and does not say which writes landed: record
      // them as failed; crash states treat them as never applied.
      rec.type = LogRecord::Type::kWriteFailed;
    } else {
      rec.type = LogRecord::Type::kWrite;
    }
    if (batch[i].durable) rec.flags |= LogRecord::kFlagDurable;
    CEXT3_RETURN_IF_ERROR(append(std::move(rec), batch[i].buf));
  }
  if (power_off_after) CEXT3_RETURN_IF_ERROR(power_off_locked());
  if (!inner_status.ok()) return inner_status;
  if (!first.ok()) return first;
  // The power went off after the last write: the machine is off before the
  // durable writes' flush could happen.
  if (durable && power_off_after) return powered_off_status();
  if (durable) return flush_locked(LogRecord::kFlagDurable);
  return first;
}

Status RecordingDevice::flush() {
  std::lock_guard<std::mutex> g(mu_);
  if (!log_error_.ok()) return log_error_;
  if (power_lost_) return powered_off_status();
  return flush_locked(0);
}

bool RecordingDevice::native_durable_writes() const {
  return opts_.native_durable_writes.value_or(inner_->native_durable_writes());
}

Status RecordingDevice::flush_locked(uint16_t flags) {
  ++flushes_;
  LogRecord rec;
  rec.flags = flags;
  if (flushes_ == opts_.faults.fail_flush) {
    rec.type = LogRecord::Type::kFlushFailed;
    rec.flags |= LogRecord::kFlagInjected;
    CEXT3_RETURN_IF_ERROR(append(std::move(rec), nullptr));
    return Status::IoError(name() + ": injected I/O error on flush #" + std::to_string(flushes_) +
                           "; a test fault, nothing was made durable");
  }
  Status s = inner_->flush();
  rec.type = s.ok() ? LogRecord::Type::kFlush : LogRecord::Type::kFlushFailed;
  CEXT3_RETURN_IF_ERROR(append(std::move(rec), nullptr));
  return s;
}

void RecordingDevice::set_faults(const FaultPlan& faults) {
  std::lock_guard<std::mutex> g(mu_);
  opts_.faults = faults;
  if (faults.power_loss_after_writes && writes_ >= *faults.power_loss_after_writes) {
    // Already past the point: the power goes off now. A failure to log the
    // marker is kept in log_error_ and reported by the next write or flush.
    (void)power_off_locked();
  }
}

bool RecordingDevice::power_lost() const { return power_lost_; }

uint64_t RecordingDevice::writes_seen() const {
  std::lock_guard<std::mutex> g(mu_);
  return writes_;
}

uint64_t RecordingDevice::flushes_seen() const {
  std::lock_guard<std::mutex> g(mu_);
  return flushes_;
}

RecordLog RecordingDevice::log() const {
  std::lock_guard<std::mutex> g(mu_);
  return memory_log_;
}

Status RecordingDevice::sync_log() {
  std::lock_guard<std::mutex> g(mu_);
  if (log_fd_ < 0) return Status::OK();
  if (::fdatasync(log_fd_) != 0) return Status::FromErrno(errno, "syncing record log " + opts_.log_path);
  return Status::OK();
}

}  // namespace cext3
