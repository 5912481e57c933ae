// Random: injected randomness, so that anything random (token-expiration jitter,
// session-name suffixes) is deterministic in tests.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>

namespace podidentity {

class Random {
 public:
  virtual ~Random() = default;
  // A uniformly distributed integer in [low, high] (both inclusive). Requires low <= high.
  virtual int64_t Uniform(int64_t low, int64_t high) = 0;
};

// Seeded from std::random_device. Thread-safe (mutex guards engine_).
class SystemRandom final : public Random {
 public:
  SystemRandom() : engine_(std::random_device{}()) {}
  int64_t Uniform(int64_t low, int64_t high) override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::uniform_int_distribution<int64_t>(low, high)(engine_);
  }

 private:
  std::mutex mu_;
  std::mt19937_64 engine_;
};

// Always returns the same point of the range, chosen by `fraction` in [0, 1]:
// 0 -> low, 1 -> high. For deterministic tests. Thread-safe (immutable).
class FixedRandom final : public Random {
 public:
  explicit FixedRandom(double fraction) : fraction_(fraction) {}
  int64_t Uniform(int64_t low, int64_t high) override {
    return low + static_cast<int64_t>(static_cast<double>(high - low) * fraction_);
  }

 private:
  double fraction_;
};

}  // namespace podidentity
