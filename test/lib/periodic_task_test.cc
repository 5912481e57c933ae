// PeriodicTask: ticks repeat, Stop() wakes an hour-long wait at once and joins (no tick
// after it returns, even one that was in progress), Stop() is idempotent and safe from
// inside a tick, Start() while running is a no-op, Start() after Stop() works, and the
// destructor stops the thread. Synchronisation is by condition variables only.
#include "podidentity/periodic_task.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace pi = podidentity;
using std::chrono::milliseconds;

namespace {

// Generous bound for waits that must succeed: only reached when the code under test
// is broken, so the test fails instead of hanging.
constexpr auto kFailAfter = std::chrono::seconds(30);

// Counts ticks and lets the test wait for a count.
class TickCounter {
 public:
  void Tick() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++count_;
    }
    cv_.notify_all();
  }
  bool WaitFor(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kFailAfter, [&] { return count_ >= n; });
  }
  int count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

}  // namespace

TEST_CASE("periodic task: ticks repeatedly until Stop") {
  pi::PeriodicTask task;
  CHECK_FALSE(task.running());
  TickCounter counter;
  task.Start(milliseconds(1), [&] { counter.Tick(); });
  CHECK(task.running());
  REQUIRE(counter.WaitFor(5));
  task.Stop();
  CHECK_FALSE(task.running());
  const int after_stop = counter.count();
  CHECK(after_stop >= 5);
  // The thread is joined: nothing can tick any more.
  std::this_thread::yield();
  CHECK(counter.count() == after_stop);
}

TEST_CASE("periodic task: Stop wakes a long wait at once") {
  pi::PeriodicTask task;
  TickCounter counter;
  task.Start(std::chrono::hours(1), [&] { counter.Tick(); });
  const auto start = std::chrono::steady_clock::now();
  task.Stop();
  const auto took = std::chrono::steady_clock::now() - start;
  // Well under the interval: the condition variable woke the thread.
  CHECK(took < std::chrono::seconds(10));
  CHECK(counter.count() == 0);
}

TEST_CASE("periodic task: no tick runs after Stop returns") {
  // Many short runs, each stopped while ticks are firing as fast as possible.
  std::atomic<bool> stop_returned{false};
  std::atomic<int> late_ticks{0};
  for (int run = 0; run < 50; ++run) {
    pi::PeriodicTask task;
    TickCounter counter;
    stop_returned = false;
    task.Start(milliseconds(0), [&] {
      if (stop_returned) ++late_ticks;
      counter.Tick();
    });
    REQUIRE(counter.WaitFor(2));
    task.Stop();
    stop_returned = true;
  }
  CHECK(late_ticks == 0);
}

TEST_CASE("periodic task: Stop waits for a tick in progress") {
  pi::PeriodicTask task;
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  std::atomic<bool> stop_returned{false};
  std::atomic<bool> stop_returned_seen_by_tick{true};
  task.Start(milliseconds(1), [&] {
    std::unique_lock<std::mutex> lock(mu);
    if (entered) return;  // only the first tick blocks
    entered = true;
    cv.notify_all();
    cv.wait_for(lock, kFailAfter, [&] { return release; });
    stop_returned_seen_by_tick = stop_returned.load();
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, kFailAfter, [&] { return entered; }));
  }
  std::thread stopper([&] {
    task.Stop();
    stop_returned = true;
  });
  // running() turns false as soon as Stop() has begun; Stop() must then still be
  // blocked joining the tick that waits for `release`.
  while (task.running()) std::this_thread::yield();
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  stopper.join();
  CHECK(stop_returned);
  CHECK_FALSE(stop_returned_seen_by_tick);
}

TEST_CASE("periodic task: Stop is idempotent, also before Start") {
  pi::PeriodicTask task;
  task.Stop();
  TickCounter counter;
  task.Start(milliseconds(1), [&] { counter.Tick(); });
  REQUIRE(counter.WaitFor(1));
  task.Stop();
  task.Stop();
  CHECK_FALSE(task.running());
}

TEST_CASE("periodic task: the destructor stops and joins the thread") {
  // The tick holds a copy of `state`: once the thread and its closure are gone, the
  // test holds the only reference.
  auto state = std::make_shared<TickCounter>();
  {
    pi::PeriodicTask task;
    task.Start(milliseconds(1), [state] { state->Tick(); });
    REQUIRE(state->WaitFor(3));
    CHECK(state.use_count() == 2);
  }
  CHECK(state.use_count() == 1);
  const int after = state->count();
  std::this_thread::yield();
  CHECK(state->count() == after);
}

TEST_CASE("periodic task: Start while running is a no-op") {
  pi::PeriodicTask task;
  TickCounter first;
  auto second = std::make_shared<TickCounter>();
  task.Start(milliseconds(1), [&] { first.Tick(); });
  task.Start(milliseconds(1), [second] { second->Tick(); });
  // The ignored tick was destroyed, not kept for later.
  CHECK(second.use_count() == 1);
  REQUIRE(first.WaitFor(3));
  task.Stop();
  CHECK(second->count() == 0);
}

TEST_CASE("periodic task: Start after Stop runs the new tick") {
  pi::PeriodicTask task;
  TickCounter first, second;
  task.Start(milliseconds(1), [&] { first.Tick(); });
  REQUIRE(first.WaitFor(2));
  task.Stop();
  const int first_total = first.count();
  task.Start(milliseconds(1), [&] { second.Tick(); });
  CHECK(task.running());
  REQUIRE(second.WaitFor(2));
  task.Stop();
  CHECK(first.count() == first_total);
}

TEST_CASE("periodic task: Stop from inside a tick ends the task without deadlock") {
  pi::PeriodicTask task;
  TickCounter counter;
  task.Start(milliseconds(1), [&] {
    task.Stop();                        // must not try to join its own thread
    task.Start(milliseconds(1), [] {});  // a no-op on the task's own thread
    counter.Tick();
  });
  REQUIRE(counter.WaitFor(1));
  // Stop() from outside joins the self-stopped thread; exactly one tick ran.
  task.Stop();
  CHECK(counter.count() == 1);
  CHECK_FALSE(task.running());

  // The task can be started again after stopping itself.
  TickCounter again;
  task.Start(milliseconds(1), [&] { again.Tick(); });
  REQUIRE(again.WaitFor(2));
  task.Stop();
}

TEST_CASE("periodic task: Start joins a thread that stopped itself") {
  pi::PeriodicTask task;
  TickCounter first, second;
  task.Start(milliseconds(1), [&] {
    task.Stop();
    first.Tick();
  });
  REQUIRE(first.WaitFor(1));
  // No outside Stop() in between: Start() must join the old thread itself.
  task.Start(milliseconds(1), [&] { second.Tick(); });
  REQUIRE(second.WaitFor(2));
  task.Stop();
  CHECK(first.count() == 1);
}

TEST_CASE("periodic task: concurrent Stop calls all return after the join") {
  auto state = std::make_shared<TickCounter>();
  pi::PeriodicTask task;
  task.Start(milliseconds(0), [state] { state->Tick(); });
  REQUIRE(state->WaitFor(2));
  std::atomic<int> saw_thread_alive{0};
  auto stop_and_check = [&] {
    task.Stop();
    // After Stop() returns the closure (holding `state`) is gone, in every caller.
    if (state.use_count() != 1) ++saw_thread_alive;
  };
  std::thread a(stop_and_check), b(stop_and_check);
  a.join();
  b.join();
  CHECK(saw_thread_alive == 0);
}
