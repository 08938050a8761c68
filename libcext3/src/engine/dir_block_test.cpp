// dir_block against itself (synthetic blocks, an in-memory oracle) and
// against the real tools: directories made by mke2fs/debugfs (linear, and
// htree-indexed by e2fsck -D, one and two levels) must read exactly as
// `debugfs -R "ls -p"` lists them, and after the index flag is cleared,
// entries moved around by insert/remove must leave e2fsck -fn at exit 0.
#include "engine/dir_block.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

using namespace cext3;
using namespace cext3::engine;

namespace {

struct CommandResult {
  int exit_code = -1;
  std::string out;
};

// Runs a shell command, returns its exit code and stdout (stderr only when
// the command says 2>&1).
CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    const char* s = std::getenv("CEXT3_SCRATCH");
    std::filesystem::path base = s ? s : std::filesystem::temp_directory_path() / "cext3-scratch";
    std::filesystem::create_directories(base);
    std::string tmpl = (base / "dirblock.XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// What debugfs lists for a directory: name -> (inode, mode).
struct Listed {
  uint32_t inode = 0;
  uint32_t mode = 0;
  bool operator==(const Listed&) const = default;
};
std::map<std::string, Listed> debugfs_ls(const std::string& img, const std::string& dir) {
  auto r = run("debugfs -R " + q("ls -p " + dir) + " " + q(img) + " 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  std::map<std::string, Listed> out;
  std::istringstream in(r.out);
  std::string line;
  // "/inode/mode/uid/gid/name/size/" (names here never hold '/').
  while (std::getline(in, line)) {
    if (line.size() < 2 || line[0] != '/') continue;
    std::vector<std::string> f;
    std::string cur;
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '/') {
        f.push_back(cur);
        cur.clear();
      } else {
        cur += line[i];
      }
    }
    REQUIRE(f.size() >= 5);
    // debugfs also lists a block's unused first entry (inode 0, no name).
    if (f[0] == "0") continue;
    out[f[4]] = Listed{static_cast<uint32_t>(std::stoul(f[0])), static_cast<uint32_t>(std::stoul(f[1], nullptr, 8))};
  }
  return out;
}

// "Field: value" of debugfs stat.
uint64_t stat_field(const std::string& img, const std::string& path, const std::string& field) {
  auto r = run("debugfs -R " + q("stat " + path) + " " + q(img) + " 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  auto pos = r.out.find(field + ": ");
  REQUIRE(pos != std::string::npos);
  return std::stoull(r.out.substr(pos + field.size() + 2), nullptr, 0);
}

// Physical block of each logical block of `path` (one bmap per block,
// through a debugfs command file).
std::vector<uint64_t> block_map(const std::string& img, const std::string& path, uint64_t nblocks,
                                const std::filesystem::path& tmp) {
  std::string script = (tmp / "bmap.cmds").string();
  {
    std::ofstream s(script);
    for (uint64_t i = 0; i < nblocks; ++i) s << "bmap " << path << " " << i << "\n";
  }
  auto r = run("debugfs -f " + q(script) + " " + q(img) + " 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  std::vector<uint64_t> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.find_first_not_of("0123456789") == std::string::npos) out.push_back(std::stoull(line));
  }
  REQUIRE(out.size() == nblocks);
  return out;
}

std::vector<uint8_t> read_block(const std::string& img, uint64_t block, uint32_t bs) {
  std::ifstream f(img, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(block * bs));
  std::vector<uint8_t> b(bs);
  f.read(reinterpret_cast<char*>(b.data()), bs);
  REQUIRE(f.gcount() == static_cast<std::streamsize>(bs));
  return b;
}

void write_block(const std::string& img, uint64_t block, const std::vector<uint8_t>& b) {
  std::fstream f(img, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(block * b.size()));
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(f.good());
}

// A directory image: `count` fifos in /d named with a long prefix, optionally
// indexed by e2fsck -D.
void make_dir_image(const std::string& img, uint32_t bs, unsigned size_mib, unsigned count, bool index,
                    const std::filesystem::path& tmp) {
  REQUIRE(run("mke2fs -q -F -t ext3 -N 8192 -b " + std::to_string(bs) + " " + q(img) + " " +
              std::to_string(size_mib) + "M 2>&1")
              .exit_code == 0);
  std::string script = (tmp / "mk.cmds").string();
  {
    std::ofstream s(script);
    s << "mkdir d\ncd d\nmkdir subdir\n";
    char name[128];
    for (unsigned i = 0; i < count; ++i) {
      std::snprintf(name, sizeof name, "entry_name_padded_to_be_quite_long_for_many_leaf_blocks_%05u", i);
      s << "mknod " << name << " p\n";
    }
  }
  REQUIRE(run("debugfs -w -f " + q(script) + " " + q(img) + " >/dev/null 2>&1").exit_code == 0);
  if (index) {
    // -D rebuilds every directory; exit 1 means "changed", which is the point.
    int rc = run("e2fsck -fyD " + q(img) + " >/dev/null 2>&1").exit_code;
    REQUIRE((rc == 0 || rc == 1));
  }
  REQUIRE(run("e2fsck -fn " + q(img) + " >/dev/null 2>&1").exit_code == 0);
}

struct DirBlocks {
  uint32_t bs = 0;
  std::vector<uint64_t> physical;
  std::vector<std::vector<uint8_t>> data;
};

DirBlocks load_dir(const std::string& img, const std::string& path, const std::filesystem::path& tmp) {
  DirBlocks d;
  auto r = run("dumpe2fs -h " + q(img) + " 2>/dev/null | sed -n 's/^Block size: *//p'");
  d.bs = static_cast<uint32_t>(std::stoul(r.out));
  uint64_t size = stat_field(img, path, "Size");
  REQUIRE(size % d.bs == 0);
  d.physical = block_map(img, path, size / d.bs, tmp);
  for (uint64_t p : d.physical) d.data.push_back(read_block(img, p, d.bs));
  return d;
}

// Every used entry of every block, through the functions under test.
std::map<std::string, std::pair<uint32_t, uint8_t>> read_entries(const DirBlocks& d, uint32_t max_inode) {
  std::map<std::string, std::pair<uint32_t, uint8_t>> out;
  for (size_t i = 0; i < d.data.size(); ++i) {
    Status s = dir_block::validate(d.data[i], max_inode, "block " + std::to_string(i));
    INFO(s.ToString());
    REQUIRE(s.ok());
    for (const auto& e : dir_block::entries(d.data[i])) {
      if (e.inode == 0) continue;
      CHECK(out.count(std::string(e.name)) == 0);
      out[std::string(e.name)] = {e.inode, e.file_type};
      // find() agrees with the iteration.
      auto f = dir_block::find(d.data[i], e.name);
      REQUIRE(f.has_value());
      CHECK(f->offset == e.offset);
    }
  }
  return out;
}

bool has_index_flag(const std::string& img, const std::string& path) {
  return (stat_field(img, path, "Flags") & 0x1000) != 0;
}

}  // namespace

TEST_CASE("dir_block: a new directory block holds . and .. and fills up exactly", "[engine][dir_block]") {
  for (uint32_t bs : {1024u, 4096u}) {
    std::vector<uint8_t> b(bs, 0xAB);
    dir_block::init_first(b, 12, 2);
    REQUIRE(dir_block::validate(b, 100, "t").ok());
    auto es = dir_block::entries(b);
    REQUIRE(es.size() == 2);
    CHECK(es[0].name == ".");
    CHECK(es[0].inode == 12);
    CHECK(es[0].rec_len == 12);
    CHECK(es[1].name == "..");
    CHECK(es[1].inode == 2);
    CHECK(es[1].offset + es[1].rec_len == bs);
    CHECK(es[0].file_type == kFtDir);
    CHECK(dir_block::only_dot_entries(b));

    // Names of 8 bytes need 16-byte entries; the block takes exactly
    // (bs - 12 - 12) / 16 of them after "." and ".." (".." shrinks to 12).
    const size_t expect = (bs - 24) / 16;
    size_t added = 0;
    for (int i = 0;; ++i) {
      char name[16];
      std::snprintf(name, sizeof name, "name%04d", i);
      auto off = dir_block::insert(b, name, 20 + i, kFtRegular);
      if (!off) break;
      ++added;
      REQUIRE(dir_block::validate(b, 100000, "t").ok());
    }
    CHECK(added == expect);
    CHECK_FALSE(dir_block::only_dot_entries(b));
    CHECK(dir_block::find(b, "name0003")->inode == 23);
    CHECK_FALSE(dir_block::find(b, "name9999").has_value());
    CHECK_FALSE(dir_block::find(b, "name").has_value());
  }
}

TEST_CASE("dir_block: random inserts and removes match an in-memory oracle", "[engine][dir_block]") {
  std::mt19937 rng(12345);
  for (uint32_t bs : {1024u, 2048u, 4096u}) {
    for (bool first_block : {true, false}) {
      std::vector<uint8_t> b(bs);
      if (first_block) {
        dir_block::init_first(b, 5, 2);
      } else {
        dir_block::init_empty(b);
        CHECK(dir_block::only_dot_entries(b));
      }
      std::map<std::string, uint32_t> oracle;
      for (int step = 0; step < 3000; ++step) {
        if (!oracle.empty() && rng() % 2 == 0) {
          auto it = oracle.begin();
          std::advance(it, rng() % oracle.size());
          auto e = dir_block::find(b, it->first);
          REQUIRE(e.has_value());
          REQUIRE(dir_block::remove(b, e->offset));
          oracle.erase(it);
        } else {
          std::string name(1 + rng() % 60, 'a');
          for (auto& c : name) c = static_cast<char>('a' + rng() % 26);
          if (oracle.count(name)) continue;
          uint32_t ino = 11 + rng() % 1000;
          const bool room = dir_block::has_room(b, name.size());
          const bool inserted = dir_block::insert(b, name, ino, kFtRegular).has_value();
          CHECK(room == inserted);
          if (inserted) {
            oracle[name] = ino;
          } else {
            // "No room" must be true: the free bytes of the block cannot
            // hold the entry in any one place.
            for (const auto& e : dir_block::entries(b)) {
              uint32_t used = e.inode ? dirent_size(static_cast<uint32_t>(e.name.size())) : 0;
              CHECK(e.rec_len - used < dirent_size(static_cast<uint32_t>(name.size())));
            }
          }
        }
        Status s = dir_block::validate(b, 100000, "step " + std::to_string(step));
        INFO(s.ToString());
        REQUIRE(s.ok());
      }
      std::map<std::string, uint32_t> seen;
      for (const auto& e : dir_block::entries(b)) {
        if (e.inode == 0 || e.name == "." || e.name == "..") continue;
        seen[std::string(e.name)] = e.inode;
      }
      CHECK(seen == oracle);
      if (first_block) {
        auto es = dir_block::entries(b);
        CHECK(es[0].name == ".");
        CHECK(es[1].name == "..");
      }
      // Remove all: the block is empty again.
      for (const auto& [name, ino] : oracle) REQUIRE(dir_block::remove(b, dir_block::find(b, name)->offset));
      CHECK(dir_block::only_dot_entries(b));
      if (!first_block) {
        auto es = dir_block::entries(b);
        REQUIRE(es.size() == 1);
        CHECK(es[0].inode == 0);
        CHECK(es[0].rec_len == bs);
      }
    }
  }
}

TEST_CASE("dir_block: removing the first entry of a block marks it unused; set_target", "[engine][dir_block]") {
  std::vector<uint8_t> b(1024);
  dir_block::init_empty(b);
  auto a = dir_block::insert(b, "alpha", 30, kFtRegular);
  auto c = dir_block::insert(b, "charlie", 31, kFtSymlink);
  REQUIRE(a == 0u);  // the unused whole-block entry is reused in place
  REQUIRE(c.has_value());
  CHECK(*c == dirent_size(5));
  REQUIRE(dir_block::remove(b, 0));
  auto es = dir_block::entries(b);
  REQUIRE(es.size() == 2);
  CHECK(es[0].inode == 0);
  CHECK(es[0].rec_len == dirent_size(5));
  CHECK(es[1].name == "charlie");
  CHECK_FALSE(dir_block::remove(b, 4));  // no entry starts there
  REQUIRE(dir_block::set_target(b, *c, 77, kFtDir));
  CHECK(dir_block::find(b, "charlie")->inode == 77);
  CHECK(dir_block::find(b, "charlie")->file_type == kFtDir);
  // A name too long for the unused first entry goes into charlie's slack.
  auto d = dir_block::insert(b, "a_longer_name", 32, kFtRegular);
  REQUIRE(d.has_value());
  CHECK(*d == *c + dirent_size(7));
  REQUIRE(dir_block::validate(b, 1000, "t").ok());
  // Removing the last entry merges it into the previous one.
  REQUIRE(dir_block::remove(b, *d));
  es = dir_block::entries(b);
  REQUIRE(es.size() == 2);
  CHECK(es[1].offset + es[1].rec_len == 1024);
}

TEST_CASE("dir_block: validate names each kind of damage in one line", "[engine][dir_block]") {
  auto fresh = [] {
    std::vector<uint8_t> b(1024);
    dir_block::init_first(b, 12, 2);
    dir_block::insert(b, "file", 13, kFtRegular);
    return b;
  };
  auto expect_bad = [](const std::vector<uint8_t>& b, const std::string& needle) {
    Status s = dir_block::validate(b, 1000, "directory inode 12, block 0");
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Status::Code::kCorruption);
    CHECK(s.message().rfind("directory inode 12, block 0", 0) == 0);
    CHECK(s.message().find('\n') == std::string::npos);
    CHECK(s.message().find(needle) != std::string::npos);
  };
  REQUIRE(dir_block::validate(fresh(), 1000, "x").ok());
  {
    auto b = fresh();
    b[4] = 0; b[5] = 0;  // "." rec_len 0
    expect_bad(b, "< 12");
  }
  {
    auto b = fresh();
    b[4] = 14;  // not a multiple of 4
    expect_bad(b, "multiple of 4");
  }
  {
    auto b = fresh();
    b[12 + 4] = 0xFC; b[12 + 5] = 0x03;  // ".." rec_len 1020 from offset 12
    expect_bad(b, "past the block end");
  }
  {
    auto b = fresh();
    b[6] = 9;  // "." claims a 9-byte name in a 12-byte entry
    expect_bad(b, "name_len");
  }
  {
    auto b = fresh();
    auto off = dir_block::find(b, "file")->offset;
    b[off] = 0xE8; b[off + 1] = 0x07;  // inode 2024
    expect_bad(b, "beyond the last inode");
  }
  {
    auto b = fresh();
    auto off = dir_block::find(b, "file")->offset;
    b[off + 8 + 1] = '/';
    expect_bad(b, "'/'");
  }
  {
    auto b = fresh();
    auto off = dir_block::find(b, "file")->offset;
    b[off + 6] = 0;  // used, empty name
    expect_bad(b, "no name");
  }
  {
    std::vector<uint8_t> b(1000);
    Status s = dir_block::validate(b, 1000, "x");
    CHECK(s.code() == Status::Code::kCorruption);
  }
}

TEST_CASE("dir_block reads real directories exactly as debugfs lists them", "[engine][dir_block]") {
  ScratchDir tmp;
  struct Case {
    uint32_t bs;
    unsigned mib, count;
    bool index;
    unsigned levels;  // expected htree levels below the root (-1: not indexed)
  };
  for (const Case& c : {Case{1024, 16, 40, false, 0}, Case{1024, 16, 400, true, 0}, Case{1024, 32, 3000, true, 1},
                        Case{4096, 32, 600, true, 0}}) {
    std::string img = (tmp.path / "dir.img").string();
    make_dir_image(img, c.bs, c.mib, c.count, c.index, tmp.path);
    INFO("block size " << c.bs << ", " << c.count << " entries, indexed " << c.index);
    CHECK(has_index_flag(img, "/d") == c.index);
    if (c.index) {
      auto r = run("debugfs -R " + q("htree /d") + " " + q(img) + " 2>/dev/null");
      CHECK(r.out.find("Indirect levels: " + std::to_string(c.levels)) != std::string::npos);
    }
    const uint32_t max_inode = 8192;  // mke2fs -N 8192 above makes at least this many
    DirBlocks d = load_dir(img, "/d", tmp.path);
    CHECK(d.bs == c.bs);
    auto mine = read_entries(d, max_inode);
    auto theirs = debugfs_ls(img, "/d");
    REQUIRE(mine.size() == theirs.size());
    for (const auto& [name, listed] : theirs) {
      INFO(name);
      REQUIRE(mine.count(name) == 1);
      CHECK(mine[name].first == listed.inode);
      CHECK(mine[name].second == file_type_for_mode(listed.mode));
    }
    CHECK(mine.size() == c.count + 3);  // + ".", "..", "subdir"
    // Block 0 starts with "." and "..", as e2fsck requires.
    auto es = dir_block::entries(d.data[0]);
    CHECK(es[0].name == ".");
    CHECK(es[1].name == "..");
  }
}

// The first-version htree policy of docs/ENGINE.md: clear EXT2_INDEX_FL on
// the first change, then treat every block as linear. The dx root's ".."
// entry and the dx nodes' unused whole-block entries then take new names
// (their index bytes are slack), and e2fsck must accept the result.
TEST_CASE("an htree directory with the index flag cleared is changed as a linear one", "[engine][dir_block]") {
  ScratchDir tmp;
  std::string img = (tmp.path / "htree.img").string();
  make_dir_image(img, 1024, 32, 3000, true, tmp.path);
  REQUIRE(has_index_flag(img, "/d"));
  REQUIRE(run("debugfs -w -R " + q("set_inode_field /d flags 0") + " " + q(img) + " >/dev/null 2>&1").exit_code ==
          0);
  REQUIRE_FALSE(has_index_flag(img, "/d"));
  // Read linearly, e2fsck accepts the former index as it is.
  REQUIRE(run("e2fsck -fn " + q(img) + " >/dev/null 2>&1").exit_code == 0);

  DirBlocks d = load_dir(img, "/d", tmp.path);
  auto before = read_entries(d, 8192);
  std::map<std::string, std::pair<uint32_t, uint8_t>> oracle = before;

  // Rename 600 entries: remove each from its block, insert the new name
  // into the first block with room in insert_order below.
  std::mt19937 rng(7);
  std::vector<std::string> names;
  for (const auto& [n, v] : before) {
    if (n != "." && n != ".." && n != "subdir") names.push_back(n);
  }
  std::shuffle(names.begin(), names.end(), rng);
  std::set<size_t> changed;
  bool used_block0 = false, used_dx_node = false;
  std::set<size_t> dx_nodes;
  for (size_t i = 0; i < d.data.size(); ++i) {
    auto es = dir_block::entries(d.data[i]);
    if (es.size() == 1 && es[0].inode == 0 && es[0].rec_len == d.bs) dx_nodes.insert(i);
  }
  REQUIRE(dx_nodes.size() >= 2);  // a two-level index has at least two node blocks
  // Former index blocks first (they are at the end of the directory, so a
  // plain first fit would seldom reach the dx nodes), then the leaves.
  std::vector<size_t> insert_order{0};
  insert_order.insert(insert_order.end(), dx_nodes.begin(), dx_nodes.end());
  for (size_t i = 1; i < d.data.size(); ++i) {
    if (!dx_nodes.count(i)) insert_order.push_back(i);
  }
  for (size_t k = 0; k < 600; ++k) {
    const std::string& old = names[k];
    bool removed = false;
    uint32_t ino = 0;
    uint8_t ft = 0;
    for (size_t i = 0; i < d.data.size() && !removed; ++i) {
      auto e = dir_block::find(d.data[i], old);
      if (!e) continue;
      ino = e->inode;
      ft = e->file_type;
      REQUIRE(dir_block::remove(d.data[i], e->offset));
      changed.insert(i);
      removed = true;
    }
    REQUIRE(removed);
    std::string fresh = "renamed_" + std::to_string(k);
    bool inserted = false;
    for (size_t i : insert_order) {
      if (inserted) break;
      if (dir_block::insert(d.data[i], fresh, ino, ft)) {
        changed.insert(i);
        inserted = true;
        if (i == 0) used_block0 = true;
        if (dx_nodes.count(i)) used_dx_node = true;
      }
    }
    REQUIRE(inserted);
    oracle.erase(old);
    oracle[fresh] = {ino, ft};
  }
  CHECK(used_block0);
  CHECK(used_dx_node);
  for (size_t i : changed) write_block(img, d.physical[i], d.data[i]);

  auto fsck = run("e2fsck -fn " + q(img) + " 2>&1");
  INFO(fsck.out);
  CHECK(fsck.exit_code == 0);
  auto theirs = debugfs_ls(img, "/d");
  REQUIRE(theirs.size() == oracle.size());
  for (const auto& [name, v] : oracle) {
    INFO(name);
    REQUIRE(theirs.count(name) == 1);
    CHECK(theirs[name].inode == v.first);
  }
}
