#include "engine/dir_block.h"

#include <sys/stat.h>

#include <cstring>

namespace cext3::engine {

namespace {

constexpr uint32_t kMinRecLen = 12;  // the kernel and e2fsck refuse shorter entries

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// rec_len is 16 bits on disk; a 64 KiB block's single whole-block entry is
// stored as 65535 (or 0 by old writers), as ext2fs_get_rec_len decodes it.
uint32_t rec_len_from_disk(uint16_t v, size_t block_size) {
  if (block_size >= 65536 && (v == 65535 || v == 0)) return 65536;
  return v;
}
uint16_t rec_len_to_disk(uint32_t len) {
  return len >= 65536 ? static_cast<uint16_t>(65535) : static_cast<uint16_t>(len);
}

DirBlockEntry decode_at(std::span<const uint8_t> block, uint32_t off) {
  const uint8_t* p = block.data() + off;
  DirBlockEntry e;
  e.offset = off;
  e.inode = le32(p);
  e.rec_len = rec_len_from_disk(le16(p + 4), block.size());
  e.file_type = p[7];
  e.name = std::string_view(reinterpret_cast<const char*>(p + kDirentHeaderSize), p[6]);
  return e;
}

void write_entry(std::span<uint8_t> block, uint32_t off, uint32_t inode, uint32_t rec_len,
                 std::string_view name, uint8_t file_type) {
  uint8_t* p = block.data() + off;
  put32(p, inode);
  put16(p + 4, rec_len_to_disk(rec_len));
  p[6] = static_cast<uint8_t>(name.size());
  p[7] = file_type;
  if (!name.empty()) std::memcpy(p + kDirentHeaderSize, name.data(), name.size());
  // Zero the padding and the slack so no stale name bytes stay on disk.
  std::memset(p + kDirentHeaderSize + name.size(), 0, rec_len - kDirentHeaderSize - name.size());
}

}  // namespace

uint8_t file_type_for_mode(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return kFtRegular;
    case S_IFDIR: return kFtDir;
    case S_IFCHR: return kFtChrdev;
    case S_IFBLK: return kFtBlkdev;
    case S_IFIFO: return kFtFifo;
    case S_IFSOCK: return kFtSocket;
    case S_IFLNK: return kFtSymlink;
    default: return kFtUnknown;
  }
}

namespace dir_block {

Status validate(std::span<const uint8_t> block, uint32_t max_inode, std::string_view where) {
  const size_t bs = block.size();
  auto bad = [&](uint32_t off, const std::string& why) {
    return Status::Corruption(std::string(where) + ": directory entry at byte " + std::to_string(off) +
                              " " + why + "; run e2fsck -f on the unmounted filesystem");
  };
  if (bs < 1024 || bs > 65536 || (bs & (bs - 1)) != 0) {
    return Status::Corruption(std::string(where) + ": directory block of " + std::to_string(bs) +
                              " bytes is not a valid ext3 block size; run e2fsck -f");
  }
  uint32_t off = 0;
  while (off < bs) {
    if (bs - off < kDirentHeaderSize) return bad(off, "does not fit its 8-byte header before the block end");
    DirBlockEntry e = decode_at(block, off);
    if (e.rec_len < kMinRecLen) return bad(off, "has rec_len " + std::to_string(e.rec_len) + " < 12");
    if (e.rec_len % 4 != 0) return bad(off, "has rec_len " + std::to_string(e.rec_len) + " not a multiple of 4");
    if (e.rec_len > bs - off) {
      return bad(off, "has rec_len " + std::to_string(e.rec_len) + " running past the block end");
    }
    if (dirent_size(static_cast<uint32_t>(e.name.size())) > e.rec_len) {
      return bad(off, "has name_len " + std::to_string(e.name.size()) + " longer than its rec_len " +
                          std::to_string(e.rec_len));
    }
    if (e.inode != 0) {
      if (e.inode > max_inode) {
        return bad(off, "names inode " + std::to_string(e.inode) + " beyond the last inode " +
                            std::to_string(max_inode));
      }
      if (e.name.empty()) return bad(off, "is used (inode " + std::to_string(e.inode) + ") but has no name");
      if (e.name.find('/') != std::string_view::npos || e.name.find('\0') != std::string_view::npos) {
        return bad(off, "has a name containing '/' or NUL");
      }
    }
    off += e.rec_len;
  }
  return Status::OK();
}

std::vector<DirBlockEntry> entries(std::span<const uint8_t> block) {
  std::vector<DirBlockEntry> out;
  for (uint32_t off = 0; off < block.size();) {
    DirBlockEntry e = decode_at(block, off);
    out.push_back(e);
    if (e.rec_len == 0) break;  // unvalidated garbage: never loop forever
    off += e.rec_len;
  }
  return out;
}

std::optional<DirBlockEntry> find(std::span<const uint8_t> block, std::string_view name) {
  for (uint32_t off = 0; off < block.size();) {
    DirBlockEntry e = decode_at(block, off);
    if (e.inode != 0 && e.name == name) return e;
    if (e.rec_len == 0) break;
    off += e.rec_len;
  }
  return std::nullopt;
}

std::optional<uint32_t> insert(std::span<uint8_t> block, std::string_view name, uint32_t inode,
                               uint8_t file_type) {
  const uint32_t need = dirent_size(static_cast<uint32_t>(name.size()));
  for (uint32_t off = 0; off < block.size();) {
    DirBlockEntry e = decode_at(block, off);
    if (e.rec_len == 0) break;
    if (e.inode == 0 && e.rec_len >= need) {
      write_entry(block, off, inode, e.rec_len, name, file_type);
      return off;
    }
    const uint32_t used = dirent_size(static_cast<uint32_t>(e.name.size()));
    if (e.inode != 0 && e.rec_len >= used + need) {
      const uint32_t new_off = off + used;
      const uint32_t new_len = e.rec_len - used;
      // Shrink the existing entry to its own size (its bytes stay), then
      // the new one takes the rest of the old span.
      put16(block.data() + off + 4, rec_len_to_disk(used));
      write_entry(block, new_off, inode, new_len, name, file_type);
      return new_off;
    }
    off += e.rec_len;
  }
  return std::nullopt;
}

bool has_room(std::span<const uint8_t> block, size_t name_len) {
  const uint32_t need = dirent_size(static_cast<uint32_t>(name_len));
  for (uint32_t off = 0; off < block.size();) {
    DirBlockEntry e = decode_at(block, off);
    if (e.rec_len == 0) break;
    const uint32_t used = e.inode == 0 ? 0 : dirent_size(static_cast<uint32_t>(e.name.size()));
    if (e.rec_len >= used + need) return true;
    off += e.rec_len;
  }
  return false;
}

bool remove(std::span<uint8_t> block, uint32_t offset) {
  uint32_t prev = UINT32_MAX;
  for (uint32_t off = 0; off < block.size();) {
    DirBlockEntry e = decode_at(block, off);
    if (e.rec_len == 0) break;
    if (off == offset) {
      if (prev == UINT32_MAX) {
        // First entry of the block: keep its span, mark it unused.
        write_entry(block, off, 0, e.rec_len, std::string_view(), kFtUnknown);
      } else {
        DirBlockEntry p = decode_at(block, prev);
        put16(block.data() + prev + 4, rec_len_to_disk(p.rec_len + e.rec_len));
        std::memset(block.data() + off, 0, e.rec_len);
      }
      return true;
    }
    if (off > offset) break;
    prev = off;
    off += e.rec_len;
  }
  return false;
}

bool set_target(std::span<uint8_t> block, uint32_t offset, uint32_t inode, uint8_t file_type) {
  for (uint32_t off = 0; off < block.size();) {
    DirBlockEntry e = decode_at(block, off);
    if (e.rec_len == 0) break;
    if (off == offset) {
      put32(block.data() + off, inode);
      block[off + 7] = file_type;
      return true;
    }
    if (off > offset) break;
    off += e.rec_len;
  }
  return false;
}

void init_empty(std::span<uint8_t> block) {
  write_entry(block, 0, 0, static_cast<uint32_t>(block.size()), std::string_view(), kFtUnknown);
}

void init_first(std::span<uint8_t> block, uint32_t self_inode, uint32_t parent_inode) {
  const uint32_t dot_len = dirent_size(1);
  write_entry(block, 0, self_inode, dot_len, ".", kFtDir);
  write_entry(block, dot_len, parent_inode, static_cast<uint32_t>(block.size()) - dot_len, "..", kFtDir);
}

bool only_dot_entries(std::span<const uint8_t> block) {
  for (uint32_t off = 0; off < block.size();) {
    DirBlockEntry e = decode_at(block, off);
    if (e.inode != 0 && e.name != "." && e.name != "..") return false;
    if (e.rec_len == 0) break;
    off += e.rec_len;
  }
  return true;
}

}  // namespace dir_block
}  // namespace cext3::engine
