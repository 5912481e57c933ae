#include "podidentity/credential_cache.h"
#include "test_support.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

using podidentity::testing::Signal;

namespace {

using namespace std::chrono_literals;
using podidentity::AwsCredentials;
using podidentity::CacheKey;
using podidentity::CacheOutcome;
using podidentity::CredentialCache;
using podidentity::CredentialCacheOptions;
using podidentity::ManualClock;
using podidentity::StatusCode;
using podidentity::StatusOr;

CacheKey Key(std::string uid = "uid-1") {
  CacheKey key;
  key.pod_uid = std::move(uid);
  key.pod_name = "web-0";
  key.namespace_name = "default";
  key.service_account = "app";
  key.role_arn = "arn:aws:iam::111122223333:role/app";
  return key;
}

AwsCredentials Creds(const ManualClock& clock, std::chrono::seconds lifetime, std::string id = "AKIA1") {
  AwsCredentials credentials;
  credentials.access_key_id = std::move(id);
  credentials.secret_access_key = "secret";
  credentials.session_token = "token";
  credentials.expiration = clock.Now() + lifetime;
  return credentials;
}

// A fetch that counts its calls and answers from a function.
struct CountingFetch {
  std::atomic<int> calls{0};
  std::function<StatusOr<AwsCredentials>()> answer;
  CredentialCache::FetchFn Fn() {
    return [this]() -> StatusOr<AwsCredentials> {
      ++calls;
      return answer();
    };
  }
};

}  // namespace

TEST_CASE("EncodeCacheKey distinguishes every field and cannot collide") {
  const CacheKey base = Key();
  std::set<std::string> encodings;
  encodings.insert(EncodeCacheKey(base));
  auto add = [&](CacheKey key) { CHECK(encodings.insert(EncodeCacheKey(key)).second); };
  CacheKey k = base;
  k.pod_uid = "uid-2";
  add(k);
  k = base;
  k.pod_name = "web-1";
  add(k);
  k = base;
  k.namespace_name = "other";
  add(k);
  k = base;
  k.service_account = "other";
  add(k);
  k = base;
  k.role_arn += "x";
  add(k);
  k = base;
  k.target_role_arn = "";
  add(k);  // present but empty differs from absent
  k = base;
  k.session_policy = "{}";
  add(k);
  k = base;
  k.disable_session_tags = true;
  add(k);
  // Moving bytes between adjacent fields must change the encoding.
  CacheKey a = base, b = base;
  a.pod_uid = "ab";
  a.pod_name = "c";
  b.pod_uid = "a";
  b.pod_name = "bc";
  CHECK(EncodeCacheKey(a) != EncodeCacheKey(b));
  CHECK(EncodeCacheKey(base) == EncodeCacheKey(Key()));
}

TEST_CASE("CacheKey::For takes what changes the broker's answer from the association") {
  podidentity::Association association;
  association.namespace_name = "ns";
  association.service_account = "sa";
  association.role_arn = "arn:aws:iam::111122223333:role/r";
  association.target_role_arn = "arn:aws:iam::444455556666:role/t";
  association.disable_session_tags = true;
  association.policy = "{\"Version\":\"2012-10-17\"}";
  const CacheKey key = CacheKey::For(association, "pod", "uid");
  CHECK(key.pod_name == "pod");
  CHECK(key.pod_uid == "uid");
  CHECK(key.namespace_name == "ns");
  CHECK(key.service_account == "sa");
  CHECK(key.role_arn == association.role_arn);
  CHECK(key.target_role_arn == association.target_role_arn);
  CHECK(key.session_policy == association.policy);
  CHECK(key.disable_session_tags);
}

TEST_CASE("CacheOutcomeName") {
  CHECK(podidentity::CacheOutcomeName(CacheOutcome::kHit) == "hit");
  CHECK(podidentity::CacheOutcomeName(CacheOutcome::kMissFetched) == "miss_fetched");
  CHECK(podidentity::CacheOutcomeName(CacheOutcome::kMissJoined) == "miss_joined");
  CHECK(podidentity::CacheOutcomeName(CacheOutcome::kRefreshed) == "refreshed");
  CHECK(podidentity::CacheOutcomeName(CacheOutcome::kServedStaleOnError) == "served_stale_on_error");
}

TEST_CASE("RefreshAt is min(half the lifetime, max_retention) after the fetch") {
  ManualClock clock;
  CredentialCache cache(clock);
  const auto t0 = clock.Now();
  CHECK(cache.RefreshAt(t0, t0 + 1h) == t0 + 30min);  // STS default
  CHECK(cache.RefreshAt(t0, t0 + 6h) == t0 + 3h);     // EKS Auth: capped by max_retention
  CHECK(cache.RefreshAt(t0, t0 + 12h) == t0 + 3h);
  CHECK(cache.RefreshAt(t0, t0 + 15min) == t0 + 450s);
  CHECK(cache.RefreshAt(t0, t0 - 1s) == t0);

  CredentialCacheOptions options;
  options.max_retention = 10min;
  CredentialCache short_retention(clock, options);
  CHECK(short_retention.RefreshAt(t0, t0 + 1h) == t0 + 10min);
}

TEST_CASE("A cold key is fetched once, then served from the cache until refresh is due") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };

  auto first = cache.Get(Key(), fetch.Fn());
  REQUIRE(first.ok());
  CHECK(first->outcome == CacheOutcome::kMissFetched);
  CHECK_FALSE(first->cache_hit());
  CHECK(first->credentials->access_key_id == "AKIA1");

  clock.Advance(30min - 1s);
  auto second = cache.Get(Key(), fetch.Fn());
  REQUIRE(second.ok());
  CHECK(second->outcome == CacheOutcome::kHit);
  CHECK(second->cache_hit());
  CHECK(second->credentials == first->credentials);  // shared, not copied
  CHECK(fetch.calls == 1);

  clock.Advance(1s);  // exactly refresh_at
  fetch.answer = [&] { return Creds(clock, 1h, "AKIA2"); };
  auto third = cache.Get(Key(), fetch.Fn());
  REQUIRE(third.ok());
  CHECK(third->outcome == CacheOutcome::kRefreshed);
  CHECK(third->credentials->access_key_id == "AKIA2");
  CHECK(fetch.calls == 2);

  // The new credentials' own refresh point: 30 min after this fetch.
  clock.Advance(29min);
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kHit);
  clock.Advance(1min);
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kRefreshed);
  CHECK(fetch.calls == 3);

  const auto stats = cache.Stats();
  CHECK(stats.misses == 1);
  CHECK(stats.hits == 2);
  CHECK(stats.refreshes == 2);
  CHECK(stats.fetches == 3);
  CHECK(stats.size == 1);
}

TEST_CASE("6 h credentials are renewed after 3 h") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 6h); };
  REQUIRE(cache.Get(Key(), fetch.Fn()).ok());
  clock.Advance(3h - 1s);
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kHit);
  clock.Advance(1s);
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kRefreshed);
  CHECK(fetch.calls == 2);
}

TEST_CASE("Different keys have different entries") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  CHECK(cache.Get(Key("a"), fetch.Fn())->outcome == CacheOutcome::kMissFetched);
  CHECK(cache.Get(Key("b"), fetch.Fn())->outcome == CacheOutcome::kMissFetched);
  CacheKey other_role = Key("a");
  other_role.target_role_arn = "arn:aws:iam::444455556666:role/t";
  CHECK(cache.Get(other_role, fetch.Fn())->outcome == CacheOutcome::kMissFetched);
  CHECK(cache.Get(Key("a"), fetch.Fn())->outcome == CacheOutcome::kHit);
  CHECK(cache.size() == 3);
  CHECK(fetch.calls == 3);
}

TEST_CASE("Credentials with less than min_remaining left are never served") {
  ManualClock clock;
  CredentialCacheOptions options;
  options.max_retention = 24h;
  options.refresh_retry_interval = 1h;
  CredentialCache cache(clock, options);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 10min); };
  REQUIRE(cache.Get(Key(), fetch.Fn()).ok());

  // Past refresh_at (5 min); a failed refresh backs off for an hour, so only the
  // min_remaining rule can force the next fetch.
  clock.Advance(5min);
  fetch.answer = [] { return podidentity::UnavailableError("sts down"); };
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kServedStaleOnError);
  clock.Advance(4min);  // exactly 60 s left: still usable
  auto last = cache.Get(Key(), fetch.Fn());
  REQUIRE(last.ok());
  CHECK(last->outcome == CacheOutcome::kHit);
  CHECK(*last->credentials->expiration - clock.Now() == 60s);

  clock.Advance(1s);  // 59 s left: must not be served, upstream is asked and fails
  auto expired = cache.Get(Key(), fetch.Fn());
  REQUIRE_FALSE(expired.ok());
  CHECK(expired.status().code() == StatusCode::kUnavailable);
  CHECK(cache.size() == 0);
  CHECK(cache.Stats().expired_removals == 1);

  fetch.answer = [&] { return Creds(clock, 1h, "AKIA2"); };
  auto fresh = cache.Get(Key(), fetch.Fn());
  REQUIRE(fresh.ok());
  CHECK(fresh->outcome == CacheOutcome::kMissFetched);
  CHECK(fresh->credentials->access_key_id == "AKIA2");
}

TEST_CASE("An expired entry is replaced by a fresh fetch") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  REQUIRE(cache.Get(Key(), fetch.Fn()).ok());
  clock.Advance(2h);
  auto again = cache.Get(Key(), fetch.Fn());
  REQUIRE(again.ok());
  CHECK(again->outcome == CacheOutcome::kMissFetched);
  CHECK(*again->credentials->expiration == clock.Now() + 1h);
  CHECK(cache.Stats().expired_removals == 1);
  CHECK(cache.size() == 1);
}

TEST_CASE("On a failed refresh, usable cached credentials are served and retries back off") {
  ManualClock clock;
  CredentialCache cache(clock);  // refresh_retry_interval 30 s
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  auto original = cache.Get(Key(), fetch.Fn());
  REQUIRE(original.ok());

  clock.Advance(30min);
  fetch.answer = [] { return podidentity::UnavailableError("sts down"); };
  auto stale = cache.Get(Key(), fetch.Fn());
  REQUIRE(stale.ok());
  CHECK(stale->outcome == CacheOutcome::kServedStaleOnError);
  CHECK(stale->cache_hit());
  CHECK(stale->credentials == original->credentials);
  CHECK(fetch.calls == 2);

  // Within the back-off: served from the cache without asking upstream.
  clock.Advance(29s);
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kHit);
  CHECK(fetch.calls == 2);

  // Back-off over: one more attempt, still failing, served stale again.
  clock.Advance(1s);
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kServedStaleOnError);
  CHECK(fetch.calls == 3);
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kHit);
  CHECK(fetch.calls == 3);

  // Upstream back: the next attempt after the back-off renews.
  clock.Advance(30s);
  fetch.answer = [&] { return Creds(clock, 1h, "AKIA2"); };
  auto renewed = cache.Get(Key(), fetch.Fn());
  REQUIRE(renewed.ok());
  CHECK(renewed->outcome == CacheOutcome::kRefreshed);
  CHECK(renewed->credentials->access_key_id == "AKIA2");

  const auto stats = cache.Stats();
  CHECK(stats.stale_serves == 2);
  CHECK(stats.fetch_errors == 2);
  CHECK(stats.refreshes == 1);
}

TEST_CASE("A cold failure returns the error and leaves nothing cached") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [] { return podidentity::UnavailableError("sts down"); };
  auto result = cache.Get(Key(), fetch.Fn());
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == StatusCode::kUnavailable);
  CHECK(result.status().message() == "sts down");
  CHECK(cache.size() == 0);
  // No back-off for a key with nothing cached: the next request tries again.
  CHECK_FALSE(cache.Get(Key(), fetch.Fn()).ok());
  CHECK(fetch.calls == 2);
}

TEST_CASE("Access denied and invalid token evict and are never masked by cached credentials") {
  const auto code = GENERATE(StatusCode::kPermissionDenied, StatusCode::kUnauthenticated);
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  REQUIRE(cache.Get(Key(), fetch.Fn()).ok());
  clock.Advance(30min);
  fetch.answer = [code] { return podidentity::Status(code, "denied"); };
  auto denied = cache.Get(Key(), fetch.Fn());
  REQUIRE_FALSE(denied.ok());
  CHECK(denied.status().code() == code);
  CHECK(cache.size() == 0);
  CHECK(cache.Stats().error_evictions == 1);
  CHECK(cache.Stats().stale_serves == 0);
  // The next request goes upstream rather than to the old credentials.
  fetch.answer = [&] { return Creds(clock, 1h, "AKIA2"); };
  auto next = cache.Get(Key(), fetch.Fn());
  REQUIRE(next.ok());
  CHECK(next->outcome == CacheOutcome::kMissFetched);
}

TEST_CASE("Unusable fetch results are kInternal failures") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  SECTION("no expiration") {
    fetch.answer = [&] {
      AwsCredentials c = Creds(clock, 1h);
      c.expiration.reset();
      return c;
    };
  }
  SECTION("empty") {
    fetch.answer = [&] {
      AwsCredentials c = Creds(clock, 1h);
      c.secret_access_key.clear();
      return c;
    };
  }
  SECTION("less than min_remaining left") { fetch.answer = [&] { return Creds(clock, 59s); }; }
  SECTION("exception") {
    fetch.answer = []() -> StatusOr<AwsCredentials> { throw std::runtime_error("boom"); };
  }
  auto result = cache.Get(Key(), fetch.Fn());
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == StatusCode::kInternal);
  CHECK(cache.size() == 0);
  CHECK(cache.Stats().fetch_errors == 1);
}

TEST_CASE("An unusable refresh result is a failed refresh: cached credentials are served") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  REQUIRE(cache.Get(Key(), fetch.Fn()).ok());
  clock.Advance(30min);
  fetch.answer = []() -> StatusOr<AwsCredentials> { throw 42; };
  auto result = cache.Get(Key(), fetch.Fn());
  REQUIRE(result.ok());
  CHECK(result->outcome == CacheOutcome::kServedStaleOnError);
  CHECK(result->credentials->access_key_id == "AKIA1");
}

TEST_CASE("LRU bound: the least recently used entry goes first") {
  ManualClock clock;
  CredentialCacheOptions options;
  options.max_entries = 2;
  CredentialCache cache(clock, options);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  REQUIRE(cache.Get(Key("a"), fetch.Fn()).ok());
  REQUIRE(cache.Get(Key("b"), fetch.Fn()).ok());
  REQUIRE(cache.Get(Key("a"), fetch.Fn())->outcome == CacheOutcome::kHit);  // a is now most recent
  REQUIRE(cache.Get(Key("c"), fetch.Fn()).ok());                           // evicts b
  CHECK(cache.size() == 2);
  CHECK(cache.Stats().lru_evictions == 1);
  CHECK(cache.Get(Key("a"), fetch.Fn())->outcome == CacheOutcome::kHit);
  CHECK(cache.Get(Key("c"), fetch.Fn())->outcome == CacheOutcome::kHit);
  CHECK(cache.Get(Key("b"), fetch.Fn())->outcome == CacheOutcome::kMissFetched);
  CHECK(cache.size() == 2);
}

TEST_CASE("max_entries 0 behaves as 1") {
  ManualClock clock;
  CredentialCacheOptions options;
  options.max_entries = 0;
  CredentialCache cache(clock, options);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  REQUIRE(cache.Get(Key("a"), fetch.Fn()).ok());
  CHECK(cache.size() == 1);
  CHECK(cache.Get(Key("a"), fetch.Fn())->outcome == CacheOutcome::kHit);
  REQUIRE(cache.Get(Key("b"), fetch.Fn()).ok());
  CHECK(cache.size() == 1);
}

TEST_CASE("Evict and RemoveExpired") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  REQUIRE(cache.Get(Key("a"), fetch.Fn()).ok());
  CHECK(cache.Evict(Key("a")));
  CHECK_FALSE(cache.Evict(Key("a")));
  CHECK(cache.size() == 0);
  CHECK(cache.Stats().explicit_evictions == 1);

  REQUIRE(cache.Get(Key("a"), fetch.Fn()).ok());
  clock.Advance(30min);
  fetch.answer = [&] { return Creds(clock, 2h); };
  REQUIRE(cache.Get(Key("b"), fetch.Fn()).ok());
  clock.Advance(29min);  // a has 60 s left, b plenty
  CHECK(cache.RemoveExpired() == 0);
  clock.Advance(1s);
  CHECK(cache.RemoveExpired() == 1);
  CHECK(cache.size() == 1);
  CHECK(cache.Get(Key("b"), fetch.Fn())->outcome == CacheOutcome::kHit);
}

TEST_CASE("Single flight: 100 concurrent callers of a cold key cause exactly one fetch") {
  constexpr int kCallers = 100;
  ManualClock clock;
  Signal waiting;
  CredentialCacheOptions options;
  options.on_wait_for_fetch = [&waiting] { waiting.Notify(); };
  CredentialCache cache(clock, options);

  std::atomic<int> fetches{0};
  std::atomic<bool> all_registered{false};
  auto fetch = [&]() -> StatusOr<AwsCredentials> {
    ++fetches;
    // Answer only once every other caller has registered as a waiter, so the test
    // really exercises joining (the hook counts them; no sleeps).
    all_registered = waiting.WaitFor(kCallers - 1);
    return Creds(clock, 1h);
  };

  std::latch start(kCallers);
  std::vector<std::future<StatusOr<podidentity::CacheResult>>> results;
  results.reserve(kCallers);
  for (int i = 0; i < kCallers; ++i) {
    results.push_back(std::async(std::launch::async, [&] {
      start.arrive_and_wait();
      return cache.Get(Key(), fetch);
    }));
  }
  int fetched = 0, joined = 0;
  std::set<const AwsCredentials*> distinct;
  for (auto& future : results) {
    auto result = future.get();
    REQUIRE(result.ok());
    distinct.insert(result->credentials.get());
    if (result->outcome == CacheOutcome::kMissFetched) ++fetched;
    if (result->outcome == CacheOutcome::kMissJoined) ++joined;
  }
  CHECK(all_registered);
  CHECK(fetches == 1);
  CHECK(fetched == 1);
  CHECK(joined == kCallers - 1);
  CHECK(distinct.size() == 1);
  const auto stats = cache.Stats();
  CHECK(stats.fetches == 1);
  CHECK(stats.misses == kCallers);
  CHECK(stats.joined == kCallers - 1);
  CHECK(stats.size == 1);
}

TEST_CASE("Single flight: waiters get the leader's error too") {
  constexpr int kCallers = 8;
  ManualClock clock;
  Signal waiting;
  CredentialCacheOptions options;
  options.on_wait_for_fetch = [&waiting] { waiting.Notify(); };
  CredentialCache cache(clock, options);
  std::atomic<int> fetches{0};
  std::atomic<bool> all_registered{false};
  auto fetch = [&]() -> StatusOr<AwsCredentials> {
    ++fetches;
    all_registered = waiting.WaitFor(kCallers - 1);
    return podidentity::PermissionDeniedError("AccessDenied");
  };
  std::vector<std::future<StatusOr<podidentity::CacheResult>>> results;
  for (int i = 0; i < kCallers; ++i) {
    results.push_back(std::async(std::launch::async, [&] { return cache.Get(Key(), fetch); }));
  }
  for (auto& future : results) {
    auto result = future.get();
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == StatusCode::kPermissionDenied);
  }
  CHECK(all_registered);
  CHECK(fetches == 1);
  CHECK(cache.size() == 0);
}

TEST_CASE("During a refresh, other callers get the cached credentials without waiting") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch initial;
  initial.answer = [&] { return Creds(clock, 1h, "OLD"); };
  REQUIRE(cache.Get(Key(), initial.Fn()).ok());
  clock.Advance(30min);

  Signal fetch_started, release;
  auto slow_fetch = [&]() -> StatusOr<AwsCredentials> {
    fetch_started.Notify();
    release.WaitFor(1);
    return Creds(clock, 1h, "NEW");
  };
  auto leader = std::async(std::launch::async, [&] { return cache.Get(Key(), slow_fetch); });
  REQUIRE(fetch_started.WaitFor(1));

  // The leader's fetch is blocked; these calls must return at once with the old
  // credentials and must not call their own fetch.
  CountingFetch must_not_run;
  must_not_run.answer = [&] { return Creds(clock, 1h, "WRONG"); };
  auto hits = std::async(std::launch::async, [&] {
    std::vector<StatusOr<podidentity::CacheResult>> out;
    for (int i = 0; i < 10; ++i) out.push_back(cache.Get(Key(), must_not_run.Fn()));
    return out;
  });
  const bool returned_while_blocked = hits.wait_for(10s) == std::future_status::ready;
  release.Notify();
  REQUIRE(returned_while_blocked);
  for (const auto& hit : hits.get()) {
    REQUIRE(hit.ok());
    CHECK(hit->outcome == CacheOutcome::kHit);
    CHECK(hit->credentials->access_key_id == "OLD");
  }
  CHECK(must_not_run.calls == 0);

  auto refreshed = leader.get();
  REQUIRE(refreshed.ok());
  CHECK(refreshed->outcome == CacheOutcome::kRefreshed);
  CHECK(refreshed->credentials->access_key_id == "NEW");
  auto after = cache.Get(Key(), must_not_run.Fn());
  REQUIRE(after.ok());
  CHECK(after->outcome == CacheOutcome::kHit);
  CHECK(after->credentials->access_key_id == "NEW");
  CHECK(must_not_run.calls == 0);
  CHECK(cache.Stats().refreshes == 1);
  CHECK(cache.Stats().hits == 11);
}

TEST_CASE("Evict during a flight: waiters get the result, but it is not cached") {
  ManualClock clock;
  Signal waiter_registered, fetch_started, release;
  CredentialCacheOptions options;
  options.on_wait_for_fetch = [&waiter_registered] { waiter_registered.Notify(); };
  CredentialCache cache(clock, options);

  auto fetch = [&]() -> StatusOr<AwsCredentials> {
    fetch_started.Notify();
    release.WaitFor(1);
    return Creds(clock, 1h, "INFLIGHT");
  };
  auto leader = std::async(std::launch::async, [&] { return cache.Get(Key(), fetch); });
  REQUIRE(fetch_started.WaitFor(1));
  CountingFetch unused;
  unused.answer = [&] { return Creds(clock, 1h, "WRONG"); };
  auto waiter = std::async(std::launch::async, [&] { return cache.Get(Key(), unused.Fn()); });
  const bool registered = waiter_registered.WaitFor(1);
  const bool evicted = cache.Evict(Key());
  const size_t size_after_evict = cache.size();
  release.Notify();
  REQUIRE(registered);
  CHECK(evicted);
  CHECK(size_after_evict == 0);

  auto led = leader.get();
  auto waited = waiter.get();
  REQUIRE(led.ok());
  REQUIRE(waited.ok());
  CHECK(led->outcome == CacheOutcome::kMissFetched);
  CHECK(waited->outcome == CacheOutcome::kMissJoined);
  CHECK(waited->credentials->access_key_id == "INFLIGHT");
  CHECK(unused.calls == 0);
  CHECK(cache.size() == 0);  // rule 7: not cached

  CountingFetch next;
  next.answer = [&] { return Creds(clock, 1h, "NEXT"); };
  auto fresh = cache.Get(Key(), next.Fn());
  REQUIRE(fresh.ok());
  CHECK(fresh->outcome == CacheOutcome::kMissFetched);
  CHECK(next.calls == 1);
}

TEST_CASE("An entry with a fetch in flight is not evicted by the LRU bound") {
  ManualClock clock;
  CredentialCacheOptions options;
  options.max_entries = 1;
  CredentialCache cache(clock, options);
  Signal fetch_started, release;
  auto slow = [&]() -> StatusOr<AwsCredentials> {
    fetch_started.Notify();
    release.WaitFor(1);
    return Creds(clock, 1h, "SLOW");
  };
  auto leader = std::async(std::launch::async, [&] { return cache.Get(Key("slow"), slow); });
  const bool started = fetch_started.WaitFor(1);

  CountingFetch quick;
  quick.answer = [&] { return Creds(clock, 1h, "QUICK"); };
  const bool quick_ok = cache.Get(Key("quick"), quick.Fn()).ok();
  // Only "quick" is evictable once its own fetch lands: "slow" is in flight.
  const size_t size_during_flight = cache.size();
  release.Notify();
  REQUIRE(started);
  CHECK(quick_ok);
  CHECK(size_during_flight == 1);
  CHECK(cache.Stats().lru_evictions == 1);
  auto slow_result = leader.get();
  REQUIRE(slow_result.ok());
  CHECK(slow_result->credentials->access_key_id == "SLOW");
  CHECK(cache.size() == 1);
  CountingFetch unused;
  unused.answer = [&] { return Creds(clock, 1h, "WRONG"); };
  CHECK(cache.Get(Key("slow"), unused.Fn())->outcome == CacheOutcome::kHit);
  CHECK(unused.calls == 0);
}

// ---------------------------------------------------------------------------------------
// Peek: the non-blocking look-up for an event loop's fast path.

TEST_CASE("Peek answers only what Get would answer as a hit without fetching", "[peek]") {
  ManualClock clock;
  CredentialCache cache(clock);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };

  CHECK_FALSE(cache.Peek(Key()).has_value());  // empty
  CHECK(cache.Stats().hits == 0);
  CHECK(cache.size() == 0);  // a miss leaves nothing behind

  auto first = cache.Get(Key(), fetch.Fn());
  REQUIRE(first.ok());
  CHECK_FALSE(cache.Peek(Key("other")).has_value());

  clock.Advance(30min - 1s);
  auto peeked = cache.Peek(Key());
  REQUIRE(peeked.has_value());
  CHECK(peeked->outcome == CacheOutcome::kHit);
  CHECK(peeked->cache_hit());
  CHECK(peeked->credentials == first->credentials);  // shared, not copied
  CHECK(cache.Stats().hits == 1);                    // counted like Get's hit

  clock.Advance(1s);  // exactly refresh_at: Get would lead a refresh, so Peek does not answer
  CHECK_FALSE(cache.Peek(Key()).has_value());
  CHECK(cache.Stats().hits == 1);
  CHECK(cache.size() == 1);  // the entry is left for Get
  CHECK(fetch.calls == 1);   // Peek never fetched

  fetch.answer = [&] { return Creds(clock, 1h, "AKIA2"); };
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kRefreshed);
  auto renewed = cache.Peek(Key());
  REQUIRE(renewed.has_value());
  CHECK(renewed->credentials->access_key_id == "AKIA2");
  CHECK(fetch.calls == 2);
}

TEST_CASE("Peek: nothing near expiry, after a failed refresh it serves like Get", "[peek]") {
  ManualClock clock;
  CredentialCacheOptions options;
  options.max_retention = 24h;
  options.refresh_retry_interval = 1h;
  CredentialCache cache(clock, options);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 10min); };
  REQUIRE(cache.Get(Key(), fetch.Fn()).ok());

  clock.Advance(5min);  // refresh due
  CHECK_FALSE(cache.Peek(Key()).has_value());
  fetch.answer = [] { return podidentity::UnavailableError("sts down"); };
  CHECK(cache.Get(Key(), fetch.Fn())->outcome == CacheOutcome::kServedStaleOnError);
  // Backing off: Get would serve the cached credentials as a hit without fetching.
  CHECK(cache.Peek(Key()).has_value());
  clock.Advance(4min);  // exactly min_remaining left: still usable
  CHECK(cache.Peek(Key()).has_value());
  clock.Advance(1s);  // below min_remaining: never served
  CHECK_FALSE(cache.Peek(Key()).has_value());
  CHECK(fetch.calls == 2);
  CHECK(cache.Stats().hits == 2);
}

TEST_CASE("Peek: evicted entries are gone, and a Peek hit counts as recent use", "[peek]") {
  ManualClock clock;
  CredentialCacheOptions options;
  options.max_entries = 2;
  CredentialCache cache(clock, options);
  CountingFetch fetch;
  fetch.answer = [&] { return Creds(clock, 1h); };
  REQUIRE(cache.Get(Key("a"), fetch.Fn()).ok());
  REQUIRE(cache.Get(Key("b"), fetch.Fn()).ok());
  REQUIRE(cache.Peek(Key("a")).has_value());  // a is now most recent
  REQUIRE(cache.Get(Key("c"), fetch.Fn()).ok());  // evicts b, not a
  CHECK(cache.Peek(Key("a")).has_value());
  CHECK_FALSE(cache.Peek(Key("b")).has_value());
  CHECK(cache.Peek(Key("c")).has_value());

  CHECK(cache.Evict(Key("a")));
  CHECK_FALSE(cache.Peek(Key("a")).has_value());
  CHECK(fetch.calls == 3);
}

TEST_CASE("Peek never waits for a fetch in flight", "[peek]") {
  ManualClock clock;
  CredentialCache cache(clock);
  Signal fetch_started, release;
  auto slow = [&]() -> StatusOr<AwsCredentials> {
    fetch_started.Notify();
    release.WaitFor(1);
    return Creds(clock, 1h, "NEW");
  };

  SECTION("a cold key: nullopt at once (Get would wait)") {
    auto leader = std::async(std::launch::async, [&] { return cache.Get(Key(), slow); });
    const bool started = fetch_started.WaitFor(1);
    const bool peeked = cache.Peek(Key()).has_value();  // returns while the fetch is blocked
    release.Notify();
    REQUIRE(started);
    CHECK_FALSE(peeked);
    REQUIRE(leader.get().ok());
    CHECK(cache.Peek(Key()).has_value());
  }
  SECTION("a refresh in flight: the cached credentials at once (as Get)") {
    CountingFetch initial;
    initial.answer = [&] { return Creds(clock, 1h, "OLD"); };
    REQUIRE(cache.Get(Key(), initial.Fn()).ok());
    clock.Advance(30min);
    CHECK_FALSE(cache.Peek(Key()).has_value());  // due, nobody renewing
    auto leader = std::async(std::launch::async, [&] { return cache.Get(Key(), slow); });
    const bool started = fetch_started.WaitFor(1);
    auto peeked = cache.Peek(Key());
    release.Notify();
    REQUIRE(started);
    REQUIRE(peeked.has_value());
    CHECK(peeked->outcome == CacheOutcome::kHit);
    CHECK(peeked->credentials->access_key_id == "OLD");
    CHECK(leader.get()->outcome == CacheOutcome::kRefreshed);
    CHECK(cache.Peek(Key())->credentials->access_key_id == "NEW");
  }
}
