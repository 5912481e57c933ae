// The credentials route without sockets: Handle() and its non-blocking twin TryHandle(),
// which must answer byte for byte as Handle() whenever it answers at all, and the token
// verifier adapter's cached path. Fake token verifier and broker; real exchange, cache
// and error mapping.
#include "credential_handler.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <set>

#include "podidentity/jwks.h"
#include "podidentity/jwt_verifier.h"
#include "podidentity/key_source.h"
#include "podidentity/token_minter.h"
#include "test_support.h"
#include "token_verifier.h"

namespace pi = podidentity;
namespace agent = podidentity::agent;
using namespace std::chrono_literals;

namespace {

constexpr char kHost[] = "169.254.170.23";
constexpr char kRoleArn[] = "arn:aws:iam::111122223333:role/app";

pi::VerifiedIdentity Identity(std::string service_account = "app") {
  pi::VerifiedIdentity identity;
  identity.namespace_name = "team-a";
  identity.service_account = std::move(service_account);
  identity.pod_name = "app-7d9f8";
  identity.pod_uid = "pod-uid-" + identity.service_account;
  return identity;
}

// Knows a fixed set of tokens and, like JwtVerifier, remembers the ones it accepted.
class FakeTokenVerifier final : public pi::ServiceAccountTokenVerifier {
 public:
  pi::TokenVerifyResult Verify(std::string_view token) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++verify_calls;
    auto it = known_.find(std::string(token));
    if (it == known_.end()) return pi::TokenVerifyError{pi::TokenError::kBadSignature, "token signature is invalid"};
    verified_.insert(it->first);
    return it->second;
  }
  std::optional<pi::TokenVerifyResult> VerifyIfCached(std::string_view token) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++if_cached_calls;
    if (verified_.count(std::string(token)) == 0) return std::nullopt;
    return known_.at(std::string(token));
  }
  void Add(std::string token, pi::VerifiedIdentity identity) { known_.emplace(std::move(token), std::move(identity)); }

  std::atomic<int> verify_calls{0};
  std::atomic<int> if_cached_calls{0};

 private:
  std::mutex mu_;
  std::map<std::string, pi::VerifiedIdentity> known_;
  std::set<std::string> verified_;
};

class FakeBroker final : public pi::CredentialBroker {
 public:
  explicit FakeBroker(const pi::ManualClock& clock) : clock_(clock) {}
  std::variant<pi::AwsCredentials, pi::ExchangeError> Fetch(const pi::PodIdentity& pod, const pi::Association*,
                                                            std::string_view) override {
    const int n = ++calls;
    pi::AwsCredentials credentials;
    credentials.access_key_id = "AKIA" + std::to_string(n);
    credentials.secret_access_key = "secret-" + pod.pod_uid;
    credentials.session_token = "session";
    credentials.account_id = "111122223333";
    credentials.expiration = clock_.Now() + 1h;
    return credentials;
  }
  std::string_view name() const override { return "sts"; }
  std::atomic<int> calls{0};

 private:
  const pi::ManualClock& clock_;
};

struct Fixture {
  pi::ManualClock clock;
  pi::AssociationStore associations{pi::AssociationIndex(
      "cluster", {pi::Association{"team-a", "app", kRoleArn, std::nullopt, false, std::nullopt, {}}})};
  FakeTokenVerifier token_verifier;
  agent::PodTokenVerifierAdapter verifier{token_verifier};
  FakeBroker broker{clock};
  pi::CredentialCache cache{clock};
  pi::Exchange exchange{&associations, verifier, broker, cache};
  agent::CredentialHandler handler{exchange, agent::HostPolicy({kHost})};

  Fixture() {
    token_verifier.Add("token-app", Identity("app"));
    token_verifier.Add("token-nobody", Identity("nobody"));
  }
  static agent::CredentialRequest Request(std::string_view token, std::string_view host = kHost) {
    agent::CredentialRequest request;
    request.host = host;
    request.authorization = token;
    request.has_authorization = true;
    return request;
  }
};

void CheckSameResponse(const agent::CredentialResponse& a, const agent::CredentialResponse& b) {
  CHECK(a.status == b.status);
  CHECK(a.body == b.body);
  CHECK(a.outcome == b.outcome);
  CHECK(a.cache_hit == b.cache_hit);
  CHECK(a.cache == b.cache);
  CHECK(a.broker_seconds == b.broker_seconds);
  REQUIRE(a.log_fields.size() == b.log_fields.size());
  for (size_t i = 0; i < a.log_fields.size(); ++i) {
    CHECK(a.log_fields[i].key == b.log_fields[i].key);
    CHECK(a.log_fields[i].value == b.log_fields[i].value);
  }
}

}  // namespace

TEST_CASE("TryHandle: nullopt first, then the cached answer Handle would give", "[credential_handler][try_handle]") {
  Fixture f;
  CHECK_FALSE(f.handler.TryHandle(Fixture::Request("token-app")).has_value());
  CHECK(f.token_verifier.verify_calls == 0);  // the fast path never verifies
  CHECK(f.broker.calls == 0);

  const agent::CredentialResponse slow = f.handler.Handle(Fixture::Request("token-app"));
  CHECK(slow.status == 200);
  CHECK(slow.outcome == "ok");
  CHECK(slow.cache == "miss_fetched");
  CHECK_FALSE(slow.cache_hit);
  CHECK(f.broker.calls == 1);

  const std::optional<agent::CredentialResponse> fast = f.handler.TryHandle(Fixture::Request("token-app"));
  REQUIRE(fast.has_value());
  CHECK(fast->status == 200);
  CHECK(fast->body == slow.body);
  CHECK(fast->cache_hit);
  CHECK(fast->cache == "hit");
  CHECK(f.broker.calls == 1);
  CHECK(f.token_verifier.verify_calls == 1);

  // Exactly the response Handle() gives for the same (cached) state, log fields included.
  CheckSameResponse(*fast, f.handler.Handle(Fixture::Request("token-app")));

  // Due for refresh: only Handle() may renew, so TryHandle steps aside.
  f.clock.Advance(30min);
  CHECK_FALSE(f.handler.TryHandle(Fixture::Request("token-app")).has_value());
  CHECK(f.broker.calls == 1);
}

TEST_CASE("TryHandle rejects a wrong host or a missing token at once, as Handle does",
          "[credential_handler][try_handle]") {
  Fixture f;
  SECTION("wrong host: 403") {
    const auto request = Fixture::Request("token-app", "evil.example:80");
    const std::optional<agent::CredentialResponse> fast = f.handler.TryHandle(request);
    REQUIRE(fast.has_value());
    CHECK(fast->status == 403);
    CHECK(fast->outcome == "wrong_host");
    CheckSameResponse(*fast, f.handler.Handle(request));
  }
  SECTION("no Authorization header: 400") {
    agent::CredentialRequest request = Fixture::Request("");
    request.has_authorization = false;
    const std::optional<agent::CredentialResponse> fast = f.handler.TryHandle(request);
    REQUIRE(fast.has_value());
    CHECK(fast->status == 400);
    CHECK(fast->outcome == "missing_token");
    CheckSameResponse(*fast, f.handler.Handle(request));
  }
  SECTION("an empty Authorization header: 400") {
    const auto request = Fixture::Request("");
    const std::optional<agent::CredentialResponse> fast = f.handler.TryHandle(request);
    REQUIRE(fast.has_value());
    CHECK(fast->status == 400);
    CheckSameResponse(*fast, f.handler.Handle(request));
  }
  CHECK(f.token_verifier.if_cached_calls == 0);  // answered before the exchange
  CHECK(f.token_verifier.verify_calls == 0);
  CHECK(f.broker.calls == 0);
}

TEST_CASE("TryHandle answers a known token without an association with Handle's 404",
          "[credential_handler][try_handle]") {
  Fixture f;
  CHECK_FALSE(f.handler.TryHandle(Fixture::Request("token-nobody")).has_value());
  const agent::CredentialResponse slow = f.handler.Handle(Fixture::Request("token-nobody"));
  CHECK(slow.status == 404);
  const std::optional<agent::CredentialResponse> fast = f.handler.TryHandle(Fixture::Request("token-nobody"));
  REQUIRE(fast.has_value());
  CheckSameResponse(*fast, slow);
  CHECK(f.broker.calls == 0);
}

TEST_CASE("PodTokenVerifierAdapter::VerifyIfCached maps JwtVerifier's cache as Verify maps Verify",
          "[token_verifier][try_handle]") {
  pi::ManualClock clock;
  const pi::SigningKey key = pi::testing::JwtTestKey("ec-p256.pem", "ec-1");
  auto jwks = pi::Jwks::Parse(pi::JwksJson({key}));
  REQUIRE(jwks.ok());
  pi::StaticJwksSource source(std::move(jwks).value());
  pi::JwtVerifierOptions options;
  options.issuer = "https://oidc.cluster.test";
  pi::JwtVerifier jwt(source, clock, options);
  agent::PodTokenVerifierAdapter adapter(jwt);

  pi::ServiceAccountTokenClaims claims;
  claims.issuer = options.issuer;
  claims.namespace_name = "team-a";
  claims.service_account = "app";
  claims.pod_name = "app-7d9f8";
  claims.pod_uid = "pod-uid-1";
  claims.issued_at = clock.Now();
  auto token = pi::MintToken(key, claims);
  REQUIRE(token.ok());

  CHECK_FALSE(adapter.VerifyIfCached(*token).has_value());
  const auto verified = adapter.Verify(*token);
  REQUIRE(std::holds_alternative<pi::PodIdentity>(verified));
  const auto cached = adapter.VerifyIfCached(*token);
  REQUIRE(cached.has_value());
  REQUIRE(std::holds_alternative<pi::PodIdentity>(*cached));
  const pi::PodIdentity& a = std::get<pi::PodIdentity>(verified);
  const pi::PodIdentity& b = std::get<pi::PodIdentity>(*cached);
  CHECK(a.namespace_name == b.namespace_name);
  CHECK(a.service_account == b.service_account);
  CHECK(a.pod_name == b.pod_name);
  CHECK(a.pod_uid == b.pod_uid);
  CHECK(b.pod_uid == "pod-uid-1");
  CHECK(jwt.cache_hits() == 1);

  // A verifier without the cached path (e.g. TokenReview) never answers early.
  class NoCache final : public pi::ServiceAccountTokenVerifier {
   public:
    pi::TokenVerifyResult Verify(std::string_view) override { return Identity(); }
  } no_cache;
  agent::PodTokenVerifierAdapter plain(no_cache);
  REQUIRE(std::holds_alternative<pi::PodIdentity>(plain.Verify("t")));
  CHECK_FALSE(plain.VerifyIfCached("t").has_value());
}
