// Orphans of a dead slot (docs/ENGINE.md "Orphans", "Recovery").
//
// Each slot keeps the inodes it unlinked while some node still had them open
// in its orphan directory (/.cext3/orphan.NN). A live node frees its own
// orphans (at the last release, by its periodic scan, at mount and at
// unmount). When a slot dies, its orphans need a new owner: the node that
// recovered it calls adopt_orphans once the dead slot's journal is replayed
// and its locks may be granted again (LockService::recovery_done).
#pragma once

#include <cstdint>

#include "cext3/block_device.h"
#include "cext3/engine/filesystem.h"
#include "cext3/status.h"

namespace cext3::engine {

// For every inode in `dead_slot`'s orphan directory: freed when no live
// node holds it open, else moved into `fs`'s own orphan directory, whose
// scan frees it once the last node closes it. `fs` must be an engine
// mounted read-write by Filesystem::mount (InvalidArgument otherwise).
Status adopt_orphans(Filesystem& fs, uint32_t dead_slot);

// Offline (no node may be writing the filesystem): free every orphan of
// `slot` (nothing can be open). Mounts the engine for `slot` with a
// process-local lock provider and unmounts it: the unmount's last orphan
// pass frees the slot's leftovers. The slot's journal must be clean (replayed). Returns how many
// orphans the slot had.
Result<size_t> free_orphans_offline(BlockDevice& dev, uint32_t slot);

}  // namespace cext3::engine
