// The metadata block cache: every block carries the lock resource covering
// it and the LVB version it was read under (engine_impl.h, "coherence").
//
// Invariants relied on:
//  * a block is read from disk only when it is not cached; a cached block is
//    the newest image this node knows (dirty in the running transaction,
//    committed, or as read), so a block with an image in the journal that is
//    not yet in place is never evicted nor re-read (it stays cached until
//    on_lock_leaving forced it out or a full checkpoint wrote it);
//  * the op holds the covering lock (checked on every access, every build);
//  * a dirty block belongs to the running transaction until the commit
//    snapshot copies it.
#include <cassert>
#include <cstring>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {
// Checked on every access in every build (not only with assertions): a
// block touched without its lock is the one bug that corrupts other nodes'
// view silently.
Status not_held(uint64_t blk, ResKey res, const char* what) {
  return Status::InvalidArgument(std::string("engine bug: ") + what + " block " + std::to_string(blk) +
                                 " without holding " + resource_name(res) + " in the needed mode");
}
}  // namespace

CachedBlock* EngineFs::cached(uint64_t blk) {
  auto it = cache_.find(blk);
  return it == cache_.end() ? nullptr : &it->second;
}

uint64_t EngineFs::known_version(ResKey res) const {
  auto it = res_version_.find(res);
  return it == res_version_.end() ? 0 : it->second;
}

void EngineFs::drop_resource_cache(ResKey res) {
  auto it = cache_by_res_.find(res);
  if (it == cache_by_res_.end()) return;
  for (uint64_t b : it->second) {
    auto c = cache_.find(b);
    if (c == cache_.end() || c->second.res != res) continue;
    // A dirty block can only belong to a resource this node still holds EX
    // (it is committed before the lock leaves), so its version cannot have
    // moved: dropping it here would lose an acknowledged change.
    assert(!c->second.dirty);
    cache_.erase(c);
  }
  cache_by_res_.erase(it);
}

void EngineFs::observe_version(ResKey res, uint64_t v) {
  auto it = res_version_.find(res);
  if (it == res_version_.end()) {
    // Never held since mount (or forgotten at a release to NL): anything
    // cached under it is of unknown age.
    drop_resource_cache(res);
    res_version_[res] = v;
    return;
  }
  if (it->second != v) {
    drop_resource_cache(res);
    it->second = v;
  }
}

Result<CachedBlock*> EngineFs::load_block(uint64_t blk, ResKey res) {
  // Block 0 is metadata only as the 4 KiB-block superblock (under sb).
  if ((blk == 0 && res != sb_key()) || blk >= geo_.blocks_count)
    return Status::Corruption("metadata block " + std::to_string(blk) + " (under " + resource_name(res) +
                              ") lies outside the filesystem; run clusterify verify");
  if (CachedBlock* cb = cached(blk)) {
    if (cb->res != res) {
      // The block changed roles (freed and reused under another lock). The
      // old image is worthless unless still dirty, which cannot be: a freed
      // metadata block is dropped from the cache when it is freed.
      assert(!cb->dirty);
      cache_by_res_[cb->res].erase(blk);
      cb->res = res;
      cb->version = known_version(res);
      cache_by_res_[res].insert(blk);
    }
    return cb;
  }
  CachedBlock nb;
  nb.data.resize(geo_.block_size);
  Status s = dev_.read(blk * geo_.block_size, nb.data.data(), geo_.block_size);
  if (!s.ok()) return s.Annotate("reading metadata block " + std::to_string(blk));
  nb.res = res;
  nb.version = known_version(res);
  auto [it, inserted] = cache_.emplace(blk, std::move(nb));
  (void)inserted;
  cache_by_res_[res].insert(blk);
  return &it->second;
}

Result<const uint8_t*> EngineFs::read_meta(Op& op, uint64_t blk, ResKey res) {
  if (!op.holds(res, LockMode::kPR)) return not_held(blk, res, "reading");
  auto r = load_block(blk, res);
  if (!r.ok()) return r.status();
  return static_cast<const uint8_t*>((*r)->data.data());
}

void EngineFs::dirty_block(Op& op, uint64_t blk, CachedBlock& cb) {
  op.changed_res_.insert(cb.res);
  if (!cb.dirty) {
    cb.dirty = true;
    running_dirty_.insert(blk);
  }
  journaled_by_res_[cb.res].insert(blk);
  journaled_blocks_.insert(blk);
}

Result<uint8_t*> EngineFs::write_meta(Op& op, uint64_t blk, ResKey res) {
  if (!op.holds(res, LockMode::kEX)) return not_held(blk, res, "changing");
  auto r = load_block(blk, res);
  if (!r.ok()) return r.status();
  dirty_block(op, blk, **r);
  return (*r)->data.data();
}

Result<uint8_t*> EngineFs::new_meta(Op& op, uint64_t blk, ResKey res) {
  if (!op.holds(res, LockMode::kEX)) return not_held(blk, res, "creating");
  if (blk == 0 || blk >= geo_.blocks_count)
    return Status::Corruption("new metadata block " + std::to_string(blk) + " lies outside the filesystem");
  CachedBlock* cb = cached(blk);
  if (cb == nullptr) {
    CachedBlock nb;
    nb.res = res;
    nb.version = known_version(res);
    cb = &cache_.emplace(blk, std::move(nb)).first->second;
  } else if (cb->res != res) {
    cache_by_res_[cb->res].erase(blk);
    cb->res = res;
    cb->version = known_version(res);
  }
  cache_by_res_[res].insert(blk);
  cb->data.assign(geo_.block_size, 0);
  dirty_block(op, blk, *cb);
  return cb->data.data();
}

void EngineFs::forget_block(uint64_t blk) {
  auto it = cache_.find(blk);
  if (it != cache_.end()) {
    cache_by_res_[it->second.res].erase(blk);
    cache_.erase(it);
  }
  running_dirty_.erase(blk);
}

void EngineFs::maybe_evict() {
  // Keep the cache bounded: clean blocks whose newest image is on disk may
  // go (they are re-read under their lock when needed).
  if (cache_.size() < kCacheSoftLimit) return;
  for (auto it = cache_.begin(); it != cache_.end() && cache_.size() > kCacheSoftLimit / 2;) {
    if (!it->second.dirty && !journaled_blocks_.count(it->first)) {
      cache_by_res_[it->second.res].erase(it->first);
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace cext3::engine
