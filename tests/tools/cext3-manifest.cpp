// cext3-manifest: print one line per path reachable from / in an ext2/3/4
// image, with everything "nothing lost" must preserve (type, mode, owner,
// size, mtime, link count, flags, xattrs, symlink target, device number and a
// digest of the contents). Tests take a manifest before and after convert or
// revert and compare them.
//
// This is a test oracle, so it deliberately reads the image through
// libext2fs and its own unix_io_manager, read-only, and not through
// libcext3's BlockDevice code that the tests are checking. The only piece of
// libcext3 it uses is the SHA-256 primitive (tested against sha256sum).
//
// The exact line format is documented in docs/CORPUS.md; keep the two in step.
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <et/com_err.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cext3/sha256.h"

namespace {

// Contents are digested per 4096-byte page regardless of the block size, so
// the digest of a file does not depend on the filesystem geometry nor on
// whether a zero page is a hole or an allocated block of zeros.
constexpr uint64_t kPageSize = 4096;

// Flags that change without any user-visible change: INDEX_FL is set or
// cleared when a directory gains or loses its htree (e2fsck -D, a directory
// growing past one block), so it is not part of a file's identity.
constexpr uint32_t kIgnoredFlags = EXT2_INDEX_FL;

// The failure that ends the program; printed as one line.
struct Fatal {
  std::string message;
};

std::string ErrText(errcode_t err) { return error_message(err); }

// Bytes 0x21..0x7e except '\' and space print as themselves; space too (the
// separator is a tab); '\' becomes "\\"; every other byte becomes "\xHH".
// This keeps every entry on one line and the output pure ASCII.
std::string Escape(const std::string& raw) {
  std::string out;
  out.reserve(raw.size());
  for (unsigned char c : raw) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

// libext2fs returns POSIX ACLs in the user-visible xattr format (a le32
// version, then 8-byte entries le16 tag, le16 perm, le32 id) but writes id 0
// for the entries that carry no id (USER_OBJ, GROUP_OBJ, MASK, OTHER), where
// the kernel (getfattr) shows ACL_UNDEFINED_ID. Normalize to the kernel's
// form so the digest is the one a mounted view gives.
void NormalizePosixAcl(std::string& value) {
  constexpr size_t kHeader = 4, kEntry = 8;
  if (value.size() < kHeader || (value.size() - kHeader) % kEntry != 0) return;
  for (size_t off = kHeader; off < value.size(); off += kEntry) {
    auto* e = reinterpret_cast<unsigned char*>(value.data() + off);
    unsigned tag = e[0] | (e[1] << 8);
    if (tag == 0x01 || tag == 0x04 || tag == 0x10 || tag == 0x20) std::memset(e + 4, 0xff, 4);
  }
}

void PutLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

class ManifestWriter {
 public:
  ManifestWriter(ext2_filsys fs, std::vector<std::string> excludes) : fs_(fs), excludes_(std::move(excludes)) {}

  // Walks the tree from the root and returns the lines sorted by raw path.
  std::vector<std::pair<std::string, std::string>> Run() {
    std::vector<std::pair<std::string, std::string>> lines;
    struct Pending {
      std::string path;
      ext2_ino_t ino;
    };
    std::vector<Pending> stack{{"/", EXT2_ROOT_INO}};
    std::set<ext2_ino_t> dirs_seen;  // a directory reached twice means a corrupt tree
    while (!stack.empty()) {
      Pending cur = stack.back();
      stack.pop_back();
      struct ext2_inode_large inode;
      ReadInode(cur.ino, &inode, cur.path);
      std::vector<std::pair<std::string, ext2_ino_t>> children;
      unsigned excluded_subdirs = 0;
      if (LINUX_S_ISDIR(inode.i_mode)) {
        if (!dirs_seen.insert(cur.ino).second) {
          throw Fatal{"directory " + Escape(cur.path) + " (inode " + std::to_string(cur.ino) +
                      ") is reachable twice: the directory tree is corrupt; run e2fsck -fn on the image"};
        }
        children = ListDirectory(cur.ino, cur.path);
        for (auto it = children.begin(); it != children.end();) {
          std::string child_path = (cur.path == "/" ? "/" : cur.path + "/") + it->first;
          if (IsExcluded(child_path)) {
            if (IsDirectoryInode(it->second, child_path)) ++excluded_subdirs;
            it = children.erase(it);
          } else {
            ++it;
          }
        }
      }
      lines.emplace_back(cur.path, FormatLine(cur.path, cur.ino, inode, excluded_subdirs));
      for (auto& [name, ino] : children) {
        stack.push_back({(cur.path == "/" ? "/" : cur.path + "/") + name, ino});
      }
    }
    std::sort(lines.begin(), lines.end());
    return lines;
  }

 private:
  bool IsExcluded(const std::string& path) const {
    return std::find(excludes_.begin(), excludes_.end(), path) != excludes_.end();
  }

  void ReadInode(ext2_ino_t ino, struct ext2_inode_large* inode, const std::string& path) {
    std::memset(inode, 0, sizeof(*inode));
    errcode_t err = ext2fs_read_inode_full(fs_, ino, reinterpret_cast<struct ext2_inode*>(inode), sizeof(*inode));
    if (err) {
      throw Fatal{"cannot read inode " + std::to_string(ino) + " of " + Escape(path) + ": " + ErrText(err) +
                  "; the image may be truncated or corrupt, run e2fsck -fn on it"};
    }
  }

  bool IsDirectoryInode(ext2_ino_t ino, const std::string& path) {
    struct ext2_inode_large inode;
    ReadInode(ino, &inode, path);
    return LINUX_S_ISDIR(inode.i_mode);
  }

  std::vector<std::pair<std::string, ext2_ino_t>> ListDirectory(ext2_ino_t dir, const std::string& path) {
    struct Ctx {
      std::vector<std::pair<std::string, ext2_ino_t>> entries;
    } ctx;
    auto cb = [](ext2_ino_t, int, struct ext2_dir_entry* dirent, int, int, char*, void* priv) -> int {
      auto* c = static_cast<Ctx*>(priv);
      int len = ext2fs_dirent_name_len(dirent);
      std::string name(dirent->name, static_cast<size_t>(len));
      if (dirent->inode == 0 || name == "." || name == "..") return 0;
      c->entries.emplace_back(std::move(name), dirent->inode);
      return 0;
    };
    errcode_t err = ext2fs_dir_iterate2(fs_, dir, 0, nullptr, cb, &ctx);
    if (err) {
      throw Fatal{"cannot list directory " + Escape(path) + ": " + ErrText(err) +
                  "; the image may be truncated or corrupt, run e2fsck -fn on it"};
    }
    return std::move(ctx.entries);
  }

  static const char* TypeName(uint16_t mode) {
    if (LINUX_S_ISREG(mode)) return "reg";
    if (LINUX_S_ISDIR(mode)) return "dir";
    if (LINUX_S_ISLNK(mode)) return "lnk";
    if (LINUX_S_ISCHR(mode)) return "chr";
    if (LINUX_S_ISBLK(mode)) return "blk";
    if (LINUX_S_ISFIFO(mode)) return "fifo";
    if (LINUX_S_ISSOCK(mode)) return "sock";
    return "unknown";
  }

  // mtime: seconds, plus ".nnnnnnnnn" when the inode is large enough to carry
  // i_mtime_extra (nanoseconds in its upper 30 bits, epoch extension in the low 2).
  std::string FormatMtime(const struct ext2_inode_large& inode) const {
    int64_t seconds = static_cast<int32_t>(inode.i_mtime);
    bool has_extra = EXT2_INODE_SIZE(fs_->super) > EXT2_GOOD_OLD_INODE_SIZE &&
                     inode.i_extra_isize >= offsetof(struct ext2_inode_large, i_mtime_extra) +
                                                sizeof(inode.i_mtime_extra) - EXT2_GOOD_OLD_INODE_SIZE;
    if (!has_extra) return std::to_string(seconds);
    seconds += static_cast<int64_t>(inode.i_mtime_extra & EXT4_EPOCH_MASK) << 32;
    char buf[48];
    std::snprintf(buf, sizeof(buf), "%lld.%09u", static_cast<long long>(seconds), inode.i_mtime_extra >> EXT4_EPOCH_BITS);
    return buf;
  }

  std::string FormatXattrs(ext2_ino_t ino, const std::string& path) {
    struct ext2_xattr_handle* handle = nullptr;
    errcode_t err = ext2fs_xattrs_open(fs_, ino, &handle);
    if (err == EXT2_ET_MISSING_EA_FEATURE) return "-";
    if (!err) err = ext2fs_xattrs_read(handle);
    std::vector<std::string> names;
    if (!err) {
      auto cb = [](char* name, char*, size_t, void* priv) -> int {
        static_cast<std::vector<std::string>*>(priv)->emplace_back(name);
        return 0;
      };
      err = ext2fs_xattrs_iterate(handle, cb, &names);
    }
    std::vector<std::string> parts;
    for (const std::string& name : names) {
      if (err) break;
      // ext2fs_xattr_get returns ACLs in the kernel's user-visible format
      // (what getfattr shows), so digests match the mounted view.
      void* value = nullptr;
      size_t len = 0;
      err = ext2fs_xattr_get(handle, name.c_str(), &value, &len);
      if (err) break;
      std::string bytes(static_cast<const char*>(value), len);
      ext2fs_free_mem(&value);
      if (name == "system.posix_acl_access" || name == "system.posix_acl_default") NormalizePosixAcl(bytes);
      parts.push_back(Escape(name) + "=" + cext3::Sha256::ToHex(cext3::Sha256::Of(bytes.data(), bytes.size())));
    }
    if (handle) ext2fs_xattrs_close(&handle);
    if (err) {
      throw Fatal{"cannot read extended attributes of " + Escape(path) + ": " + ErrText(err) +
                  "; the image may be corrupt, run e2fsck -fn on it"};
    }
    if (parts.empty()) return "-";
    std::sort(parts.begin(), parts.end());
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : ",") + p;
    return out;
  }

  std::string ReadSymlinkTarget(ext2_ino_t ino, struct ext2_inode_large& inode, const std::string& path) {
    uint64_t size = EXT2_I_SIZE(&inode);
    auto* small = reinterpret_cast<struct ext2_inode*>(&inode);
    if (ext2fs_is_fast_symlink(small)) {
      return std::string(reinterpret_cast<const char*>(inode.i_block), std::min<uint64_t>(size, sizeof(inode.i_block)));
    }
    return std::string(ReadWholeFile(ino, small, path, size));
  }

  std::string ReadWholeFile(ext2_ino_t ino, struct ext2_inode* inode, const std::string& path, uint64_t size) {
    ext2_file_t file = nullptr;
    errcode_t err = ext2fs_file_open2(fs_, ino, inode, 0, &file);
    std::string data(size, '\0');
    unsigned int got = 0;
    if (!err) err = ext2fs_file_read(file, data.data(), static_cast<unsigned>(size), &got);
    if (!err && got != size) err = EXT2_ET_SHORT_READ;
    if (file) ext2fs_file_close(file);
    if (err) throw Fatal{"cannot read " + Escape(path) + ": " + ErrText(err) + "; the image may be corrupt"};
    return data;
  }

  static std::string FormatRdev(const struct ext2_inode_large& inode) {
    unsigned major, minor;
    if (inode.i_block[0]) {  // old 16-bit encoding
      major = (inode.i_block[0] >> 8) & 0xff;
      minor = inode.i_block[0] & 0xff;
    } else {  // new 32-bit encoding in i_block[1]
      uint32_t dev = inode.i_block[1];
      major = (dev & 0xfff00) >> 8;
      minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    }
    return std::to_string(major) + ":" + std::to_string(minor);
  }

  // Digest of a regular file's contents, "sparse SHA-256" (docs/CORPUS.md):
  // SHA-256 over, for each 4096-byte page of the file that is not all zero
  // (in increasing order), le64(page offset) followed by the page's bytes
  // (the last page cut at the file size); then le64(file size). Only
  // allocated blocks are read, so a 4 GiB sparse file costs a few reads.
  std::string DigestContents(ext2_ino_t ino, struct ext2_inode_large& inode, const std::string& path) {
    const uint64_t size = EXT2_I_SIZE(&inode);
    const uint64_t bs = fs_->blocksize;
    struct Ctx {
      std::vector<std::pair<blk64_t, blk64_t>> map;  // logical, physical
    } ctx;
    auto cb = [](ext2_filsys, blk64_t* blocknr, e2_blkcnt_t blockcnt, blk64_t, int, void* priv) -> int {
      if (blockcnt >= 0 && *blocknr != 0) {
        static_cast<Ctx*>(priv)->map.emplace_back(static_cast<blk64_t>(blockcnt), *blocknr);
      }
      return 0;
    };
    errcode_t err = ext2fs_block_iterate3(fs_, ino, BLOCK_FLAG_READ_ONLY | BLOCK_FLAG_DATA_ONLY, nullptr, cb, &ctx);
    if (err) {
      throw Fatal{"cannot map the blocks of " + Escape(path) + ": " + ErrText(err) +
                  "; the image may be corrupt, run e2fsck -fn on it"};
    }
    std::sort(ctx.map.begin(), ctx.map.end());

    cext3::Sha256 hash;
    std::vector<uint8_t> page(kPageSize, 0);
    uint64_t page_index = UINT64_MAX;  // page currently assembled in `page`
    auto flush_page = [&]() {
      if (page_index == UINT64_MAX) return;
      uint64_t offset = page_index * kPageSize;
      uint64_t len = std::min<uint64_t>(kPageSize, size - offset);
      if (std::any_of(page.begin(), page.begin() + static_cast<long>(len), [](uint8_t b) { return b != 0; })) {
        uint8_t le[8];
        PutLe64(le, offset);
        hash.Update(le, 8);
        hash.Update(page.data(), len);
      }
      std::fill(page.begin(), page.end(), 0);
      page_index = UINT64_MAX;
    };

    std::vector<uint8_t> run;
    constexpr size_t kMaxRunBlocks = 256;
    for (size_t i = 0; i < ctx.map.size();) {
      // Coalesce blocks contiguous both logically and physically into one read.
      size_t j = i + 1;
      while (j < ctx.map.size() && j - i < kMaxRunBlocks && ctx.map[j].first == ctx.map[j - 1].first + 1 &&
             ctx.map[j].second == ctx.map[j - 1].second + 1) {
        ++j;
      }
      uint64_t file_offset = ctx.map[i].first * bs;
      if (file_offset >= size) break;  // blocks past i_size (preallocated) are not content
      run.resize((j - i) * bs);
      err = io_channel_read_blk64(fs_->io, ctx.map[i].second, static_cast<int>(j - i), run.data());
      if (err) {
        throw Fatal{"cannot read data of " + Escape(path) + " at block " + std::to_string(ctx.map[i].second) + ": " +
                    ErrText(err) + "; the image may be truncated or corrupt"};
      }
      uint64_t end = std::min<uint64_t>(size, file_offset + run.size());
      for (uint64_t off = file_offset; off < end;) {
        uint64_t idx = off / kPageSize;
        if (idx != page_index) {
          flush_page();
          page_index = idx;
        }
        uint64_t in_page = off % kPageSize;
        uint64_t n = std::min<uint64_t>(kPageSize - in_page, end - off);
        std::memcpy(page.data() + in_page, run.data() + (off - file_offset), n);
        off += n;
      }
      i = j;
    }
    flush_page();
    uint8_t le[8];
    PutLe64(le, size);
    hash.Update(le, 8);
    return cext3::Sha256::ToHex(hash.Finish());
  }

  std::string FormatLine(const std::string& path, ext2_ino_t ino, struct ext2_inode_large& inode,
                         unsigned excluded_subdirs) {
    const uint16_t mode = inode.i_mode;
    const bool is_dir = LINUX_S_ISDIR(mode);
    std::string size = is_dir ? "-" : std::to_string(EXT2_I_SIZE(&inode));
    // A subdirectory's ".." counts in its parent's link count; excluding the
    // subtree reports the count the parent would have without it.
    unsigned nlink = inode.i_links_count - (is_dir ? excluded_subdirs : 0);
    char mode_buf[16], flags_buf[16];
    std::snprintf(mode_buf, sizeof(mode_buf), "%04o", mode & 07777);
    std::snprintf(flags_buf, sizeof(flags_buf), "0x%x", inode.i_flags & ~kIgnoredFlags);
    std::string target = "-", rdev = "-", data = "-";
    if (LINUX_S_ISLNK(mode)) target = Escape(ReadSymlinkTarget(ino, inode, path));
    if (LINUX_S_ISCHR(mode) || LINUX_S_ISBLK(mode)) rdev = FormatRdev(inode);
    if (LINUX_S_ISREG(mode)) data = DigestContents(ino, inode, path);
    std::string line = Escape(path);
    for (const std::string& field :
         {std::string(TypeName(mode)), std::string(mode_buf), std::to_string(inode_uid(inode)),
          std::to_string(inode_gid(inode)), size, FormatMtime(inode), std::to_string(nlink), std::string(flags_buf),
          FormatXattrs(ino, path), target, rdev, data}) {
      line += '\t';
      line += field;
    }
    return line;
  }

  ext2_filsys fs_;
  std::vector<std::string> excludes_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Print a manifest of every path in an ext2/3/4 image (read-only, through libext2fs)"};
  std::string image;
  std::vector<std::string> excludes;
  app.add_option("IMAGE", image, "image file or block device")->required();
  app.add_option("--exclude", excludes, "absolute path of a subtree to leave out (repeatable), e.g. /.cext3");
  CLI11_PARSE(app, argc, argv);

  for (std::string& e : excludes) {
    while (e.size() > 1 && e.back() == '/') e.pop_back();
    if (e.empty() || e[0] != '/' || e == "/") {
      std::fprintf(stderr, "cext3-manifest: --exclude %s is not an absolute path below /; give e.g. /.cext3\n",
                   e.c_str());
      return 2;
    }
  }

  initialize_ext2_error_table();
  ext2_filsys fs = nullptr;
  errcode_t err = ext2fs_open2(image.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
  if (err) {
    std::fprintf(stderr,
                 "cext3-manifest: cannot open %s as an ext2/3/4 filesystem: %s; check the path and that it holds "
                 "an ext2/3/4 image (e2fsck -fn %s)\n",
                 image.c_str(), ErrText(err).c_str(), image.c_str());
    return 1;
  }
  if (ext2fs_has_feature_journal_needs_recovery(fs->super)) {
    std::fprintf(stderr, "cext3-manifest: warning: %s needs journal recovery; listing the unreplayed state\n",
                 image.c_str());
  }
  int rc = 0;
  try {
    ManifestWriter writer(fs, excludes);
    std::string out;
    for (const auto& entry : writer.Run()) {
      out += entry.second;
      out += '\n';
    }
    if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() || std::fflush(stdout) != 0) {
      std::fprintf(stderr, "cext3-manifest: cannot write the manifest to stdout: %s; check the output file system\n",
                   std::strerror(errno));
      rc = 1;
    }
  } catch (const Fatal& f) {
    std::fprintf(stderr, "cext3-manifest: %s: %s\n", image.c_str(), f.message.c_str());
    rc = 1;
  }
  ext2fs_close_free(&fs);
  return rc;
}
