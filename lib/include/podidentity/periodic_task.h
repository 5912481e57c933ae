// PeriodicTask: runs a callback every `interval` on one background thread until
// Stop(). The reloaders (associations, TLS certificates, JWKS) poll with it; Stop()
// wakes the thread through a condition variable, so even an hour-long interval never
// delays shutdown.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace podidentity {

// One background thread that calls `tick` every `interval` (measured from the end of
// one tick to the start of the next; the first tick runs one interval after Start).
//
// Contract:
// - Start() while running is a no-op: the running thread keeps its interval and tick,
//   and the new `tick` is destroyed unused. Start() after Stop() starts a new thread.
// - Stop() is idempotent, wakes the thread at once and joins it: when it returns no
//   tick is running and none will run (until the next Start()). A tick in progress is
//   not interrupted; Stop() waits for it.
// - Stop() from inside `tick` (on the task's own thread) cannot join that thread: it
//   only marks the task stopped and returns. The current tick finishes, no further
//   tick runs, and the thread exits; the next Start(), Stop() or the destructor on
//   another thread joins it. Start() from inside `tick` is a no-op.
// - `tick` must not throw (it runs on a std::thread) and must not destroy the
//   PeriodicTask that runs it (a thread cannot join itself).
// - The destructor calls Stop(). An owner whose `tick` uses the owner's members must
//   call Stop() in its own destructor (a derived class: in the most derived one) so the
//   thread ends before those members are destroyed.
// Thread-safety: all member functions may be called concurrently from any thread.
// lifecycle_mu_ serialises Start()/Stop() from outside the task's thread (so a
// concurrent Stop() also returns only after the join); mu_ guards stop_, thread_id_ and
// the condition variable wait. No mutex is held while `tick` runs or during the join,
// so a tick may call Stop(), Start() or running() without deadlock.
class PeriodicTask {
 public:
  PeriodicTask() = default;
  ~PeriodicTask();
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  void Start(std::chrono::milliseconds interval, std::function<void()> tick);
  void Stop();
  // True from Start() until Stop(); after a Stop() from inside a tick it is false
  // although that tick may still be finishing.
  bool running() const;

 private:
  // Whether the caller is the task's own thread (then it must not join or wait on it).
  bool OnTaskThread() const;

  std::mutex lifecycle_mu_;  // serialises Start()/Stop() callers; guards thread_
  std::thread thread_;
  mutable std::mutex mu_;  // guards stop_, thread_id_; the thread waits on cv_ with it
  std::condition_variable cv_;
  bool stop_ = true;
  std::thread::id thread_id_;  // of the running thread; default (no thread) when none
};

}  // namespace podidentity
