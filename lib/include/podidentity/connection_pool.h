// ConnectionPool: the task queue both servers give cpp-httplib.
//
// cpp-httplib 0.11.4 runs each accepted connection as one task on its task queue, and a
// keep-alive connection keeps its task (and so its thread) for its whole life, idle or
// not (FIELD-NOTES.md). With a fixed pool of N threads, N idle keep-alive connections
// (pods' SDKs keep theirs open; so does the API server) make connection N+1 wait until
// one of them times out: seconds, which is longer than SDK credential timeouts. This
// pool grows instead: a connection gets a thread at once as long as fewer than
// `max_threads` connections are being served, and threads that stay idle for
// `idle_exit` exit again down to `min_threads`. Only beyond `max_threads` do
// connections queue (up to `max_queued`); beyond that enqueue() blocks cpp-httplib's
// accept loop, so further connections wait in the kernel's listen backlog instead of
// in our memory. In 0.11.4 enqueue() cannot refuse a job (the job closes the socket),
// so every job runs, also the ones queued at shutdown().
//
// Thread-safety: enqueue(), shutdown() and the counters may be called from any thread;
// all state is guarded by mu_. Jobs run without the lock held.
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace podidentity {

class ConnectionPool final : public httplib::TaskQueue {
 public:
  struct Options {
    size_t min_threads = 2;    // started at once and never exit on idle
    size_t max_threads = 256;  // connections served at the same time
    size_t max_queued = 256;   // connections waiting for a thread when all are busy
    std::chrono::milliseconds idle_exit{30000};  // an idle thread above min_threads exits
  };

  // Options are clamped to sane values: max_threads >= max(1, min_threads), max_queued >= 1.
  explicit ConnectionPool(Options options);
  ~ConnectionPool() override;  // shutdown() if it has not run
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // Runs `fn` on an idle thread, or on a new one while fewer than max_threads exist;
  // otherwise queues it, blocking while max_queued jobs are already waiting. After
  // shutdown() the job runs on the calling thread (cpp-httplib does not enqueue then,
  // but a job must never be dropped).
  void enqueue(std::function<void()> fn) override;
  // Runs every queued job, then joins all threads. Idempotent.
  void shutdown() override;

  size_t threads() const;       // threads alive now
  size_t busy_threads() const;  // threads running a job now (or still starting)
  size_t queued() const;        // jobs waiting for a thread
  size_t peak_threads() const;  // most threads alive at once so far

 private:
  void Work();
  void SpawnLocked();       // requires mu_; adds one worker thread
  void ReapExitedLocked();  // requires mu_; joins workers that exited on idle

  const Options options_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_;  // a job was queued, or shutdown
  std::condition_variable not_full_;   // a queued job was taken, or shutdown
  std::deque<std::function<void()>> jobs_;
  std::list<std::thread> workers_;           // every thread started and not yet joined
  std::vector<std::thread::id> exited_;      // workers that left Work() on idle
  size_t alive_ = 0;                         // workers inside Work()
  size_t idle_ = 0;                          // workers waiting for a job
  size_t starting_ = 0;                      // workers started that have not reached Work() yet
  size_t peak_ = 0;
  bool shutdown_ = false;
};

}  // namespace podidentity
