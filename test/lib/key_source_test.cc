// Key sources: the JWKS file (reload by identity, last good set kept), the API
// server's JWKS URL (bearer token re-read per fetch, failures keep the last set), the
// periodic and the unknown-kid refresh (rate limited on the injected clock, so a flood
// of made-up kids costs at most one fetch per window), and the background thread.
#include "podidentity/key_source.h"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "fake_http_client.h"
#include "podidentity/jwt_verifier.h"
#include "podidentity/token_minter.h"
#include "test_support.h"

namespace pi = podidentity;
namespace fs = std::filesystem;
using pi::JwksRefreshResult;
using pi::JwksRefreshTrigger;

using podidentity::testing::TempDir;

namespace {

bool HasHeader(const pi::HttpRequest& request, const std::string& name, const std::string& value) {
  for (const auto& [n, v] : request.headers) {
    if (n == name && v == value) return true;
  }
  return false;
}

struct Recorded {
  JwksRefreshTrigger trigger;
  JwksRefreshResult result;
  std::string message;
};

// An API server that serves a JWKS document the test can change.
struct UrlFixture {
  pi::ManualClock clock;
  TempDir dir;
  pi::SigningKey rsa = podidentity::testing::JwtTestKey("rsa-2048.pem", "rsa-1");
  pi::SigningKey rotated = podidentity::testing::JwtTestKey("rsa-2048-second.pem", "rsa-2");
  std::string token_file = dir.Write("token", "agent-token-1\n");
  std::mutex mu;
  std::string body = pi::JwksJson({rsa});  // guarded by mu
  int status = 200;                         // guarded by mu
  std::vector<Recorded> recorded;           // guarded by mu
  pi::testing::FakeHttpClient http{[this](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    std::lock_guard<std::mutex> lock(mu);
    if (status < 0) return pi::UnavailableError("connection refused");
    pi::HttpResponse response;
    response.status = status;
    response.body = body;
    return response;
  }};
  pi::UrlJwksSourceOptions Options() {
    pi::UrlJwksSourceOptions o;
    o.url = "https://api.test:6443/openid/v1/jwks";
    o.bearer_token_file = token_file;
    o.refresh.refresh_interval = std::chrono::seconds(300);
    o.refresh.unknown_kid_min_interval = std::chrono::seconds(30);
    o.refresh.observer = [this](JwksRefreshTrigger t, JwksRefreshResult r, const pi::Status& s) {
      std::lock_guard<std::mutex> lock(mu);
      recorded.push_back({t, r, s.message()});
    };
    return o;
  }
  void Serve(std::string new_body, int new_status = 200) {
    std::lock_guard<std::mutex> lock(mu);
    body = std::move(new_body);
    status = new_status;
  }
};

}  // namespace

TEST_CASE("ReadBearerTokenFile trims whitespace and never echoes the content", "[key_source]") {
  TempDir dir;
  auto token = pi::ReadBearerTokenFile(dir.Write("t", "  abc.def.ghi\r\n"));
  REQUIRE(token.ok());
  CHECK(*token == "abc.def.ghi");
  auto empty = pi::ReadBearerTokenFile(dir.Write("e", "\n"));
  REQUIRE_FALSE(empty.ok());
  CHECK_FALSE(pi::ReadBearerTokenFile(dir.Path("missing")).ok());
  auto big = pi::ReadBearerTokenFile(dir.Write("big", std::string(70 * 1024, 'x')));
  REQUIRE_FALSE(big.ok());
  CHECK(big.status().message().find("xxxx") == std::string::npos);
}

TEST_CASE("FileJwksSource loads, reloads on change and keeps the last good set", "[key_source]") {
  pi::ManualClock clock;
  TempDir dir;
  const pi::SigningKey rsa = podidentity::testing::JwtTestKey("rsa-2048.pem", "rsa-1");
  const pi::SigningKey ec = podidentity::testing::JwtTestKey("ec-p256.pem", "ec-1");
  const std::string path = dir.Write("jwks.json", pi::JwksJson({rsa}));
  pi::RefreshingJwksSourceOptions options;
  options.refresh_interval = std::chrono::seconds(60);
  pi::FileJwksSource source(path, clock, options);
  CHECK(source.Current() == nullptr);
  REQUIRE(source.Load().ok());
  auto first = source.Current();
  REQUIRE(first != nullptr);
  CHECK(first->Kids() == std::vector<std::string>{"rsa-1"});

  CHECK_FALSE(source.RefreshIfDue().has_value());  // not due yet
  clock.Advance(std::chrono::seconds(60));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kUnchanged);  // same identity: not even read
  CHECK(source.Current() == first);

  dir.Write("jwks.json", pi::JwksJson({rsa, ec}));
  clock.Advance(std::chrono::seconds(60));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kUpdated);
  CHECK(source.Current()->Kids() == std::vector<std::string>{"ec-1", "rsa-1"});
  CHECK(first->Kids() == std::vector<std::string>{"rsa-1"});  // old snapshots stay valid for their holders

  const auto good = source.Current();
  dir.Write("jwks.json", "{\"keys\": [");
  clock.Advance(std::chrono::seconds(60));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kFailed);
  CHECK(source.Current() == good);
  fs::remove(path);
  clock.Advance(std::chrono::seconds(60));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kFailed);
  CHECK(source.Current() == good);

  const pi::JwksRefreshStats stats = source.stats();
  CHECK(stats.updated == 2);
  CHECK(stats.unchanged == 1);
  CHECK(stats.failed == 2);
}

TEST_CASE("FileJwksSource::Load fails clearly without a usable key", "[key_source]") {
  pi::ManualClock clock;
  TempDir dir;
  pi::FileJwksSource missing(dir.Path("none.json"), clock);
  const pi::Status no_file = missing.Load();
  REQUIRE_FALSE(no_file.ok());
  CHECK_THAT(no_file.message(), Catch::Contains("none.json"));

  const pi::SigningKey short_rsa = podidentity::testing::JwtTestKey("rsa-1024.pem", "short");
  pi::FileJwksSource weak(dir.Write("weak.json", pi::JwksJson({short_rsa})), clock);
  const pi::Status no_key = weak.Load();
  REQUIRE_FALSE(no_key.ok());
  CHECK_THAT(no_key.message(), Catch::Contains("no usable key"));
  CHECK_THAT(no_key.message(), Catch::Contains("weak.json"));
  CHECK(weak.Current() == nullptr);
}

TEST_CASE("UrlJwksSource sends the agent's bearer token, re-read on every fetch", "[key_source]") {
  UrlFixture f;
  pi::UrlJwksSource source(f.http, f.clock, f.Options());
  REQUIRE(source.Load().ok());
  REQUIRE(source.Current() != nullptr);
  auto requests = f.http.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].method == "GET");
  CHECK(requests[0].url == "https://api.test:6443/openid/v1/jwks");
  CHECK(HasHeader(requests[0], "Authorization", "Bearer agent-token-1"));
  CHECK(HasHeader(requests[0], "Accept", "application/json"));

  f.dir.Write("token", "agent-token-2");  // kubelet rotated the agent's token
  f.clock.Advance(std::chrono::seconds(300));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kUnchanged);  // same document
  requests = f.http.requests();
  REQUIRE(requests.size() == 2);
  CHECK(HasHeader(requests[1], "Authorization", "Bearer agent-token-2"));
}

TEST_CASE("UrlJwksSource keeps the last good keys when the API server fails", "[key_source]") {
  UrlFixture f;
  pi::UrlJwksSource source(f.http, f.clock, f.Options());
  REQUIRE(source.Load().ok());
  const auto good = source.Current();

  f.Serve("forbidden", 403);
  f.clock.Advance(std::chrono::seconds(300));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kFailed);
  f.Serve("", -1);
  f.clock.Advance(std::chrono::seconds(300));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kFailed);
  f.Serve(R"({"keys":[]})");
  f.clock.Advance(std::chrono::seconds(300));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kFailed);
  CHECK(source.Current() == good);

  f.Serve(pi::JwksJson({f.rsa, f.rotated}));
  f.clock.Advance(std::chrono::seconds(300));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kUpdated);
  CHECK(source.Current()->Find("rsa-2") != nullptr);

  std::lock_guard<std::mutex> lock(f.mu);
  REQUIRE(f.recorded.size() == 5);
  CHECK(f.recorded[0].trigger == JwksRefreshTrigger::kInitial);
  CHECK(f.recorded[0].result == JwksRefreshResult::kUpdated);
  CHECK(f.recorded[1].trigger == JwksRefreshTrigger::kPeriodic);
  CHECK(f.recorded[1].result == JwksRefreshResult::kFailed);
  CHECK_THAT(f.recorded[1].message, Catch::Contains("HTTP 403"));
  CHECK_THAT(f.recorded[2].message, Catch::Contains("connection refused"));
  CHECK_THAT(f.recorded[3].message, Catch::Contains("no usable key"));
  CHECK(f.recorded[4].result == JwksRefreshResult::kUpdated);
  for (const Recorded& r : f.recorded) CHECK(r.message.find("agent-token") == std::string::npos);
}

TEST_CASE("UrlJwksSource::Load fails when the first fetch fails", "[key_source]") {
  UrlFixture f;
  f.Serve("", 500);
  pi::UrlJwksSource source(f.http, f.clock, f.Options());
  const pi::Status status = source.Load();
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(status.message(), Catch::Contains("HTTP 500"));
  CHECK(source.Current() == nullptr);
}

TEST_CASE("Unknown-kid refreshes are rate limited on the injected clock", "[key_source]") {
  UrlFixture f;
  pi::UrlJwksSource source(f.http, f.clock, f.Options());
  REQUIRE(source.Load().ok());
  CHECK(f.http.requests().size() == 1);

  CHECK(source.RefreshForUnknownKid() == JwksRefreshResult::kUnchanged);
  CHECK(f.http.requests().size() == 2);
  for (int i = 0; i < 100; ++i) CHECK(source.RefreshForUnknownKid() == JwksRefreshResult::kRateLimited);
  CHECK(f.http.requests().size() == 2);
  f.clock.Advance(std::chrono::seconds(29));
  CHECK(source.RefreshForUnknownKid() == JwksRefreshResult::kRateLimited);
  f.clock.Advance(std::chrono::seconds(1));
  f.Serve(pi::JwksJson({f.rsa, f.rotated}));
  CHECK(source.RefreshForUnknownKid() == JwksRefreshResult::kUpdated);
  CHECK(f.http.requests().size() == 3);
  CHECK(source.stats().rate_limited == 101);
}

TEST_CASE("A flood of tokens with unknown kids costs one JWKS fetch per window", "[key_source]") {
  UrlFixture f;
  pi::UrlJwksSource source(f.http, f.clock, f.Options());
  REQUIRE(source.Load().ok());
  pi::JwtVerifierOptions options;
  options.issuer = "https://kubernetes.default.svc.cluster.local";
  pi::JwtVerifier verifier(source, f.clock, options);

  pi::ServiceAccountTokenClaims claims;
  claims.pod_name = "p";
  claims.pod_uid = "u";
  claims.issued_at = f.clock.Now();
  std::vector<std::string> tokens;
  for (int i = 0; i < 8; ++i) {
    auto key = pi::SigningKey::FromPrivateKeyPem(f.rotated.PrivateKeyPem(), "made-up-" + std::to_string(i));
    REQUIRE(key.ok());
    auto token = pi::MintToken(*key, claims);
    REQUIRE(token.ok());
    tokens.push_back(*token);
  }
  std::atomic<int> unknown{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto result = verifier.Verify(tokens[static_cast<size_t>((t * 50 + i) % 8)]);
        const auto* error = std::get_if<pi::TokenVerifyError>(&result);
        if (error != nullptr && error->reason == pi::TokenError::kUnknownKeyId) ++unknown;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(unknown == 200);
  CHECK(f.http.requests().size() == 2);  // the initial load + one unknown-kid refresh

  // A real rotation after the window: the first token with the new kid triggers a
  // fetch that brings the key, and verifies.
  f.clock.Advance(std::chrono::seconds(30));
  f.Serve(pi::JwksJson({f.rsa, f.rotated}));
  auto token = pi::MintToken(f.rotated, claims);
  REQUIRE(token.ok());
  auto result = verifier.Verify(*token);
  CHECK(std::holds_alternative<pi::VerifiedIdentity>(result));
  CHECK(f.http.requests().size() == 3);
}

TEST_CASE("The background thread refreshes when due and stops cleanly", "[key_source]") {
  UrlFixture f;
  std::mutex mu;
  std::condition_variable cv;
  int periodic = 0;
  pi::UrlJwksSourceOptions options = f.Options();
  options.refresh.poll_interval = std::chrono::milliseconds(1);
  options.refresh.observer = [&](JwksRefreshTrigger trigger, JwksRefreshResult, const pi::Status&) {
    std::lock_guard<std::mutex> lock(mu);
    if (trigger == JwksRefreshTrigger::kPeriodic) ++periodic;
    cv.notify_all();
  };
  pi::UrlJwksSource source(f.http, f.clock, options);
  REQUIRE(source.Load().ok());
  source.Start();
  source.Start();  // idempotent
  f.clock.Advance(std::chrono::seconds(300));
  {
    std::unique_lock<std::mutex> lock(mu);
    // Waits for the event; the timeout only turns a hang into a failure.
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return periodic >= 1; }));
  }
  source.Stop();
  source.Stop();
  const size_t fetches = f.http.requests().size();
  CHECK(fetches == 2);
  f.clock.Advance(std::chrono::seconds(300));
  CHECK(f.http.requests().size() == fetches);  // stopped: nothing more happens on its own
}

TEST_CASE("StaticJwksSource never refreshes", "[key_source]") {
  const pi::SigningKey ec = podidentity::testing::JwtTestKey("ec-p256.pem", "ec-1");
  auto public_key = ec.PublicKey();
  REQUIRE(public_key.ok());
  auto jwks = pi::Jwks::FromKeys({*public_key});
  REQUIRE(jwks.ok());
  pi::StaticJwksSource source(std::move(jwks).value());
  REQUIRE(source.Current() != nullptr);
  CHECK(source.Current()->Find("ec-1") != nullptr);
  CHECK(source.RefreshForUnknownKid() == JwksRefreshResult::kRateLimited);
  CHECK(pi::JwksRefreshResultName(JwksRefreshResult::kRateLimited) == "rate_limited");
  CHECK(pi::JwksRefreshTriggerName(JwksRefreshTrigger::kUnknownKid) == "unknown_kid");
}

TEST_CASE("After a failed attempt the next one is due after the retry interval", "[key_source]") {
  UrlFixture f;
  f.Serve("", 503);
  pi::UrlJwksSourceOptions options = f.Options();
  options.refresh.retry_interval = std::chrono::seconds(10);
  pi::UrlJwksSource source(f.http, f.clock, options);
  REQUIRE_FALSE(source.Load().ok());  // the agent may start unready and keep trying
  f.clock.Advance(std::chrono::seconds(9));
  CHECK_FALSE(source.RefreshIfDue().has_value());
  f.clock.Advance(std::chrono::seconds(1));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kFailed);
  f.Serve(pi::JwksJson({f.rsa}));
  f.clock.Advance(std::chrono::seconds(10));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kUpdated);
  REQUIRE(source.Current() != nullptr);
  // Success: back to the normal interval.
  f.clock.Advance(std::chrono::seconds(10));
  CHECK_FALSE(source.RefreshIfDue().has_value());
  f.clock.Advance(std::chrono::seconds(290));
  CHECK(source.RefreshIfDue() == JwksRefreshResult::kUnchanged);
}

TEST_CASE("A verifier that starts without keys loads them on the first token", "[key_source]") {
  UrlFixture f;
  f.Serve("", 503);
  pi::UrlJwksSource source(f.http, f.clock, f.Options());
  REQUIRE_FALSE(source.Load().ok());
  pi::JwtVerifierOptions options;
  options.issuer = "https://kubernetes.default.svc.cluster.local";
  pi::JwtVerifier verifier(source, f.clock, options);
  pi::ServiceAccountTokenClaims claims;
  claims.pod_name = "p";
  claims.pod_uid = "u";
  claims.issued_at = f.clock.Now();
  auto token = pi::MintToken(f.rsa, claims);
  REQUIRE(token.ok());

  auto result = verifier.Verify(*token);  // still down: 503-class error, one fetch
  REQUIRE(std::holds_alternative<pi::TokenVerifyError>(result));
  CHECK(std::get<pi::TokenVerifyError>(result).reason == pi::TokenError::kKeysUnavailable);
  CHECK(f.http.requests().size() == 2);
  f.Serve(pi::JwksJson({f.rsa}));
  result = verifier.Verify(*token);  // inside the rate-limit window: no fetch
  CHECK(std::holds_alternative<pi::TokenVerifyError>(result));
  CHECK(f.http.requests().size() == 2);
  f.clock.Advance(std::chrono::seconds(30));
  result = verifier.Verify(*token);
  CHECK(std::holds_alternative<pi::VerifiedIdentity>(result));
  CHECK(f.http.requests().size() == 3);
}
