// Concurrent writing of log segments while the committer builds the rest.
#include "journal/segment_writer.h"

#include <system_error>
#include <utility>

namespace cext3::journal {

SegmentWriter::SegmentWriter(BlockDevice& dev, uint32_t block_size, unsigned writers)
    : dev_(dev), bs_(block_size) {
  for (unsigned i = 0; i < writers; ++i) {
    try {
      threads_.emplace_back([this] { run(); });
    } catch (const std::system_error&) {
      break;  // fewer writers (none: push() writes synchronously)
    }
  }
}

SegmentWriter::~SegmentWriter() { (void)finish(); }

void SegmentWriter::push(std::vector<io::BlockRef> blocks) {
  if (blocks.empty()) return;
  if (threads_.empty()) {
    std::lock_guard<std::mutex> g(mu_);
    if (!first_error_.ok()) return;
    Status s = io::write_blocks(dev_, bs_, std::move(blocks));
    if (!s.ok()) first_error_ = s;
    return;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(std::move(blocks));
  }
  cv_.notify_one();
}

bool SegmentWriter::failed() {
  std::lock_guard<std::mutex> g(mu_);
  return !first_error_.ok();
}

Status SegmentWriter::finish() {
  {
    std::lock_guard<std::mutex> g(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::lock_guard<std::mutex> g(mu_);
  return first_error_;
}

void SegmentWriter::run() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return !queue_.empty() || closing_; });
    if (queue_.empty()) return;  // closing and nothing left
    std::vector<io::BlockRef> seg = std::move(queue_.front());
    queue_.pop_front();
    if (!first_error_.ok()) continue;  // the commit fails anyway
    lk.unlock();
    Status s = io::write_blocks(dev_, bs_, std::move(seg));
    lk.lock();
    if (!s.ok() && first_error_.ok()) first_error_ = s;
  }
}

}  // namespace cext3::journal
