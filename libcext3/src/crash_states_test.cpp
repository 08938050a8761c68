#include "cext3/crash_states.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "backend_suite.h"
#include "cext3/memory_device.h"
#include "cext3/recording_device.h"

using namespace cext3;

namespace {

struct Scratch {
  std::filesystem::path path;
  Scratch() {
    const char* root = std::getenv("CEXT3_SCRATCH");
    std::filesystem::path base = root && *root ? root : std::filesystem::temp_directory_path().string();
    std::filesystem::create_directories(base);
    std::string tmpl = (base / "crashstates.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// One scripted write, as the test itself knows it.
struct ScriptWrite {
  uint64_t offset;
  std::vector<uint8_t> data;
};

// The scripted run: 12 writes in 4 non-empty flush epochs plus one empty
// epoch (two flushes in a row), with overlapping and multi-sector writes, one
// batch, and no flush after the last epoch.
struct Scripted {
  static constexpr uint64_t kSize = 256 * 1024;
  static constexpr uint32_t kSector = 512;
  std::vector<uint8_t> base;
  std::vector<ScriptWrite> writes;
  // Epochs as the script defines them: [first, first+count) per epoch number.
  std::vector<std::pair<uint64_t, uint64_t>> epochs;
  RecordLog log;
  // snapshots[k] = base + writes[0..k-1], applied one by one to a second device.
  std::vector<std::vector<uint8_t>> snapshots;

  Scripted() {
    base = testing::pattern(kSize, 7);
    MemoryDevice inner(kSize, kSector);
    inner.bytes() = base;
    RecordingOptions o;
    o.keep_in_memory = true;
    auto rec = RecordingDevice::create(inner, o);
    REQUIRE(rec.ok());
    RecordingDevice& dev = **rec;
    uint32_t seed = 100;
    uint64_t epoch_first = 0;
    auto w = [&](uint64_t off, size_t len) {
      writes.push_back({off, testing::pattern(len, seed++)});
      REQUIRE(dev.write(off, writes.back().data.data(), len).ok());
    };
    auto flush = [&] {
      REQUIRE(dev.flush().ok());
      epochs.emplace_back(epoch_first, writes.size() - epoch_first);
      epoch_first = writes.size();
    };
    // epoch 0
    w(0, 1024);
    w(4096, 4096);      // 8 sectors
    w(512, 1024);       // overlaps the first write's second sector
    flush();
    // epoch 1
    w(8192, 512);
    w(4096 + 1024, 2048);  // inside the epoch-0 8-sector write
    w(8192, 1536);      // covers the first write of this epoch
    flush();
    flush();            // epoch 2: empty
    // epoch 3: a batch of two, then an overlapping write
    {
      writes.push_back({16384, testing::pattern(4096, seed++)});
      writes.push_back({0, testing::pattern(512, seed++)});
      std::vector<IoRequest> batch = {
          {IoRequest::Op::kWrite, 16384, writes[writes.size() - 2].data.data(), 4096},
          {IoRequest::Op::kWrite, 0, writes.back().data.data(), 512}};
      REQUIRE(dev.submit(batch).ok());
    }
    w(16384 + 2048, 4096);  // overlaps the second half of the batch's first write
    flush();
    // epoch 4: never flushed
    w(32768, 512);
    w(32768, 512);      // same sector again
    w(65536, 2048);
    epochs.emplace_back(epoch_first, writes.size() - epoch_first);
    log = dev.log();

    MemoryDevice ref(kSize, kSector);
    ref.bytes() = base;
    snapshots.push_back(ref.bytes());
    for (const ScriptWrite& sw : writes) {
      REQUIRE(ref.write(sw.offset, sw.data.data(), sw.data.size()).ok());
      snapshots.push_back(ref.bytes());
    }
  }

  // base + every write of epochs before e + the writes of epoch e in `mask`, in order.
  std::vector<uint8_t> subset_reference(uint64_t e, const std::vector<bool>& in) const {
    auto img = snapshots[epochs[e].first];
    for (uint64_t i = 0; i < epochs[e].second; ++i) {
      if (!in[i]) continue;
      const ScriptWrite& sw = writes[epochs[e].first + i];
      std::memcpy(img.data() + sw.offset, sw.data.data(), sw.data.size());
    }
    return img;
  }
};

// "p17", "t3": appended rather than `tag("p", k)`, which GCC 12
// flags with a false -Wrestrict.
std::string tag(const char* prefix, uint64_t v) {
  std::string s(prefix);
  s += std::to_string(v);
  return s;
}

// The test's own reading of an "e<E>:s0x<hex>" id.
bool decode_mask_id(const std::string& id, uint64_t& epoch, uint64_t& mask) {
  if (id.empty() || id[0] != 'e') return false;
  size_t colon = id.find(':');
  if (colon == std::string::npos || id.compare(colon + 1, 3, "s0x") != 0) return false;
  epoch = std::stoull(id.substr(1, colon - 1));
  mask = std::stoull(id.substr(colon + 4), nullptr, 16);
  return true;
}

std::vector<bool> mask_bits(uint64_t mask, uint64_t w) {
  std::vector<bool> in(w);
  for (uint64_t i = 0; i < w; ++i) in[i] = mask >> i & 1;
  return in;
}

}  // namespace

TEST_CASE("crash states: the scripted log has the expected shape", "[crash]") {
  Scripted s;
  CrashStates cs(s.log);
  CHECK(cs.write_count() == 12);
  CHECK(cs.flush_count() == 4);
  REQUIRE(cs.epochs().size() == s.epochs.size());
  for (size_t e = 0; e < s.epochs.size(); ++e) {
    CHECK(cs.epochs()[e].first == s.epochs[e].first);
    CHECK(cs.epochs()[e].count == s.epochs[e].second);
  }
  uint64_t bytes = 0;
  for (const auto& w : s.writes) bytes += w.data.size();
  CHECK(cs.written_bytes() == bytes);
}

TEST_CASE("crash states: every prefix equals the writes applied one by one", "[crash]") {
  Scripted s;
  CrashStates cs(s.log);
  auto states = cs.enumerate({});
  REQUIRE(states.size() == s.writes.size() + 1);
  for (size_t k = 0; k < states.size(); ++k) CHECK(states[k].id == tag("p", k));

  // Walked in one pass.
  size_t visited = 0;
  REQUIRE(cs.for_each({}, s.base, [&](const CrashState& st, std::span<const uint8_t> img) {
               INFO(st.id);
               CHECK(st.id == tag("p", visited));
               CHECK(std::equal(img.begin(), img.end(), s.snapshots[visited].begin(), s.snapshots[visited].end()));
               ++visited;
               return Status::OK();
             }).ok());
  CHECK(visited == s.writes.size() + 1);

  // Materialized one at a time, into memory and into a file.
  Scratch dir;
  const std::string base_path = dir.file("base.img");
  REQUIRE(write_image_file(base_path, s.base).ok());
  for (size_t k = 0; k <= s.writes.size(); ++k) {
    INFO("p" << k);
    auto st = cs.parse(tag("p", k));
    REQUIRE(st.ok());
    auto dev = cs.materialize(*st, s.base);
    REQUIRE(dev.ok());
    CHECK((*dev)->bytes() == s.snapshots[k]);
    const std::string out = dir.file(tag("p", k) + ".img");
    REQUIRE(cs.materialize_file(*st, base_path, out).ok());
    CHECK(file_bytes(out) == s.snapshots[k]);
  }
}

TEST_CASE("crash states: every reorder state is earlier epochs plus exactly its subset", "[crash]") {
  Scripted s;
  CrashStates cs(s.log);
  CrashStateOptions opts;
  opts.reorder = true;
  auto states = cs.enumerate(opts);

  // Expected: for each epoch of w writes, every mask that is not 0..01..1.
  std::map<uint64_t, std::set<uint64_t>> want;
  size_t want_total = s.writes.size() + 1;
  for (uint64_t e = 0; e < s.epochs.size(); ++e) {
    const uint64_t w = s.epochs[e].second;
    for (uint64_t m = 0; m < (uint64_t{1} << w); ++m) {
      bool prefix_form = true;
      for (uint64_t i = 0, seen_zero = 0; i < w; ++i) {
        if (!(m >> i & 1)) seen_zero = 1;
        else if (seen_zero) prefix_form = false;
      }
      if (!prefix_form) want[e].insert(m);
    }
    want_total += want[e].size();
    if (want[e].empty()) want.erase(e);  // the empty epoch has no reorder states
  }
  CHECK(want_total == 13 + 4 * 4);  // four epochs of 3 writes: 8 - 4 non-prefix subsets each
  REQUIRE(states.size() == want_total);

  std::map<uint64_t, std::set<uint64_t>> got;
  size_t checked = 0;
  REQUIRE(cs.for_each(opts, s.base, [&](const CrashState& st, std::span<const uint8_t> img) {
               INFO(st.id);
               uint64_t e = 0, m = 0;
               if (st.id[0] == 'p') return Status::OK();
               REQUIRE(decode_mask_id(st.id, e, m));
               REQUIRE(e < s.epochs.size());
               CHECK(got[e].insert(m).second);
               auto ref = s.subset_reference(e, mask_bits(m, s.epochs[e].second));
               CHECK(std::equal(img.begin(), img.end(), ref.begin(), ref.end()));
               auto dev = cs.materialize(st, s.base);
               REQUIRE(dev.ok());
               CHECK((*dev)->bytes() == ref);
               ++checked;
               return Status::OK();
             }).ok());
  CHECK(got == want);
  CHECK(checked == want_total - 13);

  // Prefix-shaped subsets are valid ids too, and equal the prefix state.
  auto full = cs.parse("e1:s0x7");
  REQUIRE(full.ok());
  auto dev = cs.materialize(*full, s.base);
  REQUIRE(dev.ok());
  CHECK((*dev)->bytes() == s.snapshots[6]);
  auto none = cs.parse("e3:s0x0");
  REQUIRE(none.ok());
  dev = cs.materialize(*none, s.base);
  REQUIRE(dev.ok());
  CHECK((*dev)->bytes() == s.snapshots[6]);  // epoch 2 is empty: epoch 3 starts at write 6
}

TEST_CASE("crash states: torn writes keep the first sectors of the next write", "[crash]") {
  Scripted s;
  CrashStates cs(s.log);
  CrashStateOptions opts;
  opts.torn = true;
  std::set<std::string> ids;
  size_t torn = 0;
  REQUIRE(cs.for_each(opts, s.base, [&](const CrashState& st, std::span<const uint8_t> img) {
               ids.insert(st.id);
               size_t t = st.id.find('t');
               if (t == std::string::npos) return Status::OK();
               const uint64_t k = std::stoull(st.id.substr(1, t - 1));
               const uint64_t j = std::stoull(st.id.substr(t + 1));
               INFO(st.id);
               REQUIRE(k < s.writes.size());
               auto ref = s.snapshots[k];
               std::memcpy(ref.data() + s.writes[k].offset, s.writes[k].data.data(), j * Scripted::kSector);
               CHECK(std::equal(img.begin(), img.end(), ref.begin(), ref.end()));
               ++torn;
               return Status::OK();
             }).ok());
  // Every multi-sector write, every tear point (none has more than 9 sectors).
  size_t want = 0;
  for (size_t k = 0; k < s.writes.size(); ++k) {
    const uint64_t n = s.writes[k].data.size() / Scripted::kSector;
    for (uint64_t j = 1; j < n; ++j) {
      CHECK(ids.count(tag("p", k) + tag("t", j)) == 1);
      ++want;
    }
  }
  CHECK(torn == want);

  // A cap on tear points keeps the first and the last.
  opts.max_tears_per_write = 3;
  std::set<std::string> capped;
  for (const CrashState& st : cs.enumerate(opts))
    if (st.id.rfind("p1t", 0) == 0) capped.insert(st.id);
  CHECK(capped.size() == 3);
  CHECK(capped.count("p1t1") == 1);
  CHECK(capped.count("p1t7") == 1);
}

TEST_CASE("crash states: ids round-trip and bad ids are refused", "[crash]") {
  Scripted s;
  CrashStates cs(s.log);
  CrashStateOptions opts;
  opts.reorder = true;
  opts.torn = true;
  auto states = cs.enumerate(opts);
  std::set<std::string> unique;
  for (const CrashState& st : states) {
    INFO(st.id);
    CHECK(unique.insert(st.id).second);
    auto p = cs.parse(st.id);
    REQUIRE(p.ok());
    CHECK(p->id == st.id);
    CHECK(p->prefix == st.prefix);
    CHECK(p->extra == st.extra);
    CHECK(p->torn_sectors == st.torn_sectors);
  }
  // Non-canonical spellings parse to the canonical id.
  CHECK(cs.parse("e0:s0x06")->id == "e0:s0x6");
  CHECK(cs.parse("e0:s0X6").ok() == false);
  CHECK(cs.parse("e0:o1")->extra == std::vector<uint64_t>{1});
  CHECK(cs.parse("e0:x1")->extra == (std::vector<uint64_t>{0, 2}));
  for (const char* bad : {"", "p", "p13", "p01", "p-1", "q1", "e5:s0x1", "e0:s0x8", "e0:o3", "e0:x3",
                          "e0", "e0:", "e0:s0x", "e0:r123", "p0t0", "p0t2", "p12t1", "p1t8", "e0:s0xz"}) {
    INFO(bad);
    auto r = cs.parse(bad);
    CHECK_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
  }
}

TEST_CASE("crash states: a large epoch is sampled deterministically under the cap", "[crash]") {
  const uint64_t kSize = 1 << 20;
  const uint64_t w = GENERATE(20, 70);
  INFO("epoch of " << w << " writes");
  auto base = testing::pattern(kSize, 3);
  MemoryDevice inner(kSize, 512);
  inner.bytes() = base;
  RecordingOptions o;
  o.keep_in_memory = true;
  auto rec = RecordingDevice::create(inner, o);
  REQUIRE(rec.ok());
  std::vector<ScriptWrite> writes;
  for (uint64_t i = 0; i < w; ++i) {
    // Every fifth write lands on the previous one's sector: overlaps matter.
    const uint64_t off = (i % 5 == 4 ? i - 1 : i) * 4096;
    writes.push_back({off, testing::pattern(512 * (1 + i % 3), uint32_t(500 + i))});
    REQUIRE((*rec)->write(off, writes.back().data.data(), writes.back().data.size()).ok());
  }
  CrashStates cs((*rec)->log());
  REQUIRE(cs.epochs().size() == 1);

  // Membership as the test reads the id: masks, o<i>, x<i>; r<key> via parse.
  auto members = [&](const CrashState& st) {
    std::vector<bool> in(w, false);
    const std::string sub = st.id.substr(st.id.find(':') + 1);
    uint64_t e = 0, m = 0;
    if (decode_mask_id(st.id, e, m)) {
      REQUIRE(w <= 64);
      in = mask_bits(m, w);
    } else if (sub[0] == 'o') {
      in[std::stoull(sub.substr(1))] = true;
    } else if (sub[0] == 'x') {
      in.assign(w, true);
      in[std::stoull(sub.substr(1))] = false;
    } else {
      REQUIRE(sub[0] == 'r');
      for (uint64_t i : st.extra) in[i] = true;
    }
    return in;
  };

  CrashStateOptions opts;
  opts.prefixes = false;
  opts.reorder = true;
  opts.max_subsets_per_epoch = 2 * w + 20;  // room for every only/all-but and 22 random
  opts.seed = 1;
  auto a = cs.enumerate(opts);
  auto b = cs.enumerate(opts);
  CHECK(a.size() == opts.max_subsets_per_epoch);
  std::vector<std::string> ida, idb;
  for (auto& st : a) ida.push_back(st.id);
  for (auto& st : b) idb.push_back(st.id);
  CHECK(ida == idb);  // deterministic

  std::set<std::vector<bool>> seen;
  size_t singles = 0, randoms = 0;
  REQUIRE(cs.for_each(opts, base, [&](const CrashState& st, std::span<const uint8_t> img) {
               INFO(st.id);
               auto in = members(st);
               CHECK(seen.insert(in).second);
               size_t pop = std::count(in.begin(), in.end(), true);
               bool prefix_form = true;
               for (uint64_t i = 0; i < w; ++i) prefix_form = prefix_form && in[i] == (i < pop);
               CHECK_FALSE(prefix_form);
               if (pop == 1 || pop == w - 1) ++singles; else ++randoms;
               auto ref = base;
               for (uint64_t i = 0; i < w; ++i)
                 if (in[i]) std::memcpy(ref.data() + writes[i].offset, writes[i].data.data(), writes[i].data.size());
               CHECK(std::equal(img.begin(), img.end(), ref.begin(), ref.end()));
               return Status::OK();
             }).ok());
  CHECK(singles >= 2 * w - 2);
  CHECK(randoms > 0);

  // Another seed draws other random subsets.
  opts.seed = 2;
  auto c = cs.enumerate(opts);
  std::vector<std::string> idc;
  for (auto& st : c) idc.push_back(st.id);
  CHECK(idc != ida);

  // A cap below the only/all-but count: a sample of those alone.
  opts.max_subsets_per_epoch = 10;
  auto d = cs.enumerate(opts);
  CHECK(d.size() == 10);
  for (const CrashState& st : d) {
    auto in = members(st);
    size_t pop = std::count(in.begin(), in.end(), true);
    CHECK((pop == 1 || pop == w - 1));
  }
}

TEST_CASE("crash states: failed writes are never on disk and a failed flush is no barrier", "[crash]") {
  const uint64_t kSize = 64 * 1024;
  MemoryDevice inner(kSize, 512);
  RecordingOptions o;
  o.keep_in_memory = true;
  o.faults.fail_write = 2;
  o.faults.fail_flush = 1;
  auto rec = RecordingDevice::create(inner, o);
  REQUIRE(rec.ok());
  auto a = testing::pattern(512, 1), b = testing::pattern(512, 2), c = testing::pattern(512, 3);
  REQUIRE((*rec)->write(0, a.data(), 512).ok());
  REQUIRE_FALSE((*rec)->write(512, b.data(), 512).ok());
  REQUIRE_FALSE((*rec)->flush().ok());
  REQUIRE((*rec)->write(1024, c.data(), 512).ok());
  REQUIRE((*rec)->flush().ok());
  CrashStates cs((*rec)->log());
  CHECK(cs.write_count() == 2);
  CHECK(cs.flush_count() == 1);
  REQUIRE(cs.epochs().size() == 2);
  CHECK(cs.epochs()[0].count == 2);  // the failed flush did not split the epoch

  std::vector<uint8_t> zero(kSize, 0);
  auto last = cs.materialize(*cs.parse("p2"), zero);
  REQUIRE(last.ok());
  CHECK((*last)->bytes() == inner.bytes());
  auto only_c = cs.materialize(*cs.parse("e0:s0x2"), zero);
  REQUIRE(only_c.ok());
  auto ref = zero;
  std::memcpy(ref.data() + 1024, c.data(), 512);
  CHECK((*only_c)->bytes() == ref);
}

TEST_CASE("crash states: a log file round-trips and wrong inputs are refused", "[crash]") {
  Scripted s;
  Scratch dir;
  REQUIRE(record_log::write_file(s.log, dir.file("s.log")).ok());
  auto cs = CrashStates::load(dir.file("s.log"));
  REQUIRE(cs.ok());
  CHECK(cs->write_count() == 12);
  const std::string base_path = dir.file("base.img");
  REQUIRE(write_image_file(base_path, s.base).ok());
  auto st = cs->parse("e3:s0x5");
  REQUIRE(st.ok());
  REQUIRE(cs->materialize_file(*st, base_path, dir.file("out.img")).ok());
  std::vector<bool> in = {true, false, true};
  CHECK(file_bytes(dir.file("out.img")) == s.subset_reference(3, in));

  // The output must not be the base; the base must be the recorded device's size.
  CHECK(cs->materialize_file(*st, base_path, base_path).code() == Status::Code::kInvalidArgument);
  CHECK(file_bytes(base_path) == s.base);
  std::vector<uint8_t> small(4096, 0);
  REQUIRE(write_image_file(dir.file("small.img"), small).ok());
  CHECK(cs->materialize_file(*st, dir.file("small.img"), dir.file("o2.img")).code() ==
        Status::Code::kInvalidArgument);
  CHECK_FALSE(cs->materialize(*st, small).ok());
  CHECK_FALSE(CrashStates::load(dir.file("missing.log")).ok());

  // read_device_image / read_image_file agree with what was written.
  auto img = read_image_file(base_path);
  REQUIRE(img.ok());
  CHECK(*img == s.base);
  MemoryDevice m(Scripted::kSize, 512);
  m.bytes() = s.base;
  auto dimg = read_device_image(m);
  REQUIRE(dimg.ok());
  CHECK(*dimg == s.base);
}
