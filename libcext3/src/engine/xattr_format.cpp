// ext3's on-disk extended attribute format (xattr_format.h).
#include "engine/xattr_format.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cluster/le_bytes.h"

namespace cext3::engine::xattr {

namespace {
uint32_t pad4(size_t n) { return uint32_t((n + 3) & ~size_t(3)); }

struct Prefix {
  const char* text;
  uint8_t index;
  bool whole;  // the full name is the prefix itself (the POSIX ACLs)
};
// Longest first where one prefix starts another ("system.posix_acl_access"
// before "system.").
constexpr Prefix kPrefixes[] = {
    {"user.", kUser, false},
    {"system.posix_acl_access", kPosixAclAccess, true},
    {"system.posix_acl_default", kPosixAclDefault, true},
    {"trusted.", kTrusted, false},
    {"security.", kSecurity, false},
};

const char* prefix_text(uint8_t index) {
  switch (index) {
    case kUser: return "user.";
    case kPosixAclAccess: return "system.posix_acl_access";
    case kPosixAclDefault: return "system.posix_acl_default";
    case kTrusted: return "trusted.";
    case kSecurity: return "security.";
    case kSystem: return "system.";
    case 8: return "system.richacl";
    default: return nullptr;
  }
}

// Entries from `p` to the end marker; values at value_base + offset, inside
// [value_lo, end).
Status parse_entries(const uint8_t* p, const uint8_t* end, const uint8_t* value_base, const uint8_t* value_lo,
                     std::vector<Entry>* out, const std::string& where) {
  while (true) {
    if (p + 4 > end) return Status::Corruption(where + ": xattr entry list has no end marker");
    if (cluster::get_le32(p) == 0) return Status::OK();
    if (p + kEntryHeadBytes > end) return Status::Corruption(where + ": xattr entry runs past its area");
    const uint8_t name_len = p[0];
    const uint16_t offs = cluster::get_le16(p + 2);
    const uint32_t inum = cluster::get_le32(p + 4), size = cluster::get_le32(p + 8);
    if (p + kEntryHeadBytes + name_len > end) return Status::Corruption(where + ": xattr name runs past its area");
    if (inum != 0) return Status::NotSupported(where + ": xattr value in an inode (ea_inode) is not ext3");
    Entry e;
    e.index = p[1];
    e.name.assign(reinterpret_cast<const char*>(p + kEntryHeadBytes), name_len);
    if (size != 0) {
      const uint8_t* v = value_base + offs;
      if (v < value_lo || v > end || size > size_t(end - v))
        return Status::Corruption(where + ": xattr value lies outside its area");
      e.value.assign(v, v + size);
    }
    out->push_back(std::move(e));
    p += pad4(kEntryHeadBytes + name_len);
  }
}

// Entry table at `table`, values packed downwards from `values_end`; offsets
// relative to `value_base`.
void write_entries(std::span<const Entry> entries, uint8_t* table, uint8_t* value_base, uint8_t* values_end) {
  uint8_t* p = table;
  uint8_t* v = values_end;
  for (const Entry& e : entries) {
    uint16_t offs = 0;  // an empty value has no bytes and offset 0, as the kernel writes it
    if (!e.value.empty()) {
      v -= value_bytes(e);
      std::memset(v, 0, value_bytes(e));
      std::memcpy(v, e.value.data(), e.value.size());
      offs = uint16_t(v - value_base);
    }
    std::memset(p, 0, entry_bytes(e));
    p[0] = uint8_t(e.name.size());
    p[1] = e.index;
    cluster::put_le16(p + 2, offs);
    cluster::put_le32(p + 4, 0);
    cluster::put_le32(p + 8, uint32_t(e.value.size()));
    cluster::put_le32(p + 12, entry_hash(e));
    std::memcpy(p + kEntryHeadBytes, e.name.data(), e.name.size());
    p += entry_bytes(e);
  }
  cluster::put_le32(p, 0);  // end marker
}

size_t needed_bytes(std::span<const Entry> entries) {
  size_t n = 4;  // end marker
  for (const Entry& e : entries) n += entry_bytes(e) + value_bytes(e);
  return n;
}
}  // namespace

std::string full_name(uint8_t index, std::string_view name) {
  const char* pre = prefix_text(index);
  if (!pre) return {};
  return std::string(pre) + std::string(name);
}

Status split_name(std::string_view full, uint8_t* index, std::string* name) {
  if (full.size() > kMaxNameLen)
    return Status::FromErrno(ERANGE, "xattr name of " + std::to_string(full.size()) +
                                         " bytes is longer than ext3's 255; use a shorter name");
  for (const Prefix& p : kPrefixes) {
    const std::string_view pre(p.text);
    if (p.whole) {
      if (full == pre) {
        *index = p.index;
        name->clear();
        return Status::OK();
      }
      continue;
    }
    if (full.size() >= pre.size() && full.substr(0, pre.size()) == pre) {
      if (full.size() == pre.size())
        return Status::FromErrno(EINVAL, "xattr name '" + std::string(full) + "' has nothing after its prefix");
      *index = p.index;
      name->assign(full.substr(pre.size()));
      return Status::OK();
    }
  }
  return Status::FromErrno(EOPNOTSUPP, "xattr name '" + std::string(full) +
                                           "': ext3 stores only user., trusted., security. and the POSIX ACLs");
}

uint32_t entry_bytes(const Entry& e) { return pad4(kEntryHeadBytes + e.name.size()); }
uint32_t value_bytes(const Entry& e) { return pad4(e.value.size()); }

uint32_t entry_hash(const Entry& e) {
  uint32_t h = 0;
  for (unsigned char c : e.name) h = (h << 5) ^ (h >> 27) ^ c;
  // The value's words as little-endian numbers, the last one zero-padded.
  for (size_t i = 0; i < e.value.size(); i += 4) {
    uint8_t w[4] = {0, 0, 0, 0};
    std::memcpy(w, e.value.data() + i, std::min<size_t>(4, e.value.size() - i));
    h = (h << 16) ^ (h >> 16) ^ cluster::get_le32(w);
  }
  return h;
}

uint32_t block_hash(std::span<const uint32_t> entry_hashes) {
  uint32_t h = 0;
  for (uint32_t eh : entry_hashes) {
    if (eh == 0) return 0;  // an entry without a hash: the block is not shareable by hash
    h = (h << 16) ^ (h >> 16) ^ eh;
  }
  return h;
}

bool block_order_less(const Entry& a, const Entry& b) {
  if (a.index != b.index) return a.index < b.index;
  if (a.name.size() != b.name.size()) return a.name.size() < b.name.size();
  return std::memcmp(a.name.data(), b.name.data(), a.name.size()) < 0;
}

Status parse_ibody(std::span<const uint8_t> area, std::vector<Entry>* out, const std::string& where) {
  if (area.size() < 4 || cluster::get_le32(area.data()) != kMagic) return Status::OK();
  const uint8_t* first = area.data() + 4;
  return parse_entries(first, area.data() + area.size(), first, first, out, where + " in-inode xattrs");
}

bool ibody_fits(std::span<const Entry> entries, size_t area_bytes) {
  return area_bytes >= 4 && needed_bytes(entries) <= area_bytes - 4;
}

void encode_ibody(std::span<const Entry> entries, std::span<uint8_t> area) {
  std::memset(area.data(), 0, area.size());
  if (entries.empty()) return;
  cluster::put_le32(area.data(), kMagic);
  uint8_t* first = area.data() + 4;
  write_entries(entries, first, first, area.data() + area.size());
}

Status parse_block(std::span<const uint8_t> block, std::vector<Entry>* out, uint32_t* refcount,
                   const std::string& where) {
  if (block.size() < kBlockHeaderBytes || cluster::get_le32(block.data()) != kMagic)
    return Status::Corruption(where + ": xattr block without its magic; run e2fsck");
  if (cluster::get_le32(block.data() + 8) != 1)
    return Status::Corruption(where + ": xattr block with h_blocks other than 1; run e2fsck");
  *refcount = cluster::get_le32(block.data() + 4);
  return parse_entries(block.data() + kBlockHeaderBytes, block.data() + block.size(), block.data(),
                       block.data() + kBlockHeaderBytes, out, where + " xattr block");
}

bool block_fits(std::span<const Entry> entries, size_t block_size) {
  return kBlockHeaderBytes + needed_bytes(entries) <= block_size;
}

void encode_block(std::vector<Entry> entries, uint32_t refcount, std::span<uint8_t> block) {
  std::stable_sort(entries.begin(), entries.end(), block_order_less);
  std::memset(block.data(), 0, block.size());
  cluster::put_le32(block.data(), kMagic);
  cluster::put_le32(block.data() + 4, refcount);
  cluster::put_le32(block.data() + 8, 1);  // h_blocks
  std::vector<uint32_t> hashes;
  for (const Entry& e : entries) hashes.push_back(entry_hash(e));
  cluster::put_le32(block.data() + 12, block_hash(hashes));
  write_entries(entries, block.data() + kBlockHeaderBytes, block.data(), block.data() + block.size());
}

}  // namespace cext3::engine::xattr
