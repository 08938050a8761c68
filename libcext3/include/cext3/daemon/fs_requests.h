// `exec` requests on the control socket: filesystem operations served by
// the node's engine (docs/jcoord.8, "FILESYSTEM REQUESTS").
//
// Wire format: `exec OP ARG...`, one line. Objects are named by inode
// number, as in the engine's API; names, symlink targets and xattr names
// are percent-encoded (%XX for any byte outside [A-Za-z0-9._~/+=,:@-]);
// file data and xattr values are hex. Replies are one JSON line:
//   {"ok":true,...}                      (op-specific fields)
//   {"ok":false,"errno":2,"errname":"ENOENT","error":"..."}
//
// Acknowledgement: in a session with `durable` on (the default), a reply
// to an operation that changes the filesystem is sent only after the
// operation is committed in the slot journal (it survives any crash from
// then on). `set durable off` replies as soon as the operation is done in
// memory, like a local filesystem without fsync.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cext3/engine/filesystem.h"

namespace cext3::daemon {

// Percent-encoding of names for the request line (and its inverse; false
// on a malformed escape).
std::string pct_encode(const std::string& raw);
bool pct_decode(const std::string& enc, std::string* raw);

// One `exec` request, words[0] == "exec". `durable`: the session's mode.
std::string handle_fs_request(engine::Filesystem& fs, const std::vector<std::string>& words, bool durable);

}  // namespace cext3::daemon
