// cext3-crashstate: inspect record logs and turn them into crash-state images.
//
//   cext3-crashstate info LOG
//   cext3-crashstate list LOG [--reorder] [--max-subsets N] [--seed S] [--torn] [--max-tears N]
//   cext3-crashstate materialize --base IMG --log LOG --state ID --out OUT
//   cext3-crashstate record --device IMG --log LOG --script FILE
//                           [--fail-write N] [--fail-flush N] [--power-loss-after N]
//
// The log format and the crash-state model are in docs/RECORD_LOG.md; all
// the work is done by libcext3 (recording_device.h, crash_states.h).
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cext3/crash_states.h"
#include "cext3/memory_device.h"
#include "cext3/recording_device.h"

using namespace cext3;

namespace {

int fail(const Status& s) {
  std::fprintf(stderr, "cext3-crashstate: %s\n", s.message().c_str());
  return 2;
}

int cmd_info(const std::string& log_path) {
  auto log = record_log::read_file(log_path);
  if (!log.ok()) return fail(log.status());
  uint64_t failed_writes = 0, injected_writes = 0, failed_flushes = 0, injected_flushes = 0;
  bool power_loss = false;
  for (const LogRecord& r : log->records) {
    if (r.type == LogRecord::Type::kWriteFailed) {
      ++failed_writes;
      injected_writes += (r.flags & LogRecord::kFlagInjected) != 0;
    } else if (r.type == LogRecord::Type::kFlushFailed) {
      ++failed_flushes;
      injected_flushes += (r.flags & LogRecord::kFlagInjected) != 0;
    } else if (r.type == LogRecord::Type::kPowerLoss) {
      power_loss = true;
    }
  }
  const uint64_t records = log->records.size();
  const bool truncated = log->truncated_tail;
  const uint32_t ss = log->sector_size;
  const uint64_t dev_size = log->device_size;
  CrashStates cs(std::move(log).value());
  uint64_t largest = 0, nonempty = 0;
  for (const auto& e : cs.epochs()) {
    largest = std::max(largest, e.count);
    nonempty += e.count > 0;
  }
  std::printf("log: %s\n", log_path.c_str());
  std::printf("sector_size: %u\n", ss);
  std::printf("device_size: %llu\n", static_cast<unsigned long long>(dev_size));
  std::printf("records: %llu\n", static_cast<unsigned long long>(records));
  std::printf("writes: %llu\n", static_cast<unsigned long long>(cs.write_count()));
  std::printf("bytes_written: %llu\n", static_cast<unsigned long long>(cs.written_bytes()));
  std::printf("flushes: %llu\n", static_cast<unsigned long long>(cs.flush_count()));
  std::printf("epochs: %llu\n", static_cast<unsigned long long>(cs.epochs().size()));
  std::printf("nonempty_epochs: %llu\n", static_cast<unsigned long long>(nonempty));
  std::printf("largest_epoch_writes: %llu\n", static_cast<unsigned long long>(largest));
  std::printf("failed_writes: %llu (injected %llu)\n", static_cast<unsigned long long>(failed_writes),
              static_cast<unsigned long long>(injected_writes));
  std::printf("failed_flushes: %llu (injected %llu)\n", static_cast<unsigned long long>(failed_flushes),
              static_cast<unsigned long long>(injected_flushes));
  std::printf("power_loss: %s\n", power_loss ? "yes" : "no");
  std::printf("truncated_tail: %s\n", truncated ? "yes" : "no");
  return 0;
}

int cmd_list(const std::string& log_path, const CrashStateOptions& opts) {
  auto cs = CrashStates::load(log_path);
  if (!cs.ok()) return fail(cs.status());
  std::string out;
  for (const CrashState& st : cs->enumerate(opts)) {
    out += st.id;
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int cmd_materialize(const std::string& base, const std::string& log_path, const std::string& id,
                    const std::string& out) {
  auto cs = CrashStates::load(log_path);
  if (!cs.ok()) return fail(cs.status());
  auto st = cs->parse(id);
  if (!st.ok()) return fail(st.status());
  Status s = cs->materialize_file(*st, base, out);
  if (!s.ok()) return fail(s);
  return 0;
}

// ---------------------------------------------------------------- record

// One step of a record script.
struct Step {
  enum class Kind { kWrite, kFlush, kBatch } kind = Kind::kWrite;
  int line = 0;
  uint64_t offset = 0;
  std::vector<uint8_t> data;
  std::vector<Step> batch;  // kBatch: its writes
};

Result<uint64_t> parse_number(const std::string& tok, const std::string& where) {
  if (tok.empty() || tok[0] == '-')
    return Status::InvalidArgument(where + ": \"" + tok + "\" is not a non-negative number");
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(tok.c_str(), &end, 0);
  if (errno != 0 || *end != '\0')
    return Status::InvalidArgument(where + ": \"" + tok + "\" is not a number (decimal or 0x hex)");
  return static_cast<uint64_t>(v);
}

Result<std::vector<uint8_t>> slurp(const std::string& path, const std::string& where) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound(where + ": cannot open data file " + path + "; check the path");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Script lines ('#' starts a comment):
//   write OFFSET FILE          write FILE's bytes at OFFSET
//   fill OFFSET LENGTH BYTE    write LENGTH copies of BYTE at OFFSET
//   flush
//   batch ... end              the writes between them go down as one submit()
Result<std::vector<Step>> parse_script(std::istream& in, const std::string& name) {
  std::vector<Step> steps;
  bool in_batch = false;
  std::string text;
  int lineno = 0;
  while (std::getline(in, text)) {
    ++lineno;
    const std::string where = name + " line " + std::to_string(lineno);
    if (auto hash = text.find('#'); hash != std::string::npos) text.resize(hash);
    std::istringstream ls(text);
    std::vector<std::string> tok;
    for (std::string t; ls >> t;) tok.push_back(t);
    if (tok.empty()) continue;
    Step st;
    st.line = lineno;
    if (tok[0] == "flush" && tok.size() == 1) {
      if (in_batch) return Status::InvalidArgument(where + ": flush inside a batch; end the batch first");
      st.kind = Step::Kind::kFlush;
    } else if (tok[0] == "batch" && tok.size() == 1) {
      if (in_batch) return Status::InvalidArgument(where + ": batches do not nest");
      in_batch = true;
      st.kind = Step::Kind::kBatch;
      steps.push_back(std::move(st));
      continue;
    } else if (tok[0] == "end" && tok.size() == 1) {
      if (!in_batch) return Status::InvalidArgument(where + ": \"end\" without \"batch\"");
      in_batch = false;
      continue;
    } else if (tok[0] == "write" && tok.size() == 3) {
      auto off = parse_number(tok[1], where);
      if (!off.ok()) return off.status();
      auto data = slurp(tok[2], where);
      if (!data.ok()) return data.status();
      st.offset = *off;
      st.data = std::move(data).value();
    } else if (tok[0] == "fill" && tok.size() == 4) {
      auto off = parse_number(tok[1], where);
      auto len = parse_number(tok[2], where);
      auto byte = parse_number(tok[3], where);
      for (auto* r : {&off, &len, &byte})
        if (!r->ok()) return r->status();
      if (*byte > 255) return Status::InvalidArgument(where + ": fill byte must be 0..255");
      st.offset = *off;
      st.data.assign(*len, static_cast<uint8_t>(*byte));
    } else {
      return Status::InvalidArgument(where + ": expected \"write OFFSET FILE\", \"fill OFFSET LENGTH BYTE\", "
                                             "\"flush\", \"batch\" or \"end\"");
    }
    if (in_batch) steps.back().batch.push_back(std::move(st));
    else steps.push_back(std::move(st));
  }
  if (in_batch) return Status::InvalidArgument(name + ": a batch is not closed with \"end\"");
  return steps;
}

int cmd_record(const std::string& device, const std::string& log_path, const std::string& script_path,
               const FaultPlan& faults, uint32_t sector_size) {
  std::ifstream sf;
  std::istream* in = &std::cin;
  if (script_path != "-") {
    sf.open(script_path);
    if (!sf) return fail(Status::NotFound("cannot open script " + script_path + "; check the path"));
    in = &sf;
  }
  auto steps = parse_script(*in, script_path == "-" ? "stdin" : script_path);
  if (!steps.ok()) return fail(steps.status());

  // The image is held in memory while the script runs; afterwards exactly
  // the writes the recorder let through are written back to the file, in log
  // order, so the file ends as the recorded device did.
  auto image = read_image_file(device);
  if (!image.ok()) return fail(image.status());
  if (image->size() % sector_size != 0 || image->empty())
    return fail(Status::InvalidArgument(device + " is " + std::to_string(image->size()) +
                                        " bytes, not a whole number of " + std::to_string(sector_size) +
                                        "-byte sectors; resize it or pass --sector-size"));
  MemoryDevice mem(image->size(), sector_size, device);
  mem.bytes() = std::move(image).value();
  RecordingOptions o;
  o.log_path = log_path;
  o.keep_in_memory = true;
  o.faults = faults;
  auto rec = RecordingDevice::create(mem, o);
  if (!rec.ok()) return fail(rec.status());

  int failures = 0;
  auto report = [&](int line, const char* what, const Status& s) {
    if (s.ok()) return;
    ++failures;
    std::fprintf(stderr, "cext3-crashstate: script line %d: %s failed: %s\n", line, what, s.message().c_str());
  };
  for (Step& st : *steps) {
    switch (st.kind) {
      case Step::Kind::kFlush:
        report(st.line, "flush", (*rec)->flush());
        break;
      case Step::Kind::kWrite:
        report(st.line, "write", (*rec)->write(st.offset, st.data.data(), st.data.size()));
        break;
      case Step::Kind::kBatch: {
        std::vector<IoRequest> reqs;
        for (Step& w : st.batch) reqs.push_back({IoRequest::Op::kWrite, w.offset, w.data.data(), w.data.size()});
        report(st.line, "batch", (*rec)->submit(reqs));
        break;
      }
    }
  }
  Status s = (*rec)->sync_log();
  if (!s.ok()) return fail(s);

  int fd = ::open(device.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail(Status::FromErrno(errno, "opening " + device + " to write the recorded writes back"));
  for (const LogRecord& r : (*rec)->log().records) {
    if (r.type != LogRecord::Type::kWrite) continue;
    size_t done = 0;
    while (done < r.length) {
      ssize_t n = ::pwrite(fd, r.data.data() + done, r.length - done, static_cast<off_t>(r.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        Status e = Status::FromErrno(n < 0 ? errno : EIO, "writing back to " + device);
        ::close(fd);
        return fail(e);
      }
      done += static_cast<size_t>(n);
    }
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) return fail(Status::FromErrno(errno, "syncing " + device));
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Inspect cext3 record logs and materialize crash states (docs/RECORD_LOG.md)."};
  app.require_subcommand(1);

  std::string log_path, base, state, out, device, script = "-";
  CrashStateOptions list_opts;
  bool no_prefixes = false;
  FaultPlan faults;
  uint64_t power_loss_after = 0;
  uint32_t sector_size = 512;

  auto* info = app.add_subcommand("info", "Summarize a record log: writes, flushes, epochs, bytes.");
  info->add_option("log", log_path, "record log")->required();

  auto* list = app.add_subcommand("list", "Print the ids of the crash states of a log, one per line.");
  list->add_option("log", log_path, "record log")->required();
  list->add_flag("--reorder", list_opts.reorder, "also the subsets of each flush epoch");
  list->add_option("--max-subsets", list_opts.max_subsets_per_epoch, "reorder states per epoch at most")
      ->capture_default_str();
  list->add_option("--seed", list_opts.seed, "seed for sampling large epochs")->capture_default_str();
  list->add_flag("--torn", list_opts.torn, "also multi-sector writes torn at sector boundaries");
  list->add_option("--max-tears", list_opts.max_tears_per_write, "tear points per write at most")
      ->capture_default_str();
  list->add_flag("--no-prefixes", no_prefixes, "leave out the prefix states p<k>");

  auto* mat = app.add_subcommand("materialize", "Write the image of one crash state.");
  mat->add_option("--base", base, "image the recording started from")->required();
  mat->add_option("--log", log_path, "record log")->required();
  mat->add_option("--state", state, "crash state id (from list)")->required();
  mat->add_option("--out", out, "image to write (created or replaced)")->required();

  auto* rec = app.add_subcommand("record", "Apply a script of writes and flushes to an image, recording them.");
  rec->add_option("--device", device, "image file to write")->required();
  rec->add_option("--log", log_path, "record log to create")->required();
  rec->add_option("--script", script, "script file, or - for stdin")->capture_default_str();
  rec->add_option("--fail-write", faults.fail_write, "fail the Nth write with EIO");
  rec->add_option("--fail-flush", faults.fail_flush, "fail the Nth flush with EIO");
  auto* pl = rec->add_option("--power-loss-after", power_loss_after, "power off after N writes");
  rec->add_option("--sector-size", sector_size, "sector size of the image")->capture_default_str();

  CLI11_PARSE(app, argc, argv);

  if (*info) return cmd_info(log_path);
  if (*list) {
    list_opts.prefixes = !no_prefixes;
    return cmd_list(log_path, list_opts);
  }
  if (*mat) return cmd_materialize(base, log_path, state, out);
  if (*rec) {
    if (pl->count() > 0) faults.power_loss_after_writes = power_loss_after;
    if (sector_size < 512 || (sector_size & (sector_size - 1)) != 0)
      return fail(Status::InvalidArgument("--sector-size must be a power of two, at least 512"));
    return cmd_record(device, log_path, script, faults, sector_size);
  }
  return 2;
}
