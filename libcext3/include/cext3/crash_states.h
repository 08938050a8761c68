// Crash states: every disk image a crash could leave behind, given the base
// image (the device contents before recording began) and the record log of
// what a RecordingDevice saw (recording_device.h).
//
// The model (docs/RECORD_LOG.md has the details):
//  * the applied writes W_0 .. W_{n-1} are the log's kWrite records in log
//    order; failed writes and markers are never on disk;
//  * a completed flush is a barrier: it splits the writes into flush epochs.
//    Epoch e holds the writes between the e-th and the (e+1)-th completed
//    flush (epoch 0: before the first flush); empty epochs keep their number;
//  * prefix state "p<k>" (0 <= k <= n): exactly W_0 .. W_{k-1} are on disk;
//  * reorder states of epoch e: all writes of earlier epochs, plus ANY subset
//    of epoch e's writes (the device may complete and persist them in any
//    order before the crash), applied in log order where they overlap.
//    Subsets that are a prefix of the epoch equal some "p<k>" and are not
//    listed again. Ids: "e<e>:s0x<hex mask>" (bit i = the epoch's i-th
//    write), "e<e>:o<i>" (only write i), "e<e>:x<i>" (all but write i),
//    "e<e>:r<16 hex digits>" (a pseudo-random subset drawn from that key);
//  * torn states "p<k>t<j>" (only with CrashStateOptions::torn): W_0..W_{k-1}
//    plus the first j sectors of W_k. Sector-granular tearing is not part of
//    the default model: a write of one request is assumed to land whole or
//    not at all, except where the caller asks for torn states.
// Every id is stable: the same log (and, for sampled subsets, the same seed)
// always lists and materializes the same states.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cext3/memory_device.h"
#include "cext3/recording_device.h"
#include "cext3/status.h"

namespace cext3 {

struct CrashStateOptions {
  bool prefixes = true;   // list "p<k>" for every k in 0..n
  bool reorder = false;   // list the reorder states of every epoch
  // At most this many reorder states per epoch. An epoch with w writes whose
  // 2^w subsets fit is enumerated completely (every subset that is not a
  // prefix of the epoch); a larger epoch gets its "only i" and "all but i"
  // subsets and then seeded pseudo-random subsets up to the cap (if the
  // "only"/"all but" subsets alone exceed the cap, a seeded sample of them).
  uint64_t max_subsets_per_epoch = 1024;
  uint64_t seed = 0;        // for the sampled subsets of large epochs
  bool torn = false;        // also list torn states "p<k>t<j>"
  unsigned max_tears_per_write = 8;  // tear points per multi-sector write (first, last, spread)
};

// One crash state: which writes are on disk.
struct CrashState {
  std::string id;
  uint64_t prefix = 0;         // W_0 .. W_{prefix-1} are on disk
  std::vector<uint64_t> extra; // plus these writes (ascending, all >= prefix), in this order
  // plus the first torn_sectors sectors of W_{prefix} (0 = none)
  uint64_t torn_sectors = 0;
};

class CrashStates {
 public:
  struct Epoch {
    uint64_t first = 0;  // index of its first write
    uint64_t count = 0;  // number of writes
  };

  explicit CrashStates(RecordLog log);
  static Result<CrashStates> load(const std::string& log_path);

  const RecordLog& log() const { return *log_; }
  uint64_t write_count() const { return writes_.size(); }
  // W_i: the i-th applied write of the log.
  const LogRecord& write(uint64_t i) const { return *writes_[i]; }
  const std::vector<Epoch>& epochs() const { return epochs_; }
  uint64_t flush_count() const { return epochs_.size() - 1; }
  uint64_t written_bytes() const;

  // Every state the options select, in a fixed order: p0, its torn states,
  // the reorder states of epochs starting at W_0, p1, ... (the order
  // for_each visits them in).
  std::vector<CrashState> enumerate(const CrashStateOptions& opts) const;
  // Any valid id, listed or not (InvalidArgument names what is wrong).
  Result<CrashState> parse(const std::string& id) const;

  // Apply a state to `image`, which must hold the base image (device_size bytes).
  Status apply(const CrashState& state, std::span<uint8_t> image) const;
  // A fresh MemoryDevice holding base + state.
  Result<std::unique_ptr<MemoryDevice>> materialize(const CrashState& state,
                                                    std::span<const uint8_t> base) const;
  // Write base_path + state to out_path (created or truncated; all-zero
  // stretches of the base are left as holes).
  Status materialize_file(const CrashState& state, const std::string& base_path,
                          const std::string& out_path) const;

  // Visit every selected state with its image, copying the base once and
  // moving between states by applying and undoing writes. The image is only
  // valid during the call; copy it to modify it. A non-OK Status from visit
  // stops the walk and is returned.
  using Visitor = std::function<Status(const CrashState& state, std::span<const uint8_t> image)>;
  Status for_each(const CrashStateOptions& opts, std::span<const uint8_t> base, const Visitor& visit) const;

 private:
  std::vector<CrashState> epoch_states(uint64_t e, const CrashStateOptions& opts) const;
  std::vector<CrashState> torn_states(uint64_t k, const CrashStateOptions& opts) const;
  Status check_base_size(uint64_t size) const;
  // Generate the selected states in enumerate() order. With an image (the
  // base on entry), keep it equal to each state's contents while visit runs.
  Status walk(const CrashStateOptions& opts, std::vector<uint8_t>* image, const Visitor& visit) const;

  std::shared_ptr<const RecordLog> log_;
  std::vector<const LogRecord*> writes_;
  std::vector<Epoch> epochs_;
};

// Whole-device helpers for crash tests.
Result<std::vector<uint8_t>> read_device_image(BlockDevice& dev);
Result<std::vector<uint8_t>> read_image_file(const std::string& path);
// Write an image file (created or truncated; all-zero blocks become holes).
Status write_image_file(const std::string& path, std::span<const uint8_t> image);

}  // namespace cext3
