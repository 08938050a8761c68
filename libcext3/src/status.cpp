#include "cext3/status.h"

#include <cstring>

namespace cext3 {

Status Status::FromErrno(int err, const std::string& context) {
  std::string msg = context + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENXIO:
      return Status(Code::kNotFound, err, msg);
    case EINVAL:
    case EISDIR:
    case ENOTDIR:
    case ENAMETOOLONG:
      return Status(Code::kInvalidArgument, err, msg);
    case EBUSY:
    case ETXTBSY:
    case EWOULDBLOCK:
      return Status(Code::kBusy, err, msg);
    case ENOSPC:
      return Status(Code::kNoSpace, err, msg);
    case EOPNOTSUPP:
      return Status(Code::kNotSupported, err, msg);
    default:
      return Status(Code::kIoError, err, msg);
  }
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return msg_;
}

Status Status::Annotate(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, err_, context + ": " + msg_);
}

}  // namespace cext3
