#include "podidentity/periodic_task.h"

#include <utility>

namespace podidentity {

PeriodicTask::~PeriodicTask() { Stop(); }

bool PeriodicTask::OnTaskThread() const {
  // thread_id_ stays set until the thread is joined, so no other thread can have
  // been given the same id in the meantime.
  std::lock_guard<std::mutex> lock(mu_);
  return thread_id_ == std::this_thread::get_id();
}

void PeriodicTask::Start(std::chrono::milliseconds interval, std::function<void()> tick) {
  // The task's own thread is running by definition (and cannot join itself below).
  if (OnTaskThread()) return;
  std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) return;  // already running
  }
  // A thread that stopped itself from inside a tick is still unjoined.
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = false;
  // Holding mu_ here means the new thread cannot wait (or tick) before thread_id_ is
  // set, so a tick's own Stop()/Start() always recognises its thread.
  thread_ = std::thread([this, interval, tick = std::move(tick)] {
    std::unique_lock<std::mutex> wait_lock(mu_);
    // wait_for checks stop_ before waiting, so a Stop() from inside the tick (which
    // does not notify) ends the loop without another interval.
    while (!cv_.wait_for(wait_lock, interval, [this] { return stop_; })) {
      wait_lock.unlock();
      tick();
      wait_lock.lock();
    }
  });
  thread_id_ = thread_.get_id();
}

void PeriodicTask::Stop() {
  if (OnTaskThread()) {
    // Called from a tick: joining would deadlock. Mark stopped; the loop sees it as
    // soon as this tick returns, and whoever calls Start/Stop next joins the thread.
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    return;
  }
  std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  thread_id_ = std::thread::id();
}

bool PeriodicTask::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !stop_;
}

}  // namespace podidentity
