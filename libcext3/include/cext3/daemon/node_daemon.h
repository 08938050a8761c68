// NodeDaemon: one jcoord node, from slot claim to clean leave.
//
// Start-up order and why (docs/DESIGN.md, "jcoord start-up and shutdown"):
//  1. open the device; every write goes through a FencedDevice;
//  2. claim a slot (delta lease) - nothing else is written before we own one;
//  3. start the lock service (it binds its address), then at once the
//     heartbeat loop publishing that address: the claim opened the fence
//     gate for one fence window only, and peers watch for our heartbeat;
//  4. if the slot's previous owner died, replay its journal (slow work is
//     safe now that the heartbeat renews the gate);
//  5. mark MMP in use, so stock tools refuse the disk from now on;
//  6. open the control socket: the node is ready.
// Shutdown runs the other way; the last node out (no lease owned) writes the
// clean MMP sequence. A fenced node writes nothing more and exits 3.
#pragma once

#include "cext3/daemon/config.h"

namespace cext3::daemon {

// Exit codes of `jcoord start`.
inline constexpr int kExitClean = 0;
inline constexpr int kExitStartFailed = 1;
inline constexpr int kExitFenced = 3;

// Runs in the foreground until SIGTERM/SIGINT, a `stop` request, or fencing.
// Blocks SIGTERM and SIGINT in the calling thread (and every thread it starts).
int run_node(const NodeConfig& cfg);

}  // namespace cext3::daemon
