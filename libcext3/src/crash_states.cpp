// Crash-state generation from a base image and a record log (crash_states.h).
#include "cext3/crash_states.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <set>
#include <utility>

namespace cext3 {

namespace {

// splitmix64's finalizer: the one source of pseudo-randomness, so sampled
// subsets are the same on every platform and standard library.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Membership of the epoch's i-th write in the random subset named by key.
bool random_member(uint64_t key, uint64_t i) { return (mix64(key ^ mix64(i + 1)) >> 63) != 0; }

uint64_t draw_key(uint64_t seed, uint64_t epoch, uint64_t draw) {
  return mix64(mix64(seed) ^ mix64(epoch * 0x100000001B3ull + 7) ^ mix64(draw + 0x5851F42D4C957F2Dull));
}

// "<letter><decimal>": built by appending, because GCC 12 warns falsely
// (-Wrestrict) about `"literal" + std::string&&`.
std::string tag(const char* prefix, uint64_t v) {
  std::string s(prefix);
  s += std::to_string(v);
  return s;
}

std::string hex(uint64_t v, int min_digits) {
  static const char* d = "0123456789abcdef";
  std::string s;
  do {
    s.insert(s.begin(), d[v & 15]);
    v >>= 4;
  } while (v != 0);
  while (static_cast<int>(s.size()) < min_digits) s.insert(s.begin(), '0');
  return s;
}

// A strict unsigned decimal (no sign, no leading zeros except "0").
std::optional<uint64_t> parse_decimal(std::string_view s) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A subset of one epoch, as positions 0..w-1 within the epoch.
using Subset = std::vector<uint64_t>;

// A subset equal to the first j writes of the epoch is the prefix state
// p<first+j>: listed as such, not again as a reorder state.
bool is_epoch_prefix(const Subset& s) {
  for (uint64_t i = 0; i < s.size(); ++i)
    if (s[i] != i) return false;
  return true;
}

CrashState subset_state(const CrashStates::Epoch& ep, const Subset& s, std::string id) {
  CrashState st;
  st.id = std::move(id);
  st.prefix = ep.first;
  for (uint64_t i : s) st.extra.push_back(ep.first + i);
  return st;
}

Subset mask_subset(uint64_t mask, uint64_t w) {
  Subset s;
  for (uint64_t i = 0; i < w; ++i)
    if (mask >> i & 1) s.push_back(i);
  return s;
}

std::string mask_id(uint64_t e, uint64_t mask) { return tag("e", e) + ":s0x" + hex(mask, 1); }

Status write_all_at(int fd, const uint8_t* p, size_t len, uint64_t off, const std::string& path) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "writing image " + path + " (check free space)");
    p += n;
    len -= static_cast<size_t>(n);
    off += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

Status read_all_at(int fd, uint8_t* p, size_t len, uint64_t off, const std::string& path) {
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "reading image " + path);
    if (n == 0) return Status::IoError("reading image " + path + ": file ended early; it shrank while being read");
    p += n;
    len -= static_cast<size_t>(n);
    off += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

Result<uint64_t> fd_size(int fd, const std::string& path) {
  off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) return Status::FromErrno(errno, "finding the size of " + path);
  return static_cast<uint64_t>(end);
}

bool all_zero(const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; ++i)
    if (p[i] != 0) return false;
  return true;
}

constexpr size_t kChunk = 64 * 1024;

// Create path as a sparse file of `size` bytes, to be filled with pwrite.
Result<int> create_sparse(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "creating image " + path);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    Status s = Status::FromErrno(errno, "sizing image " + path + " to " + std::to_string(size) + " bytes");
    ::close(fd);
    return s;
  }
  return fd;
}

}  // namespace

// ------------------------------------------------------------------ model

CrashStates::CrashStates(RecordLog log) : log_(std::make_shared<const RecordLog>(std::move(log))) {
  Epoch cur;
  for (const LogRecord& r : log_->records) {
    if (r.type == LogRecord::Type::kWrite) {
      writes_.push_back(&r);
      ++cur.count;
    } else if (r.type == LogRecord::Type::kFlush) {
      // Only a completed flush is a barrier; a failed one promises nothing.
      epochs_.push_back(cur);
      cur = Epoch{writes_.size(), 0};
    }
  }
  epochs_.push_back(cur);
}

Result<CrashStates> CrashStates::load(const std::string& log_path) {
  auto log = record_log::read_file(log_path);
  if (!log.ok()) return log.status();
  return CrashStates(std::move(log).value());
}

uint64_t CrashStates::written_bytes() const {
  uint64_t n = 0;
  for (const LogRecord* w : writes_) n += w->length;
  return n;
}

std::vector<CrashState> CrashStates::epoch_states(uint64_t e, const CrashStateOptions& opts) const {
  const Epoch& ep = epochs_[e];
  const uint64_t w = ep.count;
  const uint64_t cap = opts.max_subsets_per_epoch;
  std::vector<CrashState> out;
  if (w < 2 || cap == 0) return out;  // every subset of 0 or 1 writes is a prefix

  // Small epoch: every subset that is not a prefix of the epoch.
  if (w < 63 && (uint64_t{1} << w) - w - 1 <= cap) {
    for (uint64_t m = 0; m < (uint64_t{1} << w); ++m) {
      if ((m & (m + 1)) == 0) continue;  // 0b0..01..1: a prefix of the epoch
      out.push_back(subset_state(ep, mask_subset(m, w), mask_id(e, m)));
    }
    return out;
  }

  // Large epoch: "only i" and "all but i", then random subsets, up to cap.
  struct Candidate {
    Subset s;
    std::string id;
  };
  std::vector<Candidate> picked;
  std::set<std::vector<uint64_t>> seen;
  auto id_for = [&](const Subset& s, const std::string& long_form) {
    if (w > 64) return tag("e", e) + ":" + long_form;
    uint64_t m = 0;
    for (uint64_t i : s) m |= uint64_t{1} << i;
    return mask_id(e, m);
  };
  std::vector<Candidate> singles;
  for (uint64_t i = 0; i < w; ++i) {
    if (i != 0) singles.push_back({Subset{i}, id_for(Subset{i}, tag("o", i))});
    if (i != w - 1) {
      Subset s;
      for (uint64_t j = 0; j < w; ++j)
        if (j != i) s.push_back(j);
      std::string id = id_for(s, tag("x", i));
      singles.push_back({std::move(s), std::move(id)});
    }
  }
  if (singles.size() > cap) {
    // A seeded sample of them, kept in their canonical order.
    std::vector<uint64_t> idx(singles.size());
    for (uint64_t i = 0; i < idx.size(); ++i) idx[i] = i;
    for (uint64_t i = idx.size() - 1; i > 0; --i)
      std::swap(idx[i], idx[mix64(draw_key(opts.seed, e, ~i)) % (i + 1)]);
    idx.resize(cap);
    std::sort(idx.begin(), idx.end());
    for (uint64_t i : idx) picked.push_back(std::move(singles[i]));
  } else {
    picked = std::move(singles);
  }
  for (const Candidate& c : picked) seen.insert(c.s);

  // Random subsets: bounded attempts, so a cap larger than the number of
  // distinct subsets cannot loop forever.
  for (uint64_t d = 0; picked.size() < cap && d < 4 * cap + 64; ++d) {
    const uint64_t key = draw_key(opts.seed, e, d);
    Subset s;
    for (uint64_t i = 0; i < w; ++i)
      if (random_member(key, i)) s.push_back(i);
    if (is_epoch_prefix(s) || !seen.insert(s).second) continue;
    std::string id = id_for(s, std::string("r").append(hex(key, 16)));
    picked.push_back({std::move(s), std::move(id)});
  }
  for (Candidate& c : picked) out.push_back(subset_state(ep, c.s, std::move(c.id)));
  return out;
}

std::vector<CrashState> CrashStates::torn_states(uint64_t k, const CrashStateOptions& opts) const {
  std::vector<CrashState> out;
  const uint64_t n = writes_[k]->length / log_->sector_size;
  if (n < 2 || opts.max_tears_per_write == 0) return out;
  std::vector<uint64_t> points;
  const uint64_t m = opts.max_tears_per_write;
  if (n - 1 <= m) {
    for (uint64_t j = 1; j < n; ++j) points.push_back(j);
  } else if (m == 1) {
    points.push_back(1);
  } else {
    // First, last, and evenly spread between them.
    for (uint64_t t = 0; t < m; ++t) points.push_back(1 + (t * (n - 2) + (m - 1) / 2) / (m - 1));
    points.erase(std::unique(points.begin(), points.end()), points.end());
  }
  for (uint64_t j : points) {
    CrashState st;
    st.id = tag("p", k) + tag("t", j);
    st.prefix = k;
    st.torn_sectors = j;
    out.push_back(std::move(st));
  }
  return out;
}


Status CrashStates::walk(const CrashStateOptions& opts, std::vector<uint8_t>* image,
                         const Visitor& visit) const {
  const uint64_t n = writes_.size();
  const std::span<const uint8_t> none;
  auto view = [&]() { return image ? std::span<const uint8_t>(*image) : none; };
  // Undo log for states built on top of the current prefix image: the bytes
  // each applied write replaced, restored in reverse order (so overlapping
  // writes unwind correctly).
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> undo;
  auto apply_range = [&](uint64_t off, const uint8_t* data, uint64_t len) {
    if (!image) return;
    undo.emplace_back(off, std::vector<uint8_t>(image->begin() + off, image->begin() + off + len));
    std::memcpy(image->data() + off, data, len);
  };
  auto unwind = [&]() {
    for (auto it = undo.rbegin(); it != undo.rend(); ++it)
      std::memcpy(image->data() + it->first, it->second.data(), it->second.size());
    undo.clear();
  };
  size_t next_epoch = 0;
  for (uint64_t k = 0; k <= n; ++k) {
    // Invariant: *image holds base + W_0..W_{k-1}.
    if (opts.prefixes) {
      CrashState st;
      st.id = tag("p", k);
      st.prefix = k;
      CEXT3_RETURN_IF_ERROR(visit(st, view()));
    }
    if (opts.torn && k < n) {
      for (const CrashState& st : torn_states(k, opts)) {
        apply_range(writes_[k]->offset, writes_[k]->data.data(), st.torn_sectors * log_->sector_size);
        Status s = visit(st, view());
        if (image) unwind();
        CEXT3_RETURN_IF_ERROR(s);
      }
    }
    while (next_epoch < epochs_.size() && epochs_[next_epoch].first == k) {
      if (opts.reorder) {
        for (const CrashState& st : epoch_states(next_epoch, opts)) {
          for (uint64_t i : st.extra) apply_range(writes_[i]->offset, writes_[i]->data.data(), writes_[i]->length);
          Status s = visit(st, view());
          if (image) unwind();
          CEXT3_RETURN_IF_ERROR(s);
        }
      }
      ++next_epoch;
    }
    if (k < n && image) std::memcpy(image->data() + writes_[k]->offset, writes_[k]->data.data(), writes_[k]->length);
  }
  return Status::OK();
}

std::vector<CrashState> CrashStates::enumerate(const CrashStateOptions& opts) const {
  std::vector<CrashState> out;
  (void)walk(opts, nullptr, [&](const CrashState& st, std::span<const uint8_t>) {
    out.push_back(st);
    return Status::OK();
  });
  return out;
}

Status CrashStates::for_each(const CrashStateOptions& opts, std::span<const uint8_t> base,
                             const Visitor& visit) const {
  CEXT3_RETURN_IF_ERROR(check_base_size(base.size()));
  std::vector<uint8_t> image(base.begin(), base.end());
  return walk(opts, &image, visit);
}

Result<CrashState> CrashStates::parse(const std::string& id) const {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("crash state \"" + id + "\": " + why +
                                   "; list valid ids with `cext3-crashstate list`");
  };
  const uint64_t n = writes_.size();
  std::string_view v(id);
  if (!v.empty() && v[0] == 'p') {
    v.remove_prefix(1);
    size_t t = v.find('t');
    auto k = parse_decimal(v.substr(0, t));
    if (!k) return bad("expected p<number> or p<number>t<sectors>");
    if (*k > n) return bad("the log has only " + std::to_string(n) + " writes");
    CrashState st;
    st.prefix = *k;
    st.id = tag("p", *k);
    if (t != std::string_view::npos) {
      auto j = parse_decimal(v.substr(t + 1));
      if (!j) return bad("expected a sector count after 't'");
      if (*k >= n) return bad("there is no write after the last one to tear");
      const uint64_t sectors = writes_[*k]->length / log_->sector_size;
      if (*j == 0 || *j >= sectors)
        return bad("write " + std::to_string(*k) + " has " + std::to_string(sectors) +
                   " sectors; a tear keeps 1.." + std::to_string(sectors > 0 ? sectors - 1 : 0) + " of them");
      st.torn_sectors = *j;
      st.id += tag("t", *j);
    }
    return st;
  }
  if (!v.empty() && v[0] == 'e') {
    size_t colon = v.find(':');
    if (colon == std::string_view::npos) return bad("expected e<epoch>:<subset>");
    auto e = parse_decimal(v.substr(1, colon - 1));
    if (!e) return bad("expected an epoch number after 'e'");
    if (*e >= epochs_.size()) return bad("the log has only " + std::to_string(epochs_.size()) + " flush epochs");
    const Epoch& ep = epochs_[*e];
    const uint64_t w = ep.count;
    std::string_view sub = v.substr(colon + 1);
    const std::string pre = tag("e", *e) + ":";
    if (sub.size() > 3 && sub.substr(0, 3) == "s0x") {
      std::string_view digits = sub.substr(3);
      Subset s;
      for (size_t d = 0; d < digits.size(); ++d) {
        int x = hex_digit(digits[digits.size() - 1 - d]);
        if (x < 0) return bad("the subset mask is not hexadecimal");
        for (int b = 0; b < 4; ++b) {
          if (!(x >> b & 1)) continue;
          const uint64_t i = 4 * d + b;
          if (i >= w) return bad("the mask names write " + std::to_string(i) + " but epoch " +
                                 std::to_string(*e) + " has " + std::to_string(w) + " writes");
          s.push_back(i);
        }
      }
      std::sort(s.begin(), s.end());
      // Canonical id: lowercase, no leading zeros.
      std::string canon;
      const uint64_t top = s.empty() ? 0 : s.back();
      for (uint64_t d = 0; d <= top / 4; ++d) {
        int x = 0;
        for (int b = 0; b < 4; ++b)
          if (std::binary_search(s.begin(), s.end(), 4 * d + b)) x |= 1 << b;
        canon.insert(canon.begin(), "0123456789abcdef"[x]);
      }
      return subset_state(ep, s, pre + "s0x" + canon);
    }
    if (!sub.empty() && (sub[0] == 'o' || sub[0] == 'x')) {
      auto i = parse_decimal(sub.substr(1));
      if (!i || *i >= w) return bad("write number out of range: epoch " + std::to_string(*e) + " has " +
                                    std::to_string(w) + " writes");
      Subset s;
      for (uint64_t j = 0; j < w; ++j)
        if ((sub[0] == 'o') == (j == *i)) s.push_back(j);
      return subset_state(ep, s, pre + sub[0] + std::to_string(*i));
    }
    if (sub.size() == 17 && sub[0] == 'r') {
      uint64_t key = 0;
      for (char c : sub.substr(1)) {
        int x = hex_digit(c);
        if (x < 0) return bad("the random-subset key is not 16 hexadecimal digits");
        key = key << 4 | static_cast<uint64_t>(x);
      }
      Subset s;
      for (uint64_t j = 0; j < w; ++j)
        if (random_member(key, j)) s.push_back(j);
      return subset_state(ep, s, pre + "r" + hex(key, 16));
    }
    return bad("expected s0x<mask>, o<i>, x<i> or r<key> after the epoch");
  }
  return bad("ids start with 'p' (prefix) or 'e' (epoch subset)");
}

Status CrashStates::check_base_size(uint64_t size) const {
  if (size != log_->device_size) {
    return Status::InvalidArgument("base image is " + std::to_string(size) + " bytes but the record log is of a " +
                                   std::to_string(log_->device_size) +
                                   "-byte device; pass the image the recording started from");
  }
  return Status::OK();
}

Status CrashStates::apply(const CrashState& st, std::span<uint8_t> image) const {
  CEXT3_RETURN_IF_ERROR(check_base_size(image.size()));
  const uint64_t n = writes_.size();
  if (st.prefix > n || (st.torn_sectors && st.prefix >= n))
    return Status::InvalidArgument("crash state " + st.id + " names writes beyond the log's " + std::to_string(n));
  for (uint64_t i : st.extra)
    if (i >= n) return Status::InvalidArgument("crash state " + st.id + " names write " + std::to_string(i) +
                                               " beyond the log's " + std::to_string(n));
  if (st.torn_sectors && st.torn_sectors * log_->sector_size >= writes_[st.prefix]->length)
    return Status::InvalidArgument("crash state " + st.id + " tears write " + std::to_string(st.prefix) +
                                   " beyond its length");
  for (uint64_t i = 0; i < st.prefix; ++i)
    std::memcpy(image.data() + writes_[i]->offset, writes_[i]->data.data(), writes_[i]->length);
  for (uint64_t i : st.extra)
    std::memcpy(image.data() + writes_[i]->offset, writes_[i]->data.data(), writes_[i]->length);
  if (st.torn_sectors)
    std::memcpy(image.data() + writes_[st.prefix]->offset, writes_[st.prefix]->data.data(),
                st.torn_sectors * log_->sector_size);
  return Status::OK();
}

Result<std::unique_ptr<MemoryDevice>> CrashStates::materialize(const CrashState& st,
                                                               std::span<const uint8_t> base) const {
  CEXT3_RETURN_IF_ERROR(check_base_size(base.size()));
  auto dev = std::make_unique<MemoryDevice>(log_->device_size, log_->sector_size, "crash state " + st.id);
  std::memcpy(dev->bytes().data(), base.data(), base.size());
  CEXT3_RETURN_IF_ERROR(apply(st, dev->bytes()));
  return dev;
}

Status CrashStates::materialize_file(const CrashState& st, const std::string& base_path,
                                     const std::string& out_path) const {
  int in = ::open(base_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::FromErrno(errno, "opening base image " + base_path);
  struct stat sin {}, sout {};
  if (::fstat(in, &sin) == 0 && ::stat(out_path.c_str(), &sout) == 0 && sin.st_dev == sout.st_dev &&
      sin.st_ino == sout.st_ino) {
    ::close(in);
    return Status::InvalidArgument("output " + out_path + " is the base image " + base_path +
                                   "; write the crash state to another file");
  }
  auto size = fd_size(in, base_path);
  Status s = size.ok() ? check_base_size(*size) : size.status();
  int out = -1;
  if (s.ok()) {
    auto fd = create_sparse(out_path, *size);
    if (fd.ok()) out = *fd; else s = fd.status();
  }
  // Copy the base once, leaving its zero stretches as holes, then lay the
  // state's writes over it.
  std::vector<uint8_t> buf(kChunk);
  for (uint64_t off = 0; s.ok() && off < log_->device_size; off += kChunk) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, log_->device_size - off));
    s = read_all_at(in, buf.data(), len, off, base_path);
    if (s.ok() && !all_zero(buf.data(), len)) s = write_all_at(out, buf.data(), len, off, out_path);
  }
  auto put = [&](uint64_t i, uint64_t len) {
    if (s.ok()) s = write_all_at(out, writes_[i]->data.data(), len, writes_[i]->offset, out_path);
  };
  if (s.ok()) {
    CrashState check = st;
    // Validate the state's indexes with apply()'s rules before writing.
    const uint64_t n = writes_.size();
    bool valid = st.prefix <= n && !(st.torn_sectors && st.prefix >= n);
    for (uint64_t i : st.extra) valid = valid && i < n;
    if (valid && st.torn_sectors) valid = st.torn_sectors * log_->sector_size < writes_[st.prefix]->length;
    if (!valid) s = Status::InvalidArgument("crash state " + st.id + " does not fit this record log");
  }
  for (uint64_t i = 0; s.ok() && i < st.prefix; ++i) put(i, writes_[i]->length);
  for (uint64_t i : st.extra) put(i, writes_[i]->length);
  if (st.torn_sectors) put(st.prefix, st.torn_sectors * log_->sector_size);
  ::close(in);
  if (out >= 0 && ::close(out) != 0 && s.ok()) s = Status::FromErrno(errno, "closing image " + out_path);
  return s;
}

// ------------------------------------------------------------------ images

Result<std::vector<uint8_t>> read_device_image(BlockDevice& dev) {
  std::vector<uint8_t> img(dev.size());
  constexpr uint64_t kStep = 1 << 20;  // a multiple of every sector size
  for (uint64_t off = 0; off < img.size(); off += kStep) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kStep, img.size() - off));
    CEXT3_RETURN_IF_ERROR(dev.read(off, img.data() + off, len));
  }
  return img;
}

Result<std::vector<uint8_t>> read_image_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "opening image " + path);
  auto size = fd_size(fd, path);
  if (!size.ok()) {
    ::close(fd);
    return size.status();
  }
  std::vector<uint8_t> img(*size);
  Status s = read_all_at(fd, img.data(), img.size(), 0, path);
  ::close(fd);
  if (!s.ok()) return s;
  return img;
}

Status write_image_file(const std::string& path, std::span<const uint8_t> image) {
  auto fd = create_sparse(path, image.size());
  if (!fd.ok()) return fd.status();
  Status s;
  for (uint64_t off = 0; s.ok() && off < image.size(); off += kChunk) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, image.size() - off));
    if (!all_zero(image.data() + off, len)) s = write_all_at(*fd, image.data() + off, len, off, path);
  }
  if (::close(*fd) != 0 && s.ok()) s = Status::FromErrno(errno, "closing image " + path);
  return s;
}

}  // namespace cext3
