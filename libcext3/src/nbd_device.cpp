#include "cext3/nbd_device.h"

#include <libnbd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

namespace cext3 {
namespace {

// The NBD protocol lets a client send requests up to 32 MiB to any server;
// larger ones only when the server advertises a bigger maximum.
constexpr uint64_t kDefaultMaxRequest = 32u << 20;

std::string libnbd_error() {
  const char* e = nbd_get_error();
  return e && *e ? e : "unknown libnbd error";
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool contains_nocase(std::string hay, std::string needle) {
  auto lower = [](std::string& s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  lower(hay);
  lower(needle);
  return hay.find(needle) != std::string::npos;
}

// The schemes this backend opens. nbd+vsock is left out on purpose: cext3
// nodes reach their disk over TCP or a local socket only.
bool is_supported_scheme(const std::string& uri) {
  return starts_with(uri, "nbd://") || starts_with(uri, "nbds://") || starts_with(uri, "nbd+unix://") ||
         starts_with(uri, "nbds+unix://");
}

uint32_t round_up_pow2(uint64_t v) {
  uint32_t p = 1;
  while (p < v && p < (1u << 30)) p <<= 1;
  return p;
}

// One piece of a request as sent to the server: requests longer than the
// server's maximum are split, and each piece reports back to its request.
struct Piece {
  enum class Kind { kRead, kWrite, kFlush };
  Kind kind;
  size_t request;  // index into the batch
  uint64_t offset;
  uint8_t* buf;
  size_t len;
  bool fua = false;  // kWrite: NBD_CMD_FLAG_FUA (IoRequest::durable)
};

// Bookkeeping for one submit() or flush() call. Every field is touched only
// with NbdDevice::io_mu_ held: callbacks run inside nbd_poll/nbd_aio_* calls,
// which are only made under io_mu_ (or in the destructor, alone).
struct BatchState;

struct PieceContext {
  BatchState* batch;
  size_t request;
  bool completed;
};

struct BatchState {
  size_t outstanding = 0;
  std::vector<int> first_errno;   // per request, 0 = no failure seen
  std::vector<PieceContext> ctx;  // per piece; sized once, callbacks keep pointers into it
};

int on_piece_done(void* user_data, int* error) {
  auto* ctx = static_cast<PieceContext*>(user_data);
  if (*error != 0 && ctx->batch->first_errno[ctx->request] == 0) ctx->batch->first_errno[ctx->request] = *error;
  ctx->completed = true;
  --ctx->batch->outstanding;
  return 1;  // retire the command: we never ask about its cookie again
}

class NbdDevice final : public BlockDevice {
 public:
  NbdDevice(nbd_handle* h, std::string uri, uint64_t size, uint32_t sector_size, bool read_only,
            bool can_flush, uint64_t max_request, unsigned queue_depth)
      : h_(h),
        uri_(std::move(uri)),
        size_(size),
        sector_size_(sector_size),
        read_only_(read_only),
        can_flush_(can_flush),
        can_fua_(nbd_can_fua(h) == 1),
        max_request_(max_request),
        queue_depth_(std::max(1u, queue_depth)) {}

  ~NbdDevice() override {
    // A polite disconnect lets the server finish and flush; nbd_close then
    // releases the socket whatever the server did.
    nbd_shutdown(h_, 0);
    nbd_close(h_);
    abandoned_.clear();
  }

  uint64_t size() const override { return size_; }
  uint32_t sector_size() const override { return sector_size_; }
  bool read_only() const override { return read_only_; }
  std::string name() const override {
    return can_flush_ ? uri_ : uri_ + " (server cannot flush: durability is up to the server)";
  }

  Status read(uint64_t offset, void* buf, size_t len) override {
    IoRequest r{IoRequest::Op::kRead, offset, buf, len};
    return submit(std::span<IoRequest>(&r, 1));
  }

  Status write(uint64_t offset, const void* buf, size_t len) override {
    IoRequest r{IoRequest::Op::kWrite, offset, const_cast<void*>(buf), len};
    return submit(std::span<IoRequest>(&r, 1));
  }

  // The server writes FUA requests through to stable storage before it
  // replies; without FUA a durable write costs write + NBD_CMD_FLUSH.
  bool native_durable_writes() const override { return can_fua_ && !read_only_; }

  Status submit(std::span<IoRequest> batch) override {
    std::vector<Status> verdict(batch.size());
    std::vector<Piece> pieces;
    bool flush_after = false;  // a durable write on a server without FUA
    for (size_t i = 0; i < batch.size(); ++i) {
      const IoRequest& r = batch[i];
      verdict[i] = check_range(r.offset, r.len);
      if (verdict[i].ok() && r.op == IoRequest::Op::kWrite && read_only_) verdict[i] = refuse_write();
      if (!verdict[i].ok()) continue;
      const bool durable = r.op == IoRequest::Op::kWrite && r.durable && r.len > 0;
      flush_after = flush_after || (durable && !can_fua_);
      auto* p = static_cast<uint8_t*>(r.buf);
      for (size_t done = 0; done < r.len;) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(r.len - done, max_request_));
        pieces.push_back({r.op == IoRequest::Op::kRead ? Piece::Kind::kRead : Piece::Kind::kWrite, i,
                          r.offset + done, p + done, n, durable && can_fua_});
        done += n;
      }
    }
    run(pieces, batch.size(), verdict, [&](size_t i) { return batch[i]; });
    for (const Status& s : verdict)
      if (!s.ok()) return s;
    if (flush_after) return flush();
    return Status::OK();
  }

  Status flush() override {
    // Contract: flush on a read-only device is a no-op. A server that cannot
    // flush gives us nothing to wait for; name() tells the operator so.
    if (read_only_ || !can_flush_) return Status::OK();
    std::vector<Piece> pieces = {{Piece::Kind::kFlush, 0, 0, nullptr, 0}};
    std::vector<Status> verdict(1);
    run(pieces, 1, verdict, [](size_t) { return IoRequest{}; });
    return verdict[0];
  }

 private:
  Status refuse_write() const {
    return Status::IoError(name() + ": write refused: the device is read-only (" +
                               (server_read_only() ? "the server exports it read-only" : "opened read-only") +
                               "); open a writable export read-write",
                           EROFS);
  }

  bool server_read_only() const { return nbd_is_read_only(h_) == 1; }

  // `err` is the errno a failed command reported, 0 when libnbd itself said
  // the handle is dead (its last error then says why).
  Status connection_lost(int err = 0) const {
    const std::string why = err ? std::strerror(err) : libnbd_error();
    return Status::IoError(name() + ": the connection to the NBD server is gone (" + why +
                               "); check the server and reopen the device",
                           err == 0 || err == ESHUTDOWN ? ENOTCONN : err);
  }

  // Sends every piece, at most queue_depth_ in flight on the connection, and
  // waits for all of them. Fills verdict[i] for each request that failed.
  template <typename RequestOf>
  void run(const std::vector<Piece>& pieces, size_t nrequests, std::vector<Status>& verdict,
           RequestOf request_of) {
    if (pieces.empty()) return;
    auto owned = std::make_unique<BatchState>();
    BatchState& state = *owned;
    state.first_errno.assign(nrequests, 0);
    state.ctx.resize(pieces.size());
    size_t next = 0;
    std::vector<size_t> sent;  // pieces libnbd accepted
    bool dead = false;

    while (true) {
      std::lock_guard<std::mutex> g(io_mu_);
      // After the server went away libnbd would still queue commands and
      // fail them one by one; fail them here with the reason instead.
      if (!dead && (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1)) dead = true;
      while (!dead && next < pieces.size() && nbd_aio_in_flight(h_) < static_cast<int>(queue_depth_)) {
        const Piece& p = pieces[next];
        state.ctx[next] = {&state, p.request, false};
        nbd_completion_callback cb{on_piece_done, &state.ctx[next], nullptr};
        int64_t cookie = -1;
        switch (p.kind) {
          case Piece::Kind::kRead: cookie = nbd_aio_pread(h_, p.buf, p.len, p.offset, cb, 0); break;
          case Piece::Kind::kWrite:
            cookie = nbd_aio_pwrite(h_, p.buf, p.len, p.offset, cb, p.fua ? LIBNBD_CMD_FLAG_FUA : 0);
            break;
          case Piece::Kind::kFlush: cookie = nbd_aio_flush(h_, cb, 0); break;
        }
        if (cookie == -1) {
          // libnbd refused to queue it, so the callback will never run.
          if (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1) {
            dead = true;
            if (verdict[p.request].ok()) verdict[p.request] = connection_lost();
          } else if (verdict[p.request].ok()) {
            verdict[p.request] = Status::IoError(name() + ": cannot send request: " + libnbd_error());
          }
        } else {
          ++state.outstanding;
          sent.push_back(next);
        }
        ++next;
      }
      if (dead) {
        // Pieces never sent fail with the same reason.
        for (; next < pieces.size(); ++next)
          if (verdict[pieces[next].request].ok()) verdict[pieces[next].request] = connection_lost();
      }
      if (state.outstanding == 0 && next == pieces.size()) break;
      // Something of ours (or, when the queue is full, of another caller's)
      // is in flight, so a reply will come: blocking is safe. Holding io_mu_
      // here means no other thread can drain that reply between our check
      // above and the poll.
      if (nbd_poll(h_, -1) == -1) {
        if (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1) {
          // A dead handle never touches the socket or our buffers again.
          // libnbd fails the commands it still holds; should any callback be
          // left for nbd_close to run, the batch state must outlive this
          // call, so it is parked until the destructor.
          dead = true;
          for (size_t i : sent)
            if (!state.ctx[i].completed && verdict[pieces[i].request].ok())
              verdict[pieces[i].request] = connection_lost();
          if (state.outstanding != 0) {
            abandoned_.push_back(std::move(owned));
            break;
          }
        }
        // Otherwise poll(2) itself failed (EINTR): just poll again.
      }
    }

    for (size_t i = 0; i < pieces.size(); ++i) {
      size_t r = pieces[i].request;
      if (state.first_errno[r] == 0 || !verdict[r].ok()) continue;
      const int err = state.first_errno[r];
      if (pieces[i].kind == Piece::Kind::kFlush) {
        verdict[r] = Status::FromErrno(err, name() + ": NBD flush failed");
        continue;
      }
      if (err == ENOTCONN || err == ESHUTDOWN || err == ECONNRESET || err == EPIPE) {
        verdict[r] = connection_lost(err);
        continue;
      }
      const IoRequest req = request_of(r);
      const char* what = req.op == IoRequest::Op::kRead ? "read" : "write";
      Status s = Status::FromErrno(err, name() + ": NBD " + std::string(what) + " of " + std::to_string(req.len) +
                                            " bytes at offset " + std::to_string(req.offset) + " failed");
      if (err == EPERM || err == EROFS)
        s = Status::IoError(s.message() + "; the server refuses writes to this export", err);
      verdict[r] = s;
    }
  }

  nbd_handle* const h_;
  const std::string uri_;
  const uint64_t size_;
  const uint32_t sector_size_;
  const bool read_only_;
  const bool can_flush_;
  const bool can_fua_;
  const uint64_t max_request_;
  const unsigned queue_depth_;
  // Serializes every call that can advance the libnbd state machine (issue,
  // poll), so completion callbacks and BatchState are only touched under it.
  std::mutex io_mu_;
  // Batches whose commands died with the connection before libnbd reported
  // them; their callbacks may still run in nbd_close.
  std::vector<std::unique_ptr<BatchState>> abandoned_;
};

Status connect_error(const std::string& uri, int err, const std::string& why) {
  std::string hint;
  if (contains_nocase(why, "tls")) {
    hint = "the server and this client disagree on TLS; use an nbds:// URI for a TLS server, or nbd:// for a plain one";
  } else if (err == ECONNREFUSED || err == ENOENT || contains_nocase(why, "refused")) {
    hint = "no NBD server is listening there; start the server or correct the host, port or socket path";
  } else if (contains_nocase(why, "export") || contains_nocase(why, "NBD_OPT_GO")) {
    hint = "the server has no such export; check the export name in the URI";
  } else if (contains_nocase(why, "getaddrinfo") || contains_nocase(why, "name or service")) {
    hint = "the host name does not resolve; check the host in the URI";
  } else {
    hint = "check that the NBD server is running and the URI is right";
  }
  return Status::IoError("cannot open NBD export " + uri + ": " + why + "; " + hint, err ? err : EIO);
}

}  // namespace

bool is_nbd_uri(const std::string& spec) {
  return starts_with(spec, "nbd:") || starts_with(spec, "nbds:") || starts_with(spec, "nbd+") ||
         starts_with(spec, "nbds+");
}

Result<std::unique_ptr<BlockDevice>> open_nbd_device(const std::string& uri, const OpenOptions& opts) {
  if (!is_supported_scheme(uri)) {
    return Status::InvalidArgument("cannot open " + uri +
                                   ": not a supported NBD URI; use nbd://host[:port][/export] or "
                                   "nbd+unix:///[export]?socket=PATH");
  }
  nbd_handle* h = nbd_create();
  if (h == nullptr) return Status::IoError("cannot open NBD export " + uri + ": " + libnbd_error());
  // Closes the handle on every early return below.
  std::unique_ptr<nbd_handle, void (*)(nbd_handle*)> guard(h, [](nbd_handle* p) { nbd_close(p); });

  // The URI may come from cluster configuration, not only from an operator's
  // command line: never let it make libnbd read local files (tls-psk-file=)
  // and only allow the transports we support.
  if (nbd_set_uri_allow_local_file(h, false) == -1 ||
      nbd_set_uri_allow_transports(h, LIBNBD_ALLOW_TRANSPORT_TCP | LIBNBD_ALLOW_TRANSPORT_UNIX) == -1 ||
      nbd_set_uri_allow_tls(h, LIBNBD_TLS_ALLOW) == -1 || nbd_set_request_block_size(h, true) == -1) {
    return Status::IoError("cannot open NBD export " + uri + ": configuring libnbd: " + libnbd_error());
  }
  if (nbd_connect_uri(h, uri.c_str()) == -1) return connect_error(uri, nbd_get_errno(), libnbd_error());

  const int64_t export_size = nbd_get_size(h);
  if (export_size < 0) return connect_error(uri, nbd_get_errno(), libnbd_error());

  // The server's minimum block size is the unit it can address without its
  // own read-modify-write, i.e. the logical sector. 0 means "not advertised".
  const int64_t min_block = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
  const uint32_t sector_size = round_up_pow2(std::max<int64_t>(512, min_block));
  const int64_t max_block = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
  uint64_t max_request = max_block > 0 ? static_cast<uint64_t>(max_block) : kDefaultMaxRequest;
  max_request = std::max<uint64_t>(sector_size, max_request / sector_size * sector_size);

  const uint64_t size = static_cast<uint64_t>(export_size) / sector_size * sector_size;
  if (size == 0) {
    return Status::InvalidArgument("cannot open NBD export " + uri + ": the export holds " +
                                   std::to_string(export_size) + " bytes, less than one " +
                                   std::to_string(sector_size) + "-byte sector; export a disk");
  }
  const bool read_only = opts.read_only || nbd_is_read_only(h) == 1;
  const bool can_flush = nbd_can_flush(h) == 1;
  guard.release();
  return std::unique_ptr<BlockDevice>(std::make_unique<NbdDevice>(h, uri, size, sector_size, read_only, can_flush,
                                                                  max_request, opts.queue_depth));
}

}  // namespace cext3
