#include "rate_limiter.h"

#include <algorithm>

namespace podidentity::agent {

bool RateLimiter::Allow(std::string_view client) {
  if (options_.requests_per_second <= 0) return true;
  const auto now = clock_.Now();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = buckets_.find(std::string(client));
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.max_clients) DropFullBuckets(now);
    it = buckets_.emplace(std::string(client), Bucket{options_.burst, now}).first;
  }
  Bucket& bucket = it->second;
  const double elapsed = std::max(0.0, std::chrono::duration<double>(now - bucket.updated).count());
  bucket.tokens = std::min(options_.burst, bucket.tokens + elapsed * options_.requests_per_second);
  bucket.updated = now;
  if (bucket.tokens < 1.0) return false;
  bucket.tokens -= 1.0;
  return true;
}

void RateLimiter::DropFullBuckets(std::chrono::system_clock::time_point now) {
  // A bucket that has refilled completely carries no information: dropping it is the
  // same as keeping it. If every bucket is still draining, clients beyond the bound
  // start from a full bucket, which only makes the limiter more lenient.
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    const double elapsed = std::chrono::duration<double>(now - it->second.updated).count();
    if (it->second.tokens + elapsed * options_.requests_per_second >= options_.burst) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace podidentity::agent
