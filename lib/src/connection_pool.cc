#include "podidentity/connection_pool.h"

#include <algorithm>
#include <system_error>
#include <utility>

namespace podidentity {

namespace {

ConnectionPool::Options Clamp(ConnectionPool::Options options) {
  options.max_threads = std::max({options.max_threads, options.min_threads, size_t{1}});
  options.max_queued = std::max(options.max_queued, size_t{1});
  if (options.idle_exit < std::chrono::milliseconds(1)) options.idle_exit = std::chrono::milliseconds(1);
  return options;
}

}  // namespace

ConnectionPool::ConnectionPool(Options options) : options_(Clamp(options)) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < options_.min_threads; ++i) SpawnLocked();
}

ConnectionPool::~ConnectionPool() { shutdown(); }

void ConnectionPool::SpawnLocked() {
  ++alive_;  // counted before the thread runs, so enqueue() never over-spawns
  ++starting_;
  try {
    workers_.emplace_back([this] { Work(); });
  } catch (const std::system_error&) {
    --alive_;  // out of threads: the job waits for a running worker (or runs inline)
    --starting_;
    return;
  }
  peak_ = std::max(peak_, alive_);
}

void ConnectionPool::ReapExitedLocked() {
  for (const std::thread::id id : exited_) {
    const auto it = std::find_if(workers_.begin(), workers_.end(), [id](const std::thread& t) { return t.get_id() == id; });
    if (it == workers_.end()) continue;
    // The worker pushed its id under mu_ and only returns after that: it needs mu_ no
    // more, so joining it while holding mu_ cannot deadlock and takes microseconds.
    it->join();
    workers_.erase(it);
  }
  exited_.clear();
}

void ConnectionPool::enqueue(std::function<void()> fn) {
  std::unique_lock<std::mutex> lock(mu_);
  ReapExitedLocked();
  // Wait only when no thread can take the job: every thread busy, none may be added,
  // and max_queued jobs already wait.
  not_full_.wait(lock, [this] {
    return shutdown_ || jobs_.size() < options_.max_queued || jobs_.size() < idle_ + starting_ ||
           alive_ < options_.max_threads;
  });
  if (!shutdown_) {
    jobs_.push_back(std::move(fn));
    // Idle threads and threads still starting take queued jobs; start one more only
    // when there are more jobs than those.
    if (jobs_.size() > idle_ + starting_ && alive_ < options_.max_threads) SpawnLocked();
    if (alive_ > 0) {
      not_empty_.notify_one();
      return;
    }
    // No worker exists and none could be started: run the job here.
    fn = std::move(jobs_.back());
    jobs_.pop_back();
  }
  lock.unlock();
  fn();
}

void ConnectionPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  --starting_;
  while (true) {
    if (jobs_.empty()) {
      if (shutdown_) break;
      ++idle_;
      const bool woken = not_empty_.wait_for(lock, options_.idle_exit, [this] { return !jobs_.empty() || shutdown_; });
      --idle_;
      if (!woken && alive_ > options_.min_threads) {
        exited_.push_back(std::this_thread::get_id());
        break;
      }
      continue;
    }
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    job();
    job = nullptr;  // the job's captures are destroyed without the lock too
    lock.lock();
  }
  --alive_;
}

void ConnectionPool::shutdown() {
  std::list<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_ && workers_.empty()) return;
    shutdown_ = true;
    workers.swap(workers_);
    exited_.clear();
  }
  not_empty_.notify_all();
  not_full_.notify_all();
  for (std::thread& t : workers) {
    if (t.joinable()) t.join();
  }
}

size_t ConnectionPool::threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return alive_;
}

size_t ConnectionPool::busy_threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return alive_ - idle_;
}

size_t ConnectionPool::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_.size();
}

size_t ConnectionPool::peak_threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

}  // namespace podidentity
