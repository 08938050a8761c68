// Op: one filesystem operation's locks and journal handle (engine_impl.h,
// "locking"). Resource names and the retry status live here too.
#include <algorithm>
#include <cassert>
#include <cstring>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {
constexpr const char* kRetryMessage = "cext3 engine: operation must retry with more locks";

uint64_t lvb_version(const locks::Lvb& lvb) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | lvb[i];
  return v;
}
void set_lvb_version(locks::Lvb& lvb, uint64_t v) {
  for (int i = 0; i < 8; ++i) lvb[i] = uint8_t(v >> (8 * i));
}
bool mode_covers(LockMode have, LockMode want) { return int(have) >= int(want); }
}  // namespace

std::string resource_name(ResKey r) {
  const uint64_t id = res_id(r);
  switch (res_kind(r)) {
    case ResKind::kSb: return "sb";
    case ResKind::kGdt: return "gdt:" + std::to_string(id);
    case ResKind::kGrp: return "grp:" + std::to_string(id);
    case ResKind::kItb: return "itb:" + std::to_string(id);
    case ResKind::kOrph: return "orph:" + std::to_string(id);
    case ResKind::kXab: return "xab:" + std::to_string(id);
    case ResKind::kRename: return "rename";
  }
  return "unknown:" + std::to_string(r);
}

bool parse_resource_name(const std::string& name, ResKey* out) {
  if (name == "sb") {
    *out = sb_key();
    return true;
  }
  if (name == "rename") {
    *out = rename_key();
    return true;
  }
  const auto colon = name.find(':');
  if (colon == std::string::npos || colon + 1 >= name.size()) return false;
  const std::string kind = name.substr(0, colon);
  uint64_t id = 0;
  for (size_t i = colon + 1; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    id = id * 10 + uint64_t(name[i] - '0');
  }
  if (kind == "gdt") *out = gdt_key(id);
  else if (kind == "grp") *out = grp_key(uint32_t(id));
  else if (kind == "itb") *out = itb_key(id);
  else if (kind == "orph") *out = res_key(ResKind::kOrph, id);
  else if (kind == "xab") *out = xab_key(id);
  else return false;
  return true;
}

bool is_retry(const Status& s) { return s.code() == Status::Code::kBusy && s.message() == kRetryMessage; }

Op::~Op() {
  if (has_mu_ || !held_.empty()) end(Status::OK());
  if (reserved_ino_ != 0) {
    std::lock_guard<std::mutex> g(fs_.mu_);
    fs_.reserved_inodes_.erase(reserved_ino_);
  }
}

void Op::want(ResKey r, LockMode m) {
  auto& cur = wanted_[r];
  if (!mode_covers(cur, m)) cur = m;
}

void Op::want_inode(uint64_t ino, LockMode m) { want(fs_.inode_res(ino), m); }

void Op::want_group(uint32_t g) { want(grp_key(g), LockMode::kEX); }

void Op::want_alloc(uint64_t blocks) { alloc_blocks_ = std::max<uint64_t>(alloc_blocks_, std::max<uint64_t>(blocks, 1)); }

void Op::want_new_inode(uint64_t parent, bool is_dir) {
  new_inode_ = true;
  new_inode_dir_ = is_dir;
  new_inode_parent_ = parent;
  want_alloc(is_dir ? 2 : 1);
}

Status Op::retry() {
  if (changed())
    return Status::Corruption("engine bug: an operation asked to retry after it changed blocks; "
                              "its changes stay in the running transaction");
  retry_ = true;
  return Status::Busy(kRetryMessage);
}

bool Op::holds(ResKey r, LockMode m) const {
  auto it = held_.find(r);
  return it != held_.end() && mode_covers(it->second.mode, m);
}

bool Op::holds_inode(uint64_t ino, LockMode m) const { return holds(fs_.inode_res(ino), m); }

Status Op::lock_all() {
  LockProvider* p = fs_.opts_.locks;
  for (auto& [res, mode] : wanted_) {
    auto r = p->lock(resource_name(res), mode);
    if (!r.ok()) {
      unlock_all(false);
      return r.status().Annotate("taking lock " + resource_name(res));
    }
    held_[res] = Held{mode, *r};
  }
  return Status::OK();
}

void Op::unlock_all(bool publish) {
  LockProvider* p = fs_.opts_.locks;
  // Reverse order: not needed for correctness, but it keeps lock traces readable.
  for (auto it = held_.rbegin(); it != held_.rend(); ++it) {
    const Status s = p->unlock(resource_name(it->first), it->second.h);
    (void)s;  // an unlock failure means the provider is gone; nothing to undo here
    (void)publish;
  }
  held_.clear();
}

Status Op::begin() {
  retry_ = false;
  if (!fs_.mounted_) return Status::InvalidArgument("the filesystem is not mounted");
  const bool writes = alloc_blocks_ > 0 || new_inode_ ||
                      std::any_of(wanted_.begin(), wanted_.end(), [](auto& w) { return w.second == LockMode::kEX; });
  if (writes && fs_.opts_.read_only) return Status::FromErrno(EROFS, "the filesystem is mounted read-only");
  if (writes) {
    std::lock_guard<std::mutex> g(fs_.dur_mu_);
    if (!fs_.journal_error_.ok())
      return fs_.journal_error_.Annotate("the slot journal failed earlier; remount after recovery");
  }
  if (alloc_blocks_ > 0) {
    for (uint32_t g : fs_.own_groups_) want_group(g);
    // Borrow other slots' groups only when our own lack space (hint from
    // the counters; the bitmaps decide).
    std::vector<std::pair<int64_t, uint32_t>> foreign;
    int64_t own_free = 0;
    {
      std::lock_guard<std::mutex> g(fs_.mu_);
      for (uint32_t gi = 0; gi < fs_.geo_.groups; ++gi) {
        const auto& gr = fs_.groups_[gi];
        const int64_t f = gr.base_free_blocks + gr.d_free_blocks;
        if (gr.slot == fs_.opts_.slot) own_free += f;
        else if (f > 0) foreign.push_back({f, gi});
      }
    }
    const int64_t need = int64_t(alloc_blocks_) + 8;
    if (own_free < need) {
      std::sort(foreign.begin(), foreign.end(), std::greater<>());
      int64_t have = own_free;
      for (auto& [f, gi] : foreign) {
        if (have >= need) break;
        want_group(gi);
        have += f;
      }
    }
  }
  for (;;) {
    CEXT3_RETURN_IF_ERROR(lock_all());
    fs_.mu_.lock();
    has_mu_ = true;
    for (auto& [res, h] : held_) fs_.observe_version(res, lvb_version(h.h.lvb));
    if (!new_inode_) return Status::OK();
    if (reserved_ino_ != 0 && !fs_.inode_still_free(*this, reserved_ino_)) {
      // Taken meanwhile by a node that borrowed the group while we were
      // not holding it: pick again.
      fs_.reserved_inodes_.erase(reserved_ino_);
      reserved_ino_ = 0;
    }
    if (reserved_ino_ == 0) {
      auto picked = fs_.pick_inode(*this, new_inode_parent_, new_inode_dir_);
      if (!picked.ok()) {
        fs_.mu_.unlock();
        has_mu_ = false;
        unlock_all(false);
        return picked.status();
      }
      if (*picked == 0) {  // pick_inode asked for more groups
        fs_.mu_.unlock();
        has_mu_ = false;
        unlock_all(false);
        continue;
      }
      reserved_ino_ = *picked;
      fs_.reserved_inodes_.insert(reserved_ino_);
    }
    if (holds_inode(reserved_ino_, LockMode::kEX)) return Status::OK();
    want_inode(reserved_ino_, LockMode::kEX);
    fs_.mu_.unlock();
    has_mu_ = false;
    unlock_all(false);
  }
}

void Op::release_mu() {
  assert(!changed());
  if (!has_mu_) return;
  fs_.maybe_evict();  // as end() does: the op's cached pointers die here
  fs_.mu_.unlock();
  has_mu_ = false;
}

Status Op::end(Status body) {
  bool big = false;
  if (has_mu_) {
    for (ResKey res : changed_res_) {
      auto it = held_.find(res);
      if (it == held_.end()) continue;
      const uint64_t v = lvb_version(it->second.h.lvb) + 1;
      set_lvb_version(it->second.h.lvb, v);
      fs_.res_version_[res] = v;
    }
    if (!retry_ && reserved_ino_ != 0) {
      fs_.reserved_inodes_.erase(reserved_ino_);
      reserved_ino_ = 0;
    }
    big = fs_.running_too_big();
    fs_.maybe_evict();  // no op is inside its body now: cached pointers are dead
    fs_.mu_.unlock();
    has_mu_ = false;
  }
  Status s = std::move(body);
  const bool zero_tail = s.ok() && !retry_ && tail_block_ != 0;
  if ((fs_.sync_ops() && changed()) || big || zero_tail) {
    const Status c = fs_.commit_and_wait();
    if (s.ok() && !c.ok()) s = c;
  }
  if (zero_tail && s.ok()) {
    // The shrink is durable; the bytes past the new end are no one's data
    // now, and no other op can reach this block while we hold the inode.
    const Status z = fs_.zero_committed_tail(tail_block_, tail_offset_);
    if (!z.ok()) s = z;
  }
  tail_block_ = 0;
  tail_offset_ = 0;
  unlock_all(true);
  changed_res_.clear();
  data_written_ = false;
  if (!retry_) {
    wanted_.clear();
    alloc_blocks_ = 0;
    new_inode_ = false;
  }
  return s;
}

}  // namespace cext3::engine
