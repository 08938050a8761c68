// Status and Result<T>: how every libcext3 call reports failure.
//
// A Status carries a category (what kind of failure), an errno value (so the
// CLI and the control socket can map it to the usual error numbers) and a
// one-line message meant for an operator: what failed, why, what to do.
// Functions never throw across the public API; they return Status or Result.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace cext3 {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kIoError,          // the device failed a read, write or flush
    kInvalidArgument,  // the caller asked for something malformed
    kNotFound,
    kCorruption,       // on-disk data fails a check
    kNotSupported,     // a feature or format we refuse to handle
    kNoSpace,
    kBusy,             // mounted, locked, or in use elsewhere
    kPowerLoss,        // injected by the recording device: the "machine" is off
    kFenced,           // this node lost its lease; all writes are refused
  };

  Status() = default;

  static Status OK() { return Status(); }
  static Status IoError(std::string msg, int err = EIO) { return Status(Code::kIoError, err, std::move(msg)); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, EINVAL, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, ENOENT, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, EUCLEAN, std::move(msg)); }
  static Status NotSupported(std::string msg) { return Status(Code::kNotSupported, EOPNOTSUPP, std::move(msg)); }
  static Status NoSpace(std::string msg) { return Status(Code::kNoSpace, ENOSPC, std::move(msg)); }
  static Status Busy(std::string msg) { return Status(Code::kBusy, EBUSY, std::move(msg)); }
  static Status PowerLoss(std::string msg) { return Status(Code::kPowerLoss, EIO, std::move(msg)); }
  static Status Fenced(std::string msg) { return Status(Code::kFenced, EIO, std::move(msg)); }
  // From a failed system call: "<context>: <strerror(err)>", category chosen from err.
  static Status FromErrno(int err, const std::string& context);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  int errno_value() const { return ok() ? 0 : err_; }
  const std::string& message() const { return msg_; }
  std::string ToString() const;

  // Prefix the message with more context ("reading superblock: ...").
  Status Annotate(const std::string& context) const;

 private:
  Status(Code c, int err, std::string msg) : code_(c), err_(err), msg_(std::move(msg)) {}

  Code code_ = Code::kOk;
  int err_ = 0;
  std::string msg_;
};

// A value or the Status explaining why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}     // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace cext3

// Return early from a function returning Status (or Result) on failure.
#define CEXT3_RETURN_IF_ERROR(expr)          \
  do {                                       \
    ::cext3::Status _cext3_s = (expr);       \
    if (!_cext3_s.ok()) return _cext3_s;     \
  } while (0)
