// Clock: the one source of wall-clock time for verifiers, caches and reloaders.
// Production code takes a `const Clock&`; tests pass a ManualClock and move time by
// hand, so nothing ever sleeps to synchronise.
#pragma once

#include <atomic>
#include <chrono>

namespace podidentity {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point Now() const = 0;
};

// The real clock. Thread-safe.
class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override { return std::chrono::system_clock::now(); }
  // A process-wide instance for wiring in main.cc.
  static const SystemClock& Instance() {
    static const SystemClock clock;
    return clock;
  }
};

// A clock that only moves when told to. Thread-safe (atomic).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::chrono::system_clock::time_point start = std::chrono::system_clock::time_point{
                           std::chrono::seconds(1'700'000'000)})
      : now_ns_(start.time_since_epoch().count()) {}
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::time_point(std::chrono::system_clock::duration(now_ns_.load()));
  }
  void Advance(std::chrono::system_clock::duration d) { now_ns_ += d.count(); }
  void Set(std::chrono::system_clock::time_point t) { now_ns_ = t.time_since_epoch().count(); }

 private:
  std::atomic<std::chrono::system_clock::duration::rep> now_ns_;
};

}  // namespace podidentity
