// CredentialCache: the agent's per-pod cache of broker credentials. It sits between
// the exchange and the broker (STS / EKS Auth): it decides when a cached answer is good
// enough, when to renew it ahead of expiry, and makes sure one pod's burst of requests
// becomes a single upstream call. Pure: time comes from an injected Clock, the upstream
// call is a function the caller passes in, and the cache runs no threads of its own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "podidentity/associations.h"
#include "podidentity/aws_types.h"
#include "podidentity/clock.h"
#include "podidentity/status.h"

namespace podidentity {

// Everything that changes the broker's answer for one request. Two requests share a
// cache entry only when all fields are equal. The cluster name and ARN are agent-wide
// (the same for every entry) and therefore not part of the key.
struct CacheKey {
  std::string pod_uid;
  std::string pod_name;         // a session tag (kubernetes-pod-name)
  std::string namespace_name;   // a session tag (kubernetes-namespace)
  std::string service_account;  // a session tag (kubernetes-service-account)
  std::string role_arn;
  std::optional<std::string> target_role_arn;
  std::optional<std::string> session_policy;
  bool disable_session_tags = false;

  // The key for a pod (name, uid) under `association`.
  static CacheKey For(const Association& association, std::string_view pod_name, std::string_view pod_uid);

  bool operator==(const CacheKey&) const = default;
};

// A collision-free encoding of `key`: a version tag, then every field in a fixed order
// as "<decimal length>:<bytes>;" ("-;" for an absent optional), then the flag. Since every
// field carries its own length, no two different keys encode to the same string.
std::string EncodeCacheKey(const CacheKey& key);

// What a Get() did, for logs and metrics.
enum class CacheOutcome {
  kHit,                  // usable cached credentials, no upstream call by this caller
  kMissFetched,          // nothing usable cached: this caller made the upstream call
  kMissJoined,           // nothing usable cached: waited for another caller's upstream call
  kRefreshed,            // cached credentials were due for refresh: this caller renewed them
  kServedStaleOnError,   // the refresh failed; still-usable cached credentials served
};
std::string_view CacheOutcomeName(CacheOutcome outcome);  // "hit", "miss_fetched", ...

struct CacheResult {
  // Never null. Shared and immutable: cached credentials are handed out without a copy.
  std::shared_ptr<const AwsCredentials> credentials;
  CacheOutcome outcome = CacheOutcome::kHit;
  // True when the answer came from the cache rather than from an upstream call.
  bool cache_hit() const { return outcome == CacheOutcome::kHit || outcome == CacheOutcome::kServedStaleOnError; }
};

struct CredentialCacheOptions {
  // Most entries kept; the least recently used entry without a fetch in flight is
  // evicted beyond it (an entry whose fetch is in flight is never evicted, so the bound
  // may be exceeded briefly by in-flight keys). Mirrors EKS's --max-cache-size default.
  // 0 is treated as 1.
  size_t max_entries = 2000;
  // Credentials are never handed out with less than this left before expiration.
  std::chrono::seconds min_remaining{60};
  // Upper bound on how long fetched credentials are used before being renewed (EKS's
  // --max-credential-retention-before-renewal, default 3 h).
  std::chrono::seconds max_retention{3 * 60 * 60};
  // After a failed refresh of still-usable credentials, the next refresh attempt waits
  // this long (cached credentials are served meanwhile), so an upstream outage costs one
  // call per key per interval rather than one per request.
  std::chrono::seconds refresh_retry_interval{30};
  // Test hook: called (without the cache mutex held) each time a caller has registered
  // as a waiter on another caller's in-flight fetch and is about to block for it.
  std::function<void()> on_wait_for_fetch;
};

// Counters since construction; the agent exports them as metrics.
struct CredentialCacheStats {
  uint64_t hits = 0;                // outcome kHit
  uint64_t misses = 0;              // nothing usable cached (kMissFetched + kMissJoined)
  uint64_t joined = 0;              // of the misses, those that waited on another's fetch
  uint64_t fetches = 0;             // upstream calls made
  uint64_t fetch_errors = 0;        // upstream calls that failed or returned unusable credentials
  uint64_t refreshes = 0;           // successful refresh-ahead fetches (kRefreshed)
  uint64_t stale_serves = 0;        // kServedStaleOnError
  uint64_t lru_evictions = 0;       // removed to stay within max_entries
  uint64_t error_evictions = 0;     // removed on an access-denied / invalid-token answer
  uint64_t explicit_evictions = 0;  // removed by Evict()
  uint64_t expired_removals = 0;    // removed because less than min_remaining was left
  size_t size = 0;                  // entries now
};

// The rules, exactly (t = the clock's Now(); lifetime = expiration - time of the fetch):
//  1. Usable: cached credentials are served only while expiration - t >= min_remaining.
//     Entries that are no longer usable are removed lazily (on lookup, RemoveExpired(),
//     or LRU eviction).
//  2. Refresh-ahead: fetched credentials become due for renewal at
//       refresh_at = fetch time + min(lifetime / 2, max_retention).
//     With STS's default 1 h credentials that is after 30 min, with EKS Auth's 6 h
//     credentials after 3 h (what EKS's agent does). Unlike EKS's agent, which renews at
//     fetch time + min(lifetime, 3 h) (aws/eks-pod-identity-agent,
//     internal/credsretriever/refreshing_cache.go getCacheTtls, default from cmd/server.go)
//     and so may hand out credentials with seconds left, half the lifetime means a pod
//     is normally given credentials with at least half their lifetime to run; SDKs
//     refresh 5-15 min before expiry and would otherwise come straight back.
//  3. Due and usable: the first caller at or after refresh_at (and after any
//     refresh_retry_interval back-off) becomes the leader and calls fetch() itself;
//     callers arriving while that fetch is in flight get the cached credentials at once
//     (kHit) without waiting.
//  4. Nothing usable (cold key, or below min_remaining): the first caller calls fetch();
//     callers arriving while it is in flight wait for that single call (condition
//     variable, no polling) and all get its result. So there is at most one upstream
//     call per key at any time, however many requests arrive.
//  5. Upstream failure: if the cached credentials are still usable (rule 1), they are
//     served (kServedStaleOnError), kept, and the next attempt waits
//     refresh_retry_interval; otherwise the error is returned. Exception: an answer with
//     kPermissionDenied (access denied) or kUnauthenticated (invalid token) evicts the
//     entry and is returned, never masked by cached credentials.
//  6. fetch() results that are empty, have no expiration (brokers always send one) or
//     expire in less than min_remaining are failures with kInternal (rule 5 applies).
//     An exception thrown by fetch() is caught and becomes kInternal too.
//  7. Evict(key) removes an entry at once; a fetch in flight for it still answers its
//     waiters, but its result is not cached.
//
// Thread-safety: fully thread-safe. mu_ guards entries_, index_, stats_ and every
// Flight's fields; fetch() and on_wait_for_fetch are never called with mu_ held.
// The Clock and the fetch functions must outlive the calls that use them; the cache must
// outlive every Get() in progress.
class CredentialCache {
 public:
  using FetchFn = std::function<StatusOr<AwsCredentials>()>;

  CredentialCache(const Clock& clock, CredentialCacheOptions options = {});
  CredentialCache(const CredentialCache&) = delete;
  CredentialCache& operator=(const CredentialCache&) = delete;

  // Credentials for `key` by the rules above; `fetch` is the broker call.
  StatusOr<CacheResult> Get(const CacheKey& key, const FetchFn& fetch);

  // The cached credentials for `key` with outcome kHit exactly when Get() would answer
  // kHit without calling its fetch: the entry holds usable credentials (rule 1) and is
  // either not due for refresh or already being refreshed by another caller (rule 3).
  // Counts in Stats().hits and moves the entry to the front of the LRU order like such a
  // hit. Otherwise nullopt: cold, unusable, or due with nobody renewing it (the caller
  // then uses Get()). Never calls upstream, never waits for a fetch in flight, and
  // changes nothing else (an unusable entry is left for Get() to remove).
  std::optional<CacheResult> Peek(const CacheKey& key);

  // Removes the entry for `key`; false when there was none.
  bool Evict(const CacheKey& key);
  // Removes every entry that is no longer usable and has no fetch in flight; returns how
  // many. Optional: the same happens lazily, this just returns memory sooner.
  size_t RemoveExpired();

  size_t size() const;
  CredentialCacheStats Stats() const;

  // When credentials fetched at `fetched_at` and expiring at `expiration` become due
  // for refresh (rule 2). Exposed for tests and logs.
  std::chrono::system_clock::time_point RefreshAt(std::chrono::system_clock::time_point fetched_at,
                                                  std::chrono::system_clock::time_point expiration) const;

 private:
  using TimePoint = std::chrono::system_clock::time_point;

  // One upstream call in progress, shared by the leader and its waiters; waiters hold it
  // by shared_ptr, so evicting the entry never strands them.
  struct Flight {
    std::condition_variable done_cv;
    bool done = false;
    std::optional<StatusOr<std::shared_ptr<const AwsCredentials>>> result;  // set when done
  };

  struct Entry {
    std::string key;  // EncodeCacheKey(); index_ views into this string
    std::shared_ptr<const AwsCredentials> credentials;  // null until the first fetch succeeds
    TimePoint refresh_at{};
    TimePoint next_attempt_at{};  // refresh back-off after a failure
    std::shared_ptr<Flight> flight;  // non-null while a fetch for this key is in flight
  };
  using EntryList = std::list<Entry>;  // most recently used first

  bool Usable(const AwsCredentials& credentials, TimePoint now) const;
  // Whether `entry` (holding usable credentials) should be renewed by the
  // caller now: due (rule 2, after any back-off) and no fetch already in flight. mu_ held.
  bool ShouldLeadRefresh(const Entry& entry, TimePoint now) const;
  // Runs fetch() without mu_ (the lock is released and re-acquired) and settles the
  // entry and the flight by rule 5.
  StatusOr<CacheResult> Lead(std::unique_lock<std::mutex>& lock, const std::string& key,
                             std::shared_ptr<Flight> flight, bool refreshing, const FetchFn& fetch);
  StatusOr<std::shared_ptr<const AwsCredentials>> CallFetch(const FetchFn& fetch) const;
  void Erase(EntryList::iterator it);
  void TrimToCapacity();

  const Clock& clock_;
  const CredentialCacheOptions options_;

  mutable std::mutex mu_;
  EntryList entries_;                                              // guarded by mu_
  std::unordered_map<std::string_view, EntryList::iterator> index_;  // guarded by mu_
  CredentialCacheStats stats_;                                     // guarded by mu_ (size unused)
};

}  // namespace podidentity
