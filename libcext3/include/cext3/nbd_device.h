// NBD backend of BlockDevice: a disk exported by an NBD server (nbdkit,
// qemu-nbd, nbd-server), reached through libnbd.
//
// Accepted names:
//   nbd://host[:port][/export]          TCP (default port 10809)
//   nbds://host[:port][/export]         TCP with TLS
//   nbd+unix:///[export]?socket=PATH    Unix domain socket
//   nbds+unix:///[export]?socket=PATH   Unix domain socket with TLS
// Anything else (nbd+vsock, URIs that ask libnbd to read local files such as
// tls-psk-file) is refused with one line saying why.
//
// Geometry: size() is the export size rounded down to the sector size;
// sector_size() is the server's minimum block size, at least 512.
// The device is read-only when the server exports it read-only or the caller
// asks for it. flush() sends NBD_CMD_FLUSH; a server that cannot flush makes
// writes durable on its own schedule, which name() then says.
// submit() keeps up to OpenOptions::queue_depth requests in flight with
// libnbd's asynchronous API. Every method may be called from many threads.
#pragma once

#include <memory>
#include <string>

#include "cext3/block_device.h"

namespace cext3 {

// True when `spec` names an NBD export (one of the URI forms above, or an
// unsupported nbd-like scheme that open_nbd_device will refuse clearly).
bool is_nbd_uri(const std::string& spec);

Result<std::unique_ptr<BlockDevice>> open_nbd_device(const std::string& uri,
                                                     const OpenOptions& opts = {});

}  // namespace cext3
