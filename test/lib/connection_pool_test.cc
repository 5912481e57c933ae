// ConnectionPool: a job (a connection) gets a thread at once up to max_threads, so many
// idle keep-alive connections never starve a new one; beyond max_threads jobs queue,
// beyond max_queued enqueue() blocks; idle threads exit down to min_threads; shutdown()
// runs what is queued and joins; nothing is ever dropped. Jobs block on gates and the
// test waits on condition variables (or on the pool's own counters with a deadline).
#include "podidentity/connection_pool.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "test_support.h"

namespace pi = podidentity;
using podidentity::testing::Signal;
using std::chrono::milliseconds;

namespace {

// Jobs wait on it until Open().
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Waits for a condition on the pool's counters; fails (false) after 30 s.
bool Eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

pi::ConnectionPool::Options Opts(size_t min, size_t max, size_t queued, milliseconds idle = milliseconds(30000)) {
  pi::ConnectionPool::Options o;
  o.min_threads = min;
  o.max_threads = max;
  o.max_queued = queued;
  o.idle_exit = idle;
  return o;
}

}  // namespace

TEST_CASE("connection pool: starts min_threads and runs a job") {
  pi::ConnectionPool pool(Opts(2, 8, 8));
  CHECK(pool.threads() == 2);
  Signal done;
  pool.enqueue([&] { done.Notify(); });
  REQUIRE(done.WaitFor(1));
  pool.shutdown();
  CHECK(pool.threads() == 0);
}

TEST_CASE("connection pool: every held connection gets its own thread up to max_threads") {
  // 200 jobs that each wait until all 200 have started: a fixed pool of fewer threads
  // would never finish this (the situation of 200 idle keep-alive connections).
  constexpr int kJobs = 200;
  pi::ConnectionPool pool(Opts(2, 256, 16));
  Signal started;
  Gate gate;
  for (int i = 0; i < kJobs; ++i) {
    pool.enqueue([&] {
      started.Notify();
      gate.Wait();
    });
  }
  REQUIRE(started.WaitFor(kJobs, std::chrono::seconds(30)));
  CHECK(pool.threads() == kJobs);
  CHECK(pool.busy_threads() == kJobs);
  CHECK(pool.queued() == 0);
  gate.Open();
  pool.shutdown();
  CHECK(pool.peak_threads() == kJobs);
}

TEST_CASE("connection pool: beyond max_threads jobs queue and run when a thread frees") {
  pi::ConnectionPool pool(Opts(1, 2, 8));
  Signal started;
  Gate gate;
  std::atomic<int> finished{0};
  for (int i = 0; i < 3; ++i) {
    pool.enqueue([&] {
      started.Notify();
      gate.Wait();
      ++finished;
    });
  }
  REQUIRE(started.WaitFor(2));
  // Both threads are blocked on the gate, so the third job cannot have been taken.
  CHECK(pool.threads() == 2);
  CHECK(pool.queued() == 1);
  gate.Open();
  REQUIRE(started.WaitFor(3));
  pool.shutdown();
  CHECK(finished.load() == 3);
  CHECK(pool.peak_threads() == 2);
}

TEST_CASE("connection pool: enqueue blocks once max_queued jobs wait, and resumes") {
  pi::ConnectionPool pool(Opts(1, 1, 1));
  Signal started;
  Gate gate;
  auto job = [&] {
    started.Notify();
    gate.Wait();
  };
  pool.enqueue(job);
  REQUIRE(started.WaitFor(1));
  pool.enqueue(job);  // queued: the one thread is busy
  CHECK(pool.queued() == 1);
  std::atomic<bool> third_enqueued{false};
  std::thread producer([&] {
    pool.enqueue(job);
    third_enqueued = true;
  });
  // The producer can only get past enqueue() once the queued job has been taken.
  CHECK_FALSE(third_enqueued.load());
  gate.Open();
  producer.join();
  CHECK(third_enqueued.load());
  REQUIRE(started.WaitFor(3));
  pool.shutdown();
}

TEST_CASE("connection pool: idle threads exit down to min_threads, and the pool grows again") {
  pi::ConnectionPool pool(Opts(1, 4, 4, milliseconds(5)));
  for (int round = 0; round < 2; ++round) {
    Signal started;
    Gate gate;
    for (int i = 0; i < 4; ++i) {
      pool.enqueue([&] {
        started.Notify();
        gate.Wait();
      });
    }
    REQUIRE(started.WaitFor(4));
    CHECK(pool.threads() == 4);
    gate.Open();
    REQUIRE(Eventually([&] { return pool.threads() == 1; }));
  }
  CHECK(pool.peak_threads() == 4);
  pool.shutdown();
}

TEST_CASE("connection pool: shutdown runs the queued jobs, joins, and later jobs run inline") {
  pi::ConnectionPool pool(Opts(1, 1, 8));
  Signal started;
  Gate gate;
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) {
    pool.enqueue([&] {
      started.Notify();
      gate.Wait();
      ++ran;
    });
  }
  REQUIRE(started.WaitFor(1));
  std::thread stopper([&] { pool.shutdown(); });
  gate.Open();
  stopper.join();
  CHECK(ran.load() == 3);
  CHECK(pool.threads() == 0);
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  pool.enqueue([&] { ran_on = std::this_thread::get_id(); });
  CHECK(ran_on == caller);
  pool.shutdown();  // idempotent
}

TEST_CASE("connection pool: options are clamped") {
  pi::ConnectionPool pool(Opts(3, 0, 0));
  CHECK(pool.threads() == 3);
  Signal done;
  pool.enqueue([&] { done.Notify(); });
  REQUIRE(done.WaitFor(1));
}
