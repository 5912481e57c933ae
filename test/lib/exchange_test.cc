// The exchange (token -> pod -> association -> cache -> broker) with fake verifier and
// broker: Run() and its non-blocking twin TryRunWithoutBlocking(), which must give
// Run()'s answer whenever it answers at all, and never call the broker.
#include "podidentity/exchange.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <set>

namespace pi = podidentity;
using namespace std::chrono_literals;

namespace {

constexpr char kRoleArn[] = "arn:aws:iam::111122223333:role/app";

pi::PodIdentity Pod(std::string pod_uid = "pod-uid-1", std::string service_account = "app") {
  return pi::PodIdentity{"team-a", std::move(service_account), "app-7d9f8", std::move(pod_uid)};
}

// Knows a fixed set of tokens; a token counts as cached once Verify() accepted it.
class FakeVerifier final : public pi::PodTokenVerifier {
 public:
  std::variant<pi::PodIdentity, pi::ExchangeError> Verify(std::string_view token) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++verify_calls;
    auto it = pods_.find(std::string(token));
    if (it == pods_.end()) {
      return pi::ExchangeError{pi::UnauthenticatedError("token signature is invalid"), "bad_signature", 0};
    }
    verified_.insert(it->first);
    return it->second;
  }
  std::optional<std::variant<pi::PodIdentity, pi::ExchangeError>> VerifyIfCached(std::string_view token) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++if_cached_calls;
    if (cached_error && std::string(token) == cached_error_token) return *cached_error;
    if (verified_.count(std::string(token)) == 0) return std::nullopt;
    return pods_.at(std::string(token));
  }
  void Add(std::string token, pi::PodIdentity pod) { pods_.emplace(std::move(token), std::move(pod)); }
  void Forget() { verified_.clear(); }

  int verify_calls = 0;
  int if_cached_calls = 0;
  std::optional<pi::ExchangeError> cached_error;
  std::string cached_error_token;

 private:
  std::mutex mu_;
  std::map<std::string, pi::PodIdentity> pods_;
  std::set<std::string> verified_;
};

// A verifier that keeps the interface's default VerifyIfCached (never cached).
class PlainVerifier final : public pi::PodTokenVerifier {
 public:
  std::variant<pi::PodIdentity, pi::ExchangeError> Verify(std::string_view) override { return Pod(); }
};

class FakeBroker final : public pi::CredentialBroker {
 public:
  explicit FakeBroker(const pi::ManualClock& clock) : clock_(clock) {}
  std::variant<pi::AwsCredentials, pi::ExchangeError> Fetch(const pi::PodIdentity& pod,
                                                            const pi::Association* association,
                                                            std::string_view) override {
    const int n = ++calls;
    last_had_association = association != nullptr;
    if (fail) return *fail;
    pi::AwsCredentials credentials;
    credentials.access_key_id = "AKIA" + std::to_string(n);
    credentials.secret_access_key = "secret-" + pod.pod_uid;
    credentials.session_token = "session";
    credentials.expiration = clock_.Now() + 1h;
    return credentials;
  }
  std::string_view name() const override { return "sts"; }

  std::atomic<int> calls{0};
  std::atomic<bool> last_had_association{false};
  std::optional<pi::ExchangeError> fail;

 private:
  const pi::ManualClock& clock_;
};

struct Fixture {
  pi::ManualClock clock;
  pi::AssociationStore associations{pi::AssociationIndex(
      "cluster", {pi::Association{"team-a", "app", kRoleArn, std::nullopt, false, std::nullopt, {}}})};
  FakeVerifier verifier;
  FakeBroker broker{clock};
  pi::CredentialCache cache{clock};
  pi::Exchange exchange{&associations, verifier, broker, cache};

  Fixture() {
    verifier.Add("token-1", Pod("pod-uid-1"));
    verifier.Add("token-2", Pod("pod-uid-2"));
    verifier.Add("token-unassociated", Pod("pod-uid-3", "nobody"));
  }
};

pi::ExchangeResult ExpectResult(const std::variant<pi::ExchangeResult, pi::ExchangeError>& result) {
  if (const auto* error = std::get_if<pi::ExchangeError>(&result)) {
    FAIL(error->reason << ": " << error->status.message());
  }
  return std::get<pi::ExchangeResult>(result);
}

pi::ExchangeError ExpectError(const std::variant<pi::ExchangeResult, pi::ExchangeError>& result) {
  REQUIRE(std::holds_alternative<pi::ExchangeError>(result));
  return std::get<pi::ExchangeError>(result);
}

void CheckSamePod(const pi::PodIdentity& a, const pi::PodIdentity& b) {
  CHECK(a.namespace_name == b.namespace_name);
  CHECK(a.service_account == b.service_account);
  CHECK(a.pod_name == b.pod_name);
  CHECK(a.pod_uid == b.pod_uid);
}

void CheckSameTrace(const pi::ExchangeTrace& a, const pi::ExchangeTrace& b) {
  REQUIRE(a.pod.has_value() == b.pod.has_value());
  if (a.pod) CheckSamePod(*a.pod, *b.pod);
  CHECK(a.role_arn == b.role_arn);
  CHECK(a.cache_outcome == b.cache_outcome);
  CHECK(a.broker_seconds == b.broker_seconds);
}

void CheckSameError(const pi::ExchangeError& a, const pi::ExchangeError& b) {
  CHECK(a.status.code() == b.status.code());
  CHECK(a.status.message() == b.status.message());
  CHECK(a.reason == b.reason);
  CHECK(a.upstream_http_status == b.upstream_http_status);
}

}  // namespace

TEST_CASE("Run: fetched once, then served from the cache; errors keep their reason", "[exchange]") {
  Fixture f;
  pi::ExchangeTrace trace;
  const auto first = f.exchange.Run("token-1", &trace);
  const pi::ExchangeResult fetched = ExpectResult(first);
  CHECK(fetched.cache_outcome == pi::CacheOutcome::kMissFetched);
  CHECK(fetched.credentials->access_key_id == "AKIA1");
  CheckSamePod(fetched.pod, Pod("pod-uid-1"));
  REQUIRE(trace.pod.has_value());
  CHECK(trace.role_arn == kRoleArn);
  CHECK(trace.cache_outcome == pi::CacheOutcome::kMissFetched);
  CHECK(f.broker.last_had_association);

  const auto second = f.exchange.Run("token-1");
  CHECK(ExpectResult(second).cache_outcome == pi::CacheOutcome::kHit);
  CHECK(ExpectResult(second).credentials == fetched.credentials);
  CHECK(f.broker.calls == 1);

  pi::ExchangeTrace unassociated_trace;
  const pi::ExchangeError none = ExpectError(f.exchange.Run("token-unassociated", &unassociated_trace));
  CHECK(none.status.code() == pi::StatusCode::kNotFound);
  CHECK(none.reason == "no_association");
  CHECK(unassociated_trace.pod.has_value());
  CHECK(unassociated_trace.role_arn.empty());

  CHECK(ExpectError(f.exchange.Run("forged")).reason == "bad_signature");

  f.broker.fail = pi::ExchangeError{pi::PermissionDeniedError("AccessDenied"), "broker_access_denied", 403};
  const pi::ExchangeError denied = ExpectError(f.exchange.Run("token-2"));
  CHECK(denied.reason == "broker_access_denied");
  CHECK(denied.upstream_http_status == 403);
}

TEST_CASE("TryRunWithoutBlocking: nullopt until the token and the credentials are cached", "[exchange][try_run]") {
  Fixture f;
  pi::ExchangeTrace trace;
  trace.role_arn = "untouched";
  CHECK_FALSE(f.exchange.TryRunWithoutBlocking("token-1", &trace).has_value());
  CHECK(trace.role_arn == "untouched");  // a nullopt leaves the trace for the Run() that follows
  CHECK_FALSE(trace.pod.has_value());
  CHECK(f.verifier.verify_calls == 0);  // never the blocking verification
  CHECK(f.broker.calls == 0);
  CHECK(f.cache.size() == 0);

  // The token is known but nothing is cached for the pod yet.
  REQUIRE(std::holds_alternative<pi::PodIdentity>(f.verifier.Verify("token-1")));
  CHECK_FALSE(f.exchange.TryRunWithoutBlocking("token-1").has_value());
  CHECK(f.broker.calls == 0);
  CHECK(f.cache.Stats().misses == 0);
}

TEST_CASE("TryRunWithoutBlocking gives Run()'s cache hit, with the same trace", "[exchange][try_run]") {
  Fixture f;
  const pi::ExchangeResult fetched = ExpectResult(f.exchange.Run("token-1"));

  pi::ExchangeTrace fast_trace;
  const auto fast = f.exchange.TryRunWithoutBlocking("token-1", &fast_trace);
  REQUIRE(fast.has_value());
  const pi::ExchangeResult hit = ExpectResult(*fast);
  CHECK(hit.cache_outcome == pi::CacheOutcome::kHit);
  CHECK(hit.credentials == fetched.credentials);
  CheckSamePod(hit.pod, fetched.pod);
  CHECK(f.cache.Stats().hits == 1);

  pi::ExchangeTrace slow_trace;
  const pi::ExchangeResult slow = ExpectResult(f.exchange.Run("token-1", &slow_trace));
  CHECK(slow.cache_outcome == pi::CacheOutcome::kHit);
  CHECK(slow.credentials == hit.credentials);
  CheckSameTrace(fast_trace, slow_trace);
  CHECK(fast_trace.role_arn == kRoleArn);
  CHECK(fast_trace.cache_outcome == pi::CacheOutcome::kHit);
  CHECK(f.broker.calls == 1);

  // Another pod's token is another cache key.
  REQUIRE(std::holds_alternative<pi::PodIdentity>(f.verifier.Verify("token-2")));
  CHECK_FALSE(f.exchange.TryRunWithoutBlocking("token-2").has_value());
}

TEST_CASE("TryRunWithoutBlocking: a missing association is answered at once, as Run() answers it",
          "[exchange][try_run]") {
  Fixture f;
  pi::ExchangeTrace slow_trace;
  const pi::ExchangeError slow = ExpectError(f.exchange.Run("token-unassociated", &slow_trace));
  pi::ExchangeTrace fast_trace;
  const auto fast = f.exchange.TryRunWithoutBlocking("token-unassociated", &fast_trace);
  REQUIRE(fast.has_value());
  CheckSameError(ExpectError(*fast), slow);
  CheckSameTrace(fast_trace, slow_trace);
  CHECK(f.broker.calls == 0);
}

TEST_CASE("TryRunWithoutBlocking: nullopt whenever Run() would call the broker", "[exchange][try_run]") {
  Fixture f;
  ExpectResult(f.exchange.Run("token-1"));
  f.clock.Advance(30min);  // the credentials are due for refresh: Run() would renew them
  CHECK_FALSE(f.exchange.TryRunWithoutBlocking("token-1").has_value());
  CHECK(f.broker.calls == 1);
  CHECK(ExpectResult(f.exchange.Run("token-1")).cache_outcome == pi::CacheOutcome::kRefreshed);
  CHECK(f.exchange.TryRunWithoutBlocking("token-1").has_value());

  f.verifier.Forget();  // e.g. the verified-token cache expired: only Verify() can tell
  CHECK_FALSE(f.exchange.TryRunWithoutBlocking("token-1").has_value());
  CHECK(f.broker.calls == 2);
}

TEST_CASE("TryRunWithoutBlocking passes a cached verifier error through", "[exchange][try_run]") {
  Fixture f;
  f.verifier.cached_error = pi::ExchangeError{pi::UnauthenticatedError("token expired"), "token_expired", 0};
  f.verifier.cached_error_token = "token-1";
  pi::ExchangeTrace trace;
  const auto fast = f.exchange.TryRunWithoutBlocking("token-1", &trace);
  REQUIRE(fast.has_value());
  CheckSameError(ExpectError(*fast), *f.verifier.cached_error);
  CHECK_FALSE(trace.pod.has_value());  // Run() fills nothing for a rejected token either
}

TEST_CASE("TryRunWithoutBlocking with a verifier that has no cache is always nullopt", "[exchange][try_run]") {
  pi::ManualClock clock;
  pi::AssociationStore associations{pi::AssociationIndex(
      "cluster", {pi::Association{"team-a", "app", kRoleArn, std::nullopt, false, std::nullopt, {}}})};
  PlainVerifier verifier;
  FakeBroker broker(clock);
  pi::CredentialCache cache(clock);
  pi::Exchange exchange(&associations, verifier, broker, cache);
  ExpectResult(exchange.Run("any"));
  CHECK(ExpectResult(exchange.Run("any")).cache_outcome == pi::CacheOutcome::kHit);
  CHECK_FALSE(exchange.TryRunWithoutBlocking("any").has_value());
}

TEST_CASE("TryRunWithoutBlocking without local associations (EKS Auth) uses the pod's key", "[exchange][try_run]") {
  pi::ManualClock clock;
  FakeVerifier verifier;
  verifier.Add("token-1", Pod("pod-uid-1"));
  FakeBroker broker(clock);
  pi::CredentialCache cache(clock);
  pi::ExchangeOptions options;
  options.require_association = false;
  pi::Exchange exchange(nullptr, verifier, broker, cache, options);

  pi::ExchangeTrace slow_trace;
  const pi::ExchangeResult fetched = ExpectResult(exchange.Run("token-1", &slow_trace));
  CHECK_FALSE(broker.last_had_association);
  pi::ExchangeTrace fast_trace;
  const auto fast = exchange.TryRunWithoutBlocking("token-1", &fast_trace);
  REQUIRE(fast.has_value());
  CHECK(ExpectResult(*fast).credentials == fetched.credentials);
  CHECK(fast_trace.role_arn.empty());
  CHECK(fast_trace.cache_outcome == pi::CacheOutcome::kHit);
  CHECK(broker.calls == 1);
}
