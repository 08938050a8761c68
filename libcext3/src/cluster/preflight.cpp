#include "cext3/cluster/preflight.h"

#include <ext2fs/ext2fs.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace cext3::cluster {
namespace {

struct FeatureName {
  int kind;
  uint32_t bit;
  const char* name;
};

// The names e2fsprogs prints (lib/e2p/feature.c).
constexpr FeatureName kFeatureNames[] = {
    {0, 0x0001, "dir_prealloc"},  {0, 0x0002, "imagic_inodes"}, {0, 0x0004, "has_journal"},
    {0, 0x0008, "ext_attr"},      {0, 0x0010, "resize_inode"},  {0, 0x0020, "dir_index"},
    {0, 0x0040, "lazy_bg"},       {0, 0x0100, "snapshot_bitmap"}, {0, 0x0200, "sparse_super2"},
    {0, 0x0400, "fast_commit"},   {0, 0x0800, "stable_inodes"}, {0, 0x1000, "orphan_file"},
    {1, 0x0001, "sparse_super"},  {1, 0x0002, "large_file"},    {1, 0x0008, "huge_file"},
    {1, 0x0010, "uninit_bg"},     {1, 0x0020, "dir_nlink"},     {1, 0x0040, "extra_isize"},
    {1, 0x0080, "snapshot"},      {1, 0x0100, "quota"},         {1, 0x0200, "bigalloc"},
    {1, 0x0400, "metadata_csum"}, {1, 0x0800, "replica"},       {1, 0x1000, "read-only"},
    {1, 0x2000, "project"},       {1, 0x4000, "shared_blocks"}, {1, 0x8000, "verity"},
    {1, 0x10000, "orphan_present"},
    {2, 0x0001, "compression"},   {2, 0x0002, "filetype"},      {2, 0x0004, "needs_recovery"},
    {2, 0x0008, "journal_dev"},   {2, 0x0010, "meta_bg"},       {2, 0x0040, "extent"},
    {2, 0x0080, "64bit"},         {2, 0x0100, "mmp"},           {2, 0x0200, "flex_bg"},
    {2, 0x0400, "ea_inode"},      {2, 0x1000, "dirdata"},       {2, 0x2000, "metadata_csum_seed"},
    {2, 0x4000, "large_dir"},     {2, 0x8000, "inline_data"},   {2, 0x10000, "encrypt"},
    {2, 0x20000, "casefold"},
};

std::string real(const std::string& p) {
  std::error_code ec;
  auto r = std::filesystem::canonical(p, ec);
  return ec ? p : r.string();
}

// Mount sources in /proc/mounts (octal escapes like \040 decoded).
std::vector<std::string> mounted_sources() {
  std::vector<std::string> out;
  std::ifstream in("/proc/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string src;
    ls >> src;
    std::string dec;
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\\' && i + 3 < src.size()) {
        dec += static_cast<char>(std::strtol(src.substr(i + 1, 3).c_str(), nullptr, 8));
        i += 3;
      } else {
        dec += src[i];
      }
    }
    out.push_back(dec);
  }
  return out;
}

}  // namespace

std::string feature_names(int kind, uint32_t bits) {
  std::string out;
  for (uint32_t bit = 1; bit != 0; bit <<= 1) {
    if (!(bits & bit)) continue;
    const char* name = nullptr;
    for (const auto& f : kFeatureNames)
      if (f.kind == kind && f.bit == bit) name = f.name;
    if (!out.empty()) out += ' ';
    if (name) {
      out += name;
    } else {
      int n = 0;
      while (!((1u << n) & bit)) ++n;
      out += std::string("FEATURE_") + "CRI"[kind] + std::to_string(n);
    }
  }
  return out;
}

Status check_not_in_use(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return Status::NotFound(path + ": no such file or device; give the image file or block device holding the ext3 filesystem");
  const std::string me = real(path);
  // Direct mounts, and loop devices whose backing file is this image.
  std::vector<std::string> in_use_as{me};
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/sys/block", ec)) {
    std::ifstream bf(e.path() / "loop" / "backing_file");
    std::string backing;
    if (bf && std::getline(bf, backing) && real(backing) == me)
      in_use_as.push_back("/dev/" + e.path().filename().string());
  }
  for (const auto& src : mounted_sources()) {
    const std::string rs = real(src);
    for (const auto& name : in_use_as)
      if (rs == name)
        return Status::Busy(path + " is mounted" + (name == me ? "" : " through " + name) +
                            "; clusterify only works offline: unmount it on every machine first");
  }
  int mount_flags = 0;
  if (ext2fs_check_if_mounted(path.c_str(), &mount_flags) == 0 && (mount_flags & EXT2_MF_MOUNTED))
    return Status::Busy(path + " is mounted; clusterify only works offline: unmount it on every machine first");
  // Loop devices attached to the image but not mounted are a risk too (someone
  // may mount them any moment), but they are common in scripts; only mounts refuse.
  return Status::OK();
}

}  // namespace cext3::cluster
