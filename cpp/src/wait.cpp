#include "shmbridge/wait.hpp"

#include <algorithm>
#include <sstream>
#include <thread>

namespace shmbridge {

bool AttachPoll::pause() {
  const auto now = Clock::now();
  if (now >= deadline_) return false;
  std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(next_, deadline_ - now));
  next_ = std::min<std::chrono::nanoseconds>(next_ * 2, kMaxPause);
  return true;
}

std::string AttachPoll::waited() const {
  if (deadline_ == start_) return "after one check (timeout 0)";
  std::ostringstream s;
  s << "after waiting " << std::chrono::duration<double>(Clock::now() - start_).count() << " s";
  return s.str();
}

struct Waiter::Impl {
  detail::WaitHandles* handles = nullptr;
};

Waiter::Waiter(const std::string& name, Actor self) : impl_(new Impl) {
  impl_->handles = detail::os_open_handles(name, self);
}

Waiter::~Waiter() { detail::os_close_handles(impl_->handles); }

void Waiter::block(std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& waiters,
                   std::uint32_t expected, std::chrono::nanoseconds max) {
  if (max <= std::chrono::nanoseconds::zero()) return;
  waiters.fetch_add(1, std::memory_order_seq_cst);
  if (word.load(std::memory_order_seq_cst) == expected) {
    detail::os_wait(impl_->handles, word, expected, max);
  }
  waiters.fetch_sub(1, std::memory_order_seq_cst);
}

void Waiter::wake(std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& waiters) {
  if (waiters.load(std::memory_order_seq_cst) != 0) detail::os_wake_all(impl_->handles, word);
}

}  // namespace shmbridge
