// Per-client rate limiting for the credentials endpoint: a token bucket per client
// address, so one misbehaving pod cannot starve the others or push the agent into the
// broker's throttling. Time comes from an injected Clock; no threads.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "podidentity/clock.h"

namespace podidentity::agent {

struct RateLimitOptions {
  double requests_per_second = 20;  // sustained rate per client; <= 0 disables limiting
  double burst = 60;                // bucket size: requests a client may send at once
  size_t max_clients = 10000;       // buckets kept; full buckets are dropped beyond it
};

// Thread-safe: mu_ guards buckets_.
class RateLimiter {
 public:
  RateLimiter(const Clock& clock, RateLimitOptions options) : clock_(clock), options_(options) {}
  // True when the client may make one more request now (and takes a token).
  bool Allow(std::string_view client);

 private:
  struct Bucket {
    double tokens;
    std::chrono::system_clock::time_point updated;
  };
  void DropFullBuckets(std::chrono::system_clock::time_point now);

  const Clock& clock_;
  const RateLimitOptions options_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace podidentity::agent
