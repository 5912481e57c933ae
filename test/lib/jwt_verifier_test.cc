// Token verification: one test per reason code with tokens minted as the API server
// would (and the classic forgeries), RS256 and ES256 success, the unknown-kid refresh,
// and the TokenReview mode (request, answer parsing, caching) with a fake HTTP client.
#include "podidentity/jwt_verifier.h"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "fake_http_client.h"
#include "podidentity/base64.h"
#include "podidentity/json_util.h"
#include "podidentity/token_minter.h"
#include "test_support.h"

namespace pi = podidentity;
using pi::TokenError;
using pi::TokenVerifyError;
using pi::VerifiedIdentity;

namespace {

constexpr char kIssuer[] = "https://oidc.cluster.test";

pi::Jwks JwksOf(const std::vector<pi::SigningKey>& keys) {
  auto jwks = pi::Jwks::Parse(pi::JwksJson(keys));
  REQUIRE(jwks.ok());
  return std::move(jwks).value();
}

// A key source whose snapshot the test controls; counts lookups and refresh requests.
// The next snapshot (if any) becomes current on RefreshForUnknownKid.
class ScriptedSource final : public pi::JwksSource {
 public:
  explicit ScriptedSource(std::shared_ptr<const pi::Jwks> current) : current_(std::move(current)) {}
  std::shared_ptr<const pi::Jwks> Current() const override {
    ++lookups;
    return current_;
  }
  pi::JwksRefreshResult RefreshForUnknownKid() override {
    ++refreshes;
    if (!next_) return pi::JwksRefreshResult::kUnchanged;
    current_ = std::move(next_);
    return pi::JwksRefreshResult::kUpdated;
  }
  void SetNext(pi::Jwks next) { next_ = std::make_shared<const pi::Jwks>(std::move(next)); }
  mutable std::atomic<int> lookups{0};
  std::atomic<int> refreshes{0};

 private:
  std::shared_ptr<const pi::Jwks> current_;
  std::shared_ptr<const pi::Jwks> next_;
};

struct Fixture {
  pi::ManualClock clock;
  pi::SigningKey rsa = podidentity::testing::JwtTestKey("rsa-2048.pem", "rsa-1");
  pi::SigningKey ec = podidentity::testing::JwtTestKey("ec-p256.pem", "ec-1");
  ScriptedSource source{std::make_shared<const pi::Jwks>(JwksOf({rsa, ec}))};
  pi::JwtVerifierOptions options = [] {
    pi::JwtVerifierOptions o;
    o.issuer = kIssuer;
    return o;
  }();
  pi::JwtVerifier verifier{source, clock, options};

  pi::ServiceAccountTokenClaims Claims() const {
    pi::ServiceAccountTokenClaims c;
    c.issuer = kIssuer;
    c.namespace_name = "team-a";
    c.service_account = "app";
    c.service_account_uid = "sa-uid-1";
    c.pod_name = "app-7d9f8";
    c.pod_uid = "pod-uid-1";
    c.node_name = "node-1";
    c.node_uid = "node-uid-1";
    c.issued_at = clock.Now();
    c.ttl = std::chrono::seconds(3600);
    return c;
  }
  std::string Mint(const pi::SigningKey& key, const pi::ServiceAccountTokenClaims& claims) const {
    auto token = pi::MintToken(key, claims);
    REQUIRE(token.ok());
    return *token;
  }
  std::string Sign(const std::string& header, const std::string& payload, const pi::SigningKey& key) const {
    auto token = pi::SignCompact(key, header, payload);
    REQUIRE(token.ok());
    return *token;
  }
};

// Verifies and expects `reason`; also checks that nothing of the token leaks into the message.
TokenVerifyError ExpectError(pi::ServiceAccountTokenVerifier& verifier, const std::string& token, TokenError reason) {
  auto result = verifier.Verify(token);
  const auto* error = std::get_if<TokenVerifyError>(&result);
  REQUIRE(error != nullptr);
  INFO("message: " << error->message);
  CHECK(pi::TokenErrorName(error->reason) == pi::TokenErrorName(reason));
  CHECK_FALSE(error->message.empty());
  const size_t last_dot = token.rfind('.');
  if (last_dot != std::string::npos && token.size() - last_dot > 10) {
    CHECK(error->message.find(token.substr(last_dot + 1)) == std::string::npos);
  }
  if (token.size() > 20) CHECK(error->message.find(token.substr(0, 20)) == std::string::npos);
  return *error;
}

VerifiedIdentity ExpectIdentity(pi::ServiceAccountTokenVerifier& verifier, const std::string& token) {
  auto result = verifier.Verify(token);
  if (const auto* error = std::get_if<TokenVerifyError>(&result)) FAIL(pi::TokenErrorName(error->reason) << ": " << error->message);
  return std::get<VerifiedIdentity>(result);
}

std::string Part(const std::string& token, int index) {
  size_t start = 0;
  for (int i = 0; i < index; ++i) start = token.find('.', start) + 1;
  const size_t end = token.find('.', start);
  return token.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

std::string Decoded(const std::string& part) { return *pi::base64::DecodeUrl(part); }

}  // namespace

TEST_CASE("RS256 and ES256 tokens from the API server verify into the pod identity", "[jwt]") {
  Fixture f;
  for (const pi::SigningKey* key : {&f.rsa, &f.ec}) {
    DYNAMIC_SECTION(pi::SignatureAlgorithmName(key->algorithm())) {
      const VerifiedIdentity id = ExpectIdentity(f.verifier, f.Mint(*key, f.Claims()));
      CHECK(id.namespace_name == "team-a");
      CHECK(id.service_account == "app");
      CHECK(id.pod_name == "app-7d9f8");
      CHECK(id.pod_uid == "pod-uid-1");
      CHECK(id.service_account_uid == "sa-uid-1");
      CHECK(id.node_name == "node-1");
      CHECK(id.expiration == f.clock.Now() + std::chrono::seconds(3600));
      CHECK(f.source.refreshes == 0);
    }
  }
}

TEST_CASE("The minted token has the API server's shape", "[jwt]") {
  Fixture f;
  const std::string token = f.Mint(f.rsa, f.Claims());
  CHECK(token.find('=') == std::string::npos);
  CHECK(Decoded(Part(token, 0)) == R"({"alg":"RS256","kid":"rsa-1"})");
  rapidjson::Document payload;
  REQUIRE(pi::ParseJsonStrict(Decoded(Part(token, 1)), payload).ok());
  CHECK(payload["aud"][0].GetString() == std::string("pods.eks.amazonaws.com"));
  CHECK(payload["sub"].GetString() == std::string("system:serviceaccount:team-a:app"));
  CHECK(payload["kubernetes.io"]["pod"]["uid"].GetString() == std::string("pod-uid-1"));
  CHECK(payload["exp"].GetInt64() - payload["iat"].GetInt64() == 3600);
  CHECK(payload["nbf"].GetInt64() == payload["iat"].GetInt64());
  CHECK(pi::base64::DecodeUrl(Part(token, 2))->size() == 256);
  const std::string ec_token = f.Mint(f.ec, f.Claims());
  CHECK(pi::base64::DecodeUrl(Part(ec_token, 2))->size() == 64);
}

TEST_CASE("A forged or tampered signature is kBadSignature", "[jwt]") {
  Fixture f;
  for (const pi::SigningKey* key : {&f.rsa, &f.ec}) {
    const std::string token = f.Mint(*key, f.Claims());
    // Flip one bit of the signature.
    std::string signature = Decoded(Part(token, 2));
    signature[signature.size() / 2] = static_cast<char>(signature[signature.size() / 2] ^ 0x01);
    const std::string forged = Part(token, 0) + "." + Part(token, 1) + "." + pi::base64::EncodeUrl(signature);
    ExpectError(f.verifier, forged, TokenError::kBadSignature);

    // Another pod's claims under the original signature.
    auto other = f.Claims();
    other.pod_name = "victim";
    const std::string other_token = f.Mint(*key, other);
    ExpectError(f.verifier, Part(token, 0) + "." + Part(other_token, 1) + "." + Part(token, 2),
                TokenError::kBadSignature);
  }
  // Signed by a key with the same kid that is not in the JWKS.
  const pi::SigningKey impostor = podidentity::testing::JwtTestKey("rsa-2048-second.pem", "rsa-1");
  ExpectError(f.verifier, f.Mint(impostor, f.Claims()), TokenError::kBadSignature);
  // An RSA signature under an ES256 header naming the RSA key's kid.
  const std::string payload = pi::BuildClaimsJson(f.Claims());
  ExpectError(f.verifier, f.Sign(pi::BuildHeaderJson("ES256", "rsa-1"), payload, f.rsa), TokenError::kBadSignature);
  // Empty signature with an allowed alg.
  const std::string token = f.Mint(f.rsa, f.Claims());
  ExpectError(f.verifier, token.substr(0, token.rfind('.') + 1), TokenError::kBadSignature);
}

TEST_CASE("alg none, HS256 and other algorithms are rejected before any key lookup", "[jwt]") {
  Fixture f;
  const auto claims = f.Claims();
  ExpectError(f.verifier, pi::MintUnsignedToken("rsa-1", claims), TokenError::kAlgorithmNotAllowed);
  // The classic confusion attack: HMAC keyed with the (public) RSA key.
  ExpectError(f.verifier, pi::MintHs256Token(f.rsa.PublicKeyPem(), "rsa-1", claims), TokenError::kAlgorithmNotAllowed);
  ExpectError(f.verifier, pi::MintHs256Token(f.rsa.PublicJwkJson(), "rsa-1", claims), TokenError::kAlgorithmNotAllowed);
  const std::string payload = pi::BuildClaimsJson(claims);
  for (const char* alg : {"RS384", "RS512", "PS256", "ES384", "EdDSA", "rs256", "None", ""}) {
    ExpectError(f.verifier, f.Sign(pi::BuildHeaderJson(alg, "rsa-1"), payload, f.rsa), TokenError::kAlgorithmNotAllowed);
  }
  CHECK(f.source.lookups == 0);
  CHECK(f.source.refreshes == 0);
}

TEST_CASE("Issuer and audience must match the configuration", "[jwt]") {
  Fixture f;
  auto claims = f.Claims();
  claims.issuer = "https://evil.test";
  ExpectError(f.verifier, f.Mint(f.rsa, claims), TokenError::kWrongIssuer);
  claims = f.Claims();
  claims.audiences = {"sts.amazonaws.com"};
  ExpectError(f.verifier, f.Mint(f.rsa, claims), TokenError::kWrongAudience);
  claims.audiences = {};
  ExpectError(f.verifier, f.Mint(f.rsa, claims), TokenError::kWrongAudience);
  claims.audiences = {"https://kubernetes.default.svc", "pods.eks.amazonaws.com"};
  ExpectIdentity(f.verifier, f.Mint(f.rsa, claims));

  // aud as a single string (RFC 7519 allows it).
  std::string payload = pi::BuildClaimsJson(f.Claims());
  const std::string array = R"("aud":["pods.eks.amazonaws.com"])";
  payload.replace(payload.find(array), array.size(), R"("aud":"pods.eks.amazonaws.com")");
  ExpectIdentity(f.verifier, f.Sign(pi::BuildHeaderJson("RS256", "rsa-1"), payload, f.rsa));
  // A configured audience other than the default.
  pi::JwtVerifierOptions options = f.options;
  options.audience = "custom";
  pi::JwtVerifier custom(f.source, f.clock, options);
  ExpectError(custom, f.Mint(f.rsa, f.Claims()), TokenError::kWrongAudience);
}

TEST_CASE("exp, nbf and iat are checked with the leeway against the injected clock", "[jwt]") {
  Fixture f;
  const std::string token = f.Mint(f.rsa, f.Claims());  // exp = now + 3600
  f.clock.Advance(std::chrono::seconds(3600 + 59));
  ExpectIdentity(f.verifier, token);  // inside the 60 s leeway
  f.clock.Advance(std::chrono::seconds(1));
  ExpectError(f.verifier, token, TokenError::kExpired);

  Fixture g;
  auto claims = g.Claims();
  claims.not_before_offset = std::chrono::seconds(3600);
  ExpectError(g.verifier, g.Mint(g.rsa, claims), TokenError::kNotYetValid);
  claims.not_before_offset = std::chrono::seconds(30);
  ExpectIdentity(g.verifier, g.Mint(g.rsa, claims));

  claims = g.Claims();
  claims.issued_at = g.clock.Now() + std::chrono::hours(1);
  claims.not_before_offset = -std::chrono::hours(1);  // nbf = now: only iat is in the future
  ExpectError(g.verifier, g.Mint(g.rsa, claims), TokenError::kIssuedInFuture);

  // A zero leeway is exact.
  pi::JwtVerifierOptions strict = g.options;
  strict.leeway = std::chrono::seconds(0);
  pi::JwtVerifier exact(g.source, g.clock, strict);
  claims = g.Claims();
  claims.ttl = std::chrono::seconds(10);
  const std::string short_lived = g.Mint(g.rsa, claims);
  g.clock.Advance(std::chrono::seconds(9));
  ExpectIdentity(exact, short_lived);
  g.clock.Advance(std::chrono::seconds(1));
  ExpectError(exact, short_lived, TokenError::kExpired);
}

TEST_CASE("sub must be the kubernetes.io service account", "[jwt]") {
  Fixture f;
  auto claims = f.Claims();
  claims.subject = "system:serviceaccount:kube-system:app";
  ExpectError(f.verifier, f.Mint(f.rsa, claims), TokenError::kSubjectMismatch);
  claims.subject = "system:serviceaccount:team-a:admin";
  ExpectError(f.verifier, f.Mint(f.rsa, claims), TokenError::kSubjectMismatch);
  for (const char* subject : {"admin", "system:serviceaccount:team-a", "system:serviceaccount:team-a:app:x",
                              "system:serviceaccount::app", "system:node:team-a:app", ""}) {
    claims.subject = subject;
    ExpectError(f.verifier, f.Mint(f.rsa, claims), TokenError::kSubjectMismatch);
  }
}

TEST_CASE("A token not bound to a pod is kMissingPodClaim", "[jwt]") {
  Fixture f;
  auto claims = f.Claims();
  claims.pod_name.clear();  // no kubernetes.io.pod at all
  ExpectError(f.verifier, f.Mint(f.rsa, claims), TokenError::kMissingPodClaim);
  claims = f.Claims();
  claims.pod_uid.clear();
  ExpectError(f.verifier, f.Mint(f.rsa, claims), TokenError::kMissingPodClaim);
}

TEST_CASE("Missing and mistyped claims", "[jwt]") {
  Fixture f;
  const std::string header = pi::BuildHeaderJson("RS256", "rsa-1");
  const std::string base = pi::BuildClaimsJson(f.Claims());
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string payload = base;
    const size_t at = payload.find(from);
    REQUIRE(at != std::string::npos);
    return f.Sign(header, payload.replace(at, from.size(), to), f.rsa);
  };
  const std::string exp = "\"exp\":" + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                          f.clock.Now().time_since_epoch()).count() + 3600);
  ExpectError(f.verifier, replace(exp + ",", ""), TokenError::kMissingClaim);
  ExpectError(f.verifier, replace(exp, "\"exp\":\"tomorrow\""), TokenError::kMalformed);
  ExpectError(f.verifier, replace(exp, "\"exp\":1e300"), TokenError::kMalformed);
  ExpectError(f.verifier, replace("\"sub\":", "\"subject\":"), TokenError::kMissingClaim);
  ExpectError(f.verifier, replace("\"kubernetes.io\":", "\"k8s\":"), TokenError::kMissingClaim);
  ExpectError(f.verifier, replace("\"iss\":", "\"issuer\":"), TokenError::kWrongIssuer);
  ExpectError(f.verifier, replace("\"iss\":\"", "\"iss\":1,\"x\":\""), TokenError::kMalformed);
  // A duplicate claim: a second "sub" would be read differently by different parsers.
  ExpectError(f.verifier, replace("\"sub\":", "\"sub\":\"system:serviceaccount:x:y\",\"sub\":"), TokenError::kMalformed);
  // A payload that is not an object, or not JSON.
  ExpectError(f.verifier, f.Sign(header, "[1,2]", f.rsa), TokenError::kMalformed);
  ExpectError(f.verifier, f.Sign(header, "{\"iss\":", f.rsa), TokenError::kMalformed);
}

TEST_CASE("Structure: oversize, bad base64, wrong part count, strict header JSON", "[jwt]") {
  Fixture f;
  auto claims = f.Claims();
  claims.padding_bytes = 16 * 1024;
  const std::string big = f.Mint(f.rsa, claims);
  CHECK(big.size() > 16 * 1024);
  ExpectError(f.verifier, big, TokenError::kTooLarge);
  CHECK(f.source.lookups == 0);  // the size limit comes first
  ExpectError(f.verifier, std::string(16 * 1024 + 1, 'a'), TokenError::kTooLarge);

  const std::string token = f.Mint(f.rsa, f.Claims());
  const std::string h = Part(token, 0), p = Part(token, 1), s = Part(token, 2);
  ExpectError(f.verifier, "", TokenError::kMalformed);
  ExpectError(f.verifier, h + "." + p, TokenError::kMalformed);
  ExpectError(f.verifier, token + ".x", TokenError::kMalformed);
  ExpectError(f.verifier, "." + p + "." + s, TokenError::kMalformed);
  ExpectError(f.verifier, h + "==." + p + "." + s, TokenError::kMalformed);   // padding
  ExpectError(f.verifier, h + "." + p + "." + s + "=", TokenError::kMalformed);
  ExpectError(f.verifier, h + "." + p + "*." + s, TokenError::kMalformed);    // not base64url
  ExpectError(f.verifier, h + "." + p + "." + s.substr(0, s.size() - 1) + "+", TokenError::kMalformed);
  ExpectError(f.verifier, "Bearer " + token, TokenError::kMalformed);

  const std::string payload = pi::BuildClaimsJson(f.Claims());
  // Duplicate header keys: {"alg":"RS256",...,"alg":"none"} must not be read either way.
  ExpectError(f.verifier, f.Sign(R"({"alg":"RS256","kid":"rsa-1","alg":"RS256"})", payload, f.rsa),
              TokenError::kMalformed);
  ExpectError(f.verifier, f.Sign(R"({"alg":"RS256","kid":"rsa-1","kid":"rsa-1"})", payload, f.rsa),
              TokenError::kMalformed);
  ExpectError(f.verifier, f.Sign(R"({"kid":"rsa-1"})", payload, f.rsa), TokenError::kMalformed);
  ExpectError(f.verifier, f.Sign(R"({"alg":256,"kid":"rsa-1"})", payload, f.rsa), TokenError::kMalformed);
  ExpectError(f.verifier, f.Sign(R"({"alg":"RS256","kid":7})", payload, f.rsa), TokenError::kMalformed);
  ExpectError(f.verifier, f.Sign(R"({"alg":"RS256","kid":"rsa-1","crit":["exp"]})", payload, f.rsa),
              TokenError::kMalformed);
  ExpectError(f.verifier, f.Sign(R"(["RS256"])", payload, f.rsa), TokenError::kMalformed);
  // Extra header members such as typ are fine.
  ExpectIdentity(f.verifier, f.Sign(R"({"alg":"RS256","kid":"rsa-1","typ":"JWT"})", payload, f.rsa));
}

TEST_CASE("An unknown kid asks the source for one refresh, then retries", "[jwt]") {
  Fixture f;
  const pi::SigningKey rotated = podidentity::testing::JwtTestKey("rsa-2048-second.pem", "rsa-2");
  const std::string token = f.Mint(rotated, f.Claims());
  ExpectError(f.verifier, token, TokenError::kUnknownKeyId);
  CHECK(f.source.refreshes == 1);

  // The API server rotated its key: the refresh brings it and the retry succeeds.
  f.source.SetNext(JwksOf({f.rsa, rotated}));
  ExpectIdentity(f.verifier, token);
  CHECK(f.source.refreshes == 2);
  ExpectIdentity(f.verifier, token);
  CHECK(f.source.refreshes == 2);  // known now: no more refreshes
}

TEST_CASE("A token without a kid uses the only key of its algorithm", "[jwt]") {
  Fixture f;
  const std::string payload = pi::BuildClaimsJson(f.Claims());
  ExpectIdentity(f.verifier, f.Sign(R"({"alg":"RS256"})", payload, f.rsa));
  ExpectIdentity(f.verifier, f.Sign(R"({"alg":"ES256"})", payload, f.ec));

  const pi::SigningKey second = podidentity::testing::JwtTestKey("rsa-2048-second.pem", "rsa-2");
  ScriptedSource two(std::make_shared<const pi::Jwks>(JwksOf({f.rsa, second})));
  pi::JwtVerifier verifier(two, f.clock, f.options);
  ExpectError(verifier, f.Sign(R"({"alg":"RS256"})", payload, f.rsa), TokenError::kUnknownKeyId);
  CHECK(two.refreshes == 0);  // no kid: a refresh could not help
}

TEST_CASE("No key set yet is kKeysUnavailable, a server-side error", "[jwt]") {
  Fixture f;
  ScriptedSource empty(nullptr);
  pi::JwtVerifier verifier(empty, f.clock, f.options);
  const TokenVerifyError error = ExpectError(verifier, f.Mint(f.rsa, f.Claims()), TokenError::kKeysUnavailable);
  CHECK_FALSE(pi::IsClientTokenError(error.reason));
  CHECK(error.ToStatus().code() == pi::StatusCode::kUnavailable);
}

TEST_CASE("Reason names are unique and the status categories fit the agent's mapping", "[jwt]") {
  std::set<std::string> names;
  for (int i = 0; i <= static_cast<int>(TokenError::kReviewUnavailable); ++i) {
    const auto reason = static_cast<TokenError>(i);
    const std::string name(pi::TokenErrorName(reason));
    CHECK(name != "unknown");
    CHECK(names.insert(name).second);
    const pi::Status status = TokenVerifyError{reason, "m"}.ToStatus();
    CHECK_FALSE(status.ok());
    if (pi::IsClientTokenError(reason)) {
      CHECK((status.code() == pi::StatusCode::kUnauthenticated || status.code() == pi::StatusCode::kInvalidArgument));
    } else {
      CHECK(status.code() == pi::StatusCode::kUnavailable);
    }
  }
  CHECK(pi::TokenErrorName(TokenError::kExpired) == "token_expired");
  CHECK(TokenVerifyError{TokenError::kMalformed, "m"}.ToStatus().code() == pi::StatusCode::kInvalidArgument);
  CHECK(TokenVerifyError{TokenError::kBadSignature, "m"}.ToStatus().code() == pi::StatusCode::kUnauthenticated);
}

TEST_CASE("Concurrent verification shares one key snapshot", "[jwt]") {
  Fixture f;
  const std::string rsa_token = f.Mint(f.rsa, f.Claims());
  const std::string ec_token = f.Mint(f.ec, f.Claims());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        auto result = f.verifier.Verify(t % 2 ? rsa_token : ec_token);
        if (std::holds_alternative<VerifiedIdentity>(result)) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(ok == 100);
}

TEST_CASE("A verified token is answered from the cache until a rule says otherwise", "[jwt][cache]") {
  Fixture f;
  const std::string token = f.Mint(f.rsa, f.Claims());  // exp = now + 3600
  const VerifiedIdentity first = ExpectIdentity(f.verifier, token);
  CHECK(f.verifier.cache_hits() == 0);
  CHECK(f.verifier.cache_size() == 1);

  SECTION("the same bytes again: a hit with the same identity") {
    const VerifiedIdentity again = ExpectIdentity(f.verifier, token);
    CHECK(f.verifier.cache_hits() == 1);
    CHECK(again.pod_uid == first.pod_uid);
    CHECK(again.pod_name == first.pod_name);
    CHECK(again.namespace_name == first.namespace_name);
    CHECK(again.service_account == first.service_account);
    CHECK(again.expiration == first.expiration);
  }
  SECTION("one changed byte in the signature is another token: verified, and rejected") {
    std::string tampered = token;
    tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
    ExpectError(f.verifier, tampered, TokenError::kBadSignature);
    CHECK(f.verifier.cache_hits() == 0);
  }
  SECTION("after the TTL the token is verified again (and cached again)") {
    f.clock.Advance(f.options.verified_cache_ttl);
    ExpectIdentity(f.verifier, token);
    CHECK(f.verifier.cache_hits() == 0);
    ExpectIdentity(f.verifier, token);
    CHECK(f.verifier.cache_hits() == 1);
  }
  SECTION("a changed key set invalidates the entry: a removed key rejects the cached token") {
    f.source.SetNext(JwksOf({f.ec}));
    REQUIRE(f.source.RefreshForUnknownKid() == pi::JwksRefreshResult::kUpdated);
    ExpectError(f.verifier, token, TokenError::kUnknownKeyId);
    CHECK(f.verifier.cache_hits() == 0);
  }
  SECTION("a new snapshot with the same keys still re-verifies once") {
    f.source.SetNext(JwksOf({f.rsa, f.ec}));
    REQUIRE(f.source.RefreshForUnknownKid() == pi::JwksRefreshResult::kUpdated);
    ExpectIdentity(f.verifier, token);
    CHECK(f.verifier.cache_hits() == 0);
    ExpectIdentity(f.verifier, token);
    CHECK(f.verifier.cache_hits() == 1);
  }
}

TEST_CASE("on_success reports each successful verification and whether the cache answered", "[jwt][cache]") {
  Fixture f;
  std::vector<bool> calls;
  pi::JwtVerifierOptions options = f.options;
  options.on_success = [&calls](bool from_cache) { calls.push_back(from_cache); };
  pi::JwtVerifier verifier(f.source, f.clock, options);
  const std::string token = f.Mint(f.rsa, f.Claims());
  ExpectIdentity(verifier, token);
  ExpectIdentity(verifier, token);
  std::string tampered = token;
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  ExpectError(verifier, tampered, TokenError::kBadSignature);  // failures are not reported
  CHECK(calls == std::vector<bool>{false, true});
}

TEST_CASE("A cached token never outlives its exp plus the leeway", "[jwt][cache]") {
  Fixture f;
  auto claims = f.Claims();
  claims.ttl = std::chrono::seconds(100);  // shorter than the cache TTL
  const std::string token = f.Mint(f.rsa, claims);
  ExpectIdentity(f.verifier, token);
  f.clock.Advance(std::chrono::seconds(100 + 59));
  ExpectIdentity(f.verifier, token);  // inside the leeway: a hit
  CHECK(f.verifier.cache_hits() == 1);
  f.clock.Advance(std::chrono::seconds(1));
  ExpectError(f.verifier, token, TokenError::kExpired);
  CHECK(f.verifier.cache_hits() == 1);
  CHECK(f.verifier.cache_size() == 0);
}

TEST_CASE("Rejected tokens are not cached; the cache is bounded; 0 entries turns it off", "[jwt][cache]") {
  Fixture f;
  const std::string wrong_issuer = [&] {
    auto claims = f.Claims();
    claims.issuer = "https://elsewhere.test";
    return f.Mint(f.rsa, claims);
  }();
  ExpectError(f.verifier, wrong_issuer, TokenError::kWrongIssuer);
  ExpectError(f.verifier, wrong_issuer, TokenError::kWrongIssuer);
  CHECK(f.verifier.cache_size() == 0);
  CHECK(f.verifier.cache_hits() == 0);

  pi::JwtVerifierOptions small = f.options;
  small.verified_cache_entries = 2;
  pi::JwtVerifier bounded(f.source, f.clock, small);
  std::vector<std::string> tokens;
  for (int i = 0; i < 5; ++i) {
    auto claims = f.Claims();
    claims.pod_uid = "pod-uid-" + std::to_string(i);
    tokens.push_back(f.Mint(i % 2 ? f.ec : f.rsa, claims));
    CHECK(ExpectIdentity(bounded, tokens.back()).pod_uid == claims.pod_uid);
    CHECK(bounded.cache_size() <= 2);
  }
  for (size_t i = 0; i < tokens.size(); ++i) {  // every token still verifies, cached or not
    CHECK(ExpectIdentity(bounded, tokens[i]).pod_uid == "pod-uid-" + std::to_string(i));
  }

  pi::JwtVerifierOptions off = f.options;
  off.verified_cache_entries = 0;
  pi::JwtVerifier uncached(f.source, f.clock, off);
  const std::string token = f.Mint(f.rsa, f.Claims());
  ExpectIdentity(uncached, token);
  ExpectIdentity(uncached, token);
  CHECK(uncached.cache_hits() == 0);
  CHECK(uncached.cache_size() == 0);
}

// ---------------------------------------------------------------------------------------
// TokenReview

namespace {

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("jwt-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::ofstream(path_) << content;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

std::string ReviewAnswer(bool authenticated, const std::string& audiences = R"(["pods.eks.amazonaws.com"])",
                         bool with_pod = true) {
  std::string extra = with_pod ? R"("authentication.kubernetes.io/pod-name":["app-7d9f8"],
                                     "authentication.kubernetes.io/pod-uid":["pod-uid-1"],)"
                               : "";
  return R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},
    "spec":{"token":"redacted","audiences":["pods.eks.amazonaws.com"]},
    "status":{"authenticated":)" +
         std::string(authenticated ? "true" : "false") + R"(,"user":{"username":"system:serviceaccount:team-a:app",
      "uid":"sa-uid-1","groups":["system:serviceaccounts","system:serviceaccounts:team-a","system:authenticated"],
      "extra":{)" + extra + R"("authentication.kubernetes.io/node-name":["node-1"]}},
      "audiences":)" + audiences + (authenticated ? "" : R"(,"error":"service account token has expired")") + "}}";
}

struct ReviewFixture {
  pi::ManualClock clock;
  TempFile agent_token{"agent-sa-token\n"};
  int status = 201;
  std::string body = ReviewAnswer(true);
  pi::testing::FakeHttpClient http{[this](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    if (status < 0) return pi::UnavailableError("connection refused");
    pi::HttpResponse response;
    response.status = status;
    response.body = body;
    return response;
  }};
  pi::TokenReviewVerifierOptions options = [this] {
    pi::TokenReviewVerifierOptions o;
    o.url = "https://api.test/apis/authentication.k8s.io/v1/tokenreviews";
    o.bearer_token_file = agent_token.path();
    return o;
  }();
  pi::TokenReviewVerifier verifier{http, clock, options};
  pi::SigningKey key = podidentity::testing::JwtTestKey("ec-p256.pem", "ec-1");

  std::string Token(std::chrono::seconds ttl = std::chrono::seconds(3600)) {
    pi::ServiceAccountTokenClaims claims;
    claims.pod_name = "app-7d9f8";
    claims.pod_uid = "pod-uid-1";
    claims.issued_at = clock.Now();
    claims.ttl = ttl;
    auto token = pi::MintToken(key, claims);
    REQUIRE(token.ok());
    return *token;
  }
};

}  // namespace

TEST_CASE("TokenReview request body", "[tokenreview]") {
  const std::string body = pi::BuildTokenReviewRequest("a.b\"c", "pods.eks.amazonaws.com");
  rapidjson::Document doc;
  REQUIRE(pi::ParseJsonStrict(body, doc).ok());
  CHECK(doc["apiVersion"].GetString() == std::string("authentication.k8s.io/v1"));
  CHECK(doc["kind"].GetString() == std::string("TokenReview"));
  CHECK(doc["spec"]["token"].GetString() == std::string("a.b\"c"));
  REQUIRE(doc["spec"]["audiences"].Size() == 1);
  CHECK(doc["spec"]["audiences"][0].GetString() == std::string("pods.eks.amazonaws.com"));
}

TEST_CASE("TokenReview answers are parsed into the pod identity or a reason", "[tokenreview]") {
  const std::string aud = "pods.eks.amazonaws.com";
  auto ok = pi::ParseTokenReviewResponse(ReviewAnswer(true), aud);
  REQUIRE(std::holds_alternative<VerifiedIdentity>(ok));
  const auto& id = std::get<VerifiedIdentity>(ok);
  CHECK(id.namespace_name == "team-a");
  CHECK(id.service_account == "app");
  CHECK(id.pod_name == "app-7d9f8");
  CHECK(id.pod_uid == "pod-uid-1");
  CHECK(id.service_account_uid == "sa-uid-1");
  CHECK(id.node_name == "node-1");

  auto reason = [&](const std::string& answer) {
    auto result = pi::ParseTokenReviewResponse(answer, aud);
    REQUIRE(std::holds_alternative<TokenVerifyError>(result));
    return std::get<TokenVerifyError>(result).reason;
  };
  CHECK(reason(ReviewAnswer(false)) == TokenError::kReviewRejected);
  CHECK(reason(ReviewAnswer(true, "[]")) == TokenError::kWrongAudience);
  CHECK(reason(ReviewAnswer(true, R"(["https://kubernetes.default.svc"])")) == TokenError::kWrongAudience);
  CHECK(reason(ReviewAnswer(true, R"(["pods.eks.amazonaws.com"])", false)) == TokenError::kMissingPodClaim);
  std::string user = ReviewAnswer(true);
  user.replace(user.find("system:serviceaccount:team-a:app"), 32, "jane@example.com");
  CHECK(reason(user) == TokenError::kSubjectMismatch);
  CHECK(reason("{}") == TokenError::kReviewUnavailable);
  CHECK(reason("<html>") == TokenError::kReviewUnavailable);
  CHECK(reason(R"({"status":{"authenticated":"true"}})") == TokenError::kReviewRejected);
}

TEST_CASE("TokenReviewVerifier posts the token with the audience and the agent's bearer token", "[tokenreview]") {
  ReviewFixture f;
  const std::string token = f.Token();
  const VerifiedIdentity id = ExpectIdentity(f.verifier, token);
  CHECK(id.pod_uid == "pod-uid-1");
  CHECK(id.expiration == f.clock.Now() + std::chrono::seconds(3600));  // read from the accepted token
  const auto requests = f.http.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].method == "POST");
  CHECK(requests[0].url == "https://api.test/apis/authentication.k8s.io/v1/tokenreviews");
  const auto has = [&](const std::string& name, const std::string& value) {
    for (const auto& [n, v] : requests[0].headers) {
      if (n == name && v == value) return true;
    }
    return false;
  };
  CHECK(has("Authorization", "Bearer agent-sa-token"));  // trailing newline trimmed
  CHECK(has("Content-Type", "application/json"));
  rapidjson::Document body;
  REQUIRE(pi::ParseJsonStrict(requests[0].body, body).ok());
  CHECK(body["spec"]["token"].GetString() == token);
  CHECK(body["spec"]["audiences"][0].GetString() == std::string("pods.eks.amazonaws.com"));
}

TEST_CASE("TokenReviewVerifier caches positive answers briefly, never negative ones", "[tokenreview]") {
  ReviewFixture f;
  const std::string token = f.Token();
  ExpectIdentity(f.verifier, token);
  ExpectIdentity(f.verifier, token);
  CHECK(f.http.requests().size() == 1);
  CHECK(f.verifier.cache_size() == 1);
  f.clock.Advance(std::chrono::seconds(29));
  ExpectIdentity(f.verifier, token);
  CHECK(f.http.requests().size() == 1);
  f.clock.Advance(std::chrono::seconds(1));  // 30 s: the entry is stale
  ExpectIdentity(f.verifier, token);
  CHECK(f.http.requests().size() == 2);

  // The pod was deleted: the API server now says no, every time.
  f.clock.Advance(std::chrono::seconds(30));
  f.body = ReviewAnswer(false);
  ExpectError(f.verifier, token, TokenError::kReviewRejected);
  ExpectError(f.verifier, token, TokenError::kReviewRejected);
  CHECK(f.http.requests().size() == 4);
  CHECK(f.verifier.cache_size() == 0);
}

TEST_CASE("TokenReview cache entries never outlive the token", "[tokenreview]") {
  ReviewFixture f;
  const std::string token = f.Token(std::chrono::seconds(10));
  ExpectIdentity(f.verifier, token);
  f.clock.Advance(std::chrono::seconds(10));
  f.body = ReviewAnswer(false);
  ExpectError(f.verifier, token, TokenError::kReviewRejected);
  CHECK(f.http.requests().size() == 2);
}

TEST_CASE("TokenReview failures on our side are kReviewUnavailable", "[tokenreview]") {
  ReviewFixture f;
  f.status = 503;
  CHECK_FALSE(pi::IsClientTokenError(ExpectError(f.verifier, f.Token(), TokenError::kReviewUnavailable).reason));
  f.status = 403;  // the agent's service account may not create TokenReviews
  ExpectError(f.verifier, f.Token(), TokenError::kReviewUnavailable);
  f.status = -1;
  ExpectError(f.verifier, f.Token(), TokenError::kReviewUnavailable);
  f.status = 201;
  f.options.bearer_token_file = "/nonexistent/token";
  pi::TokenReviewVerifier no_token(f.http, f.clock, f.options);
  const size_t before = f.http.requests().size();
  ExpectError(no_token, f.Token(), TokenError::kReviewUnavailable);
  CHECK(f.http.requests().size() == before);
  ExpectError(f.verifier, std::string(16 * 1024 + 1, 'a'), TokenError::kTooLarge);
  CHECK(f.http.requests().size() == before);
}

TEST_CASE("Tokens signed by an independent implementation (Node.js crypto) verify", "[jwt]") {
  pi::ManualClock clock;  // starts at 1700000000, the tokens' iat
  pi::JwtVerifierOptions options;
  options.issuer = kIssuer;
  for (const std::string kid : {"node-es256", "node-rs256"}) {
    DYNAMIC_SECTION(kid) {
      auto jwks = pi::Jwks::Parse(podidentity::testing::ReadJwtTestData(kid + ".jwks.json"));
      REQUIRE(jwks.ok());
      pi::StaticJwksSource source(std::move(jwks).value());
      pi::JwtVerifier verifier(source, clock, options);
      const std::string token = podidentity::testing::ReadJwtTestData(kid + ".token");
      const VerifiedIdentity id = ExpectIdentity(verifier, token);
      CHECK(id.pod_name == "node-signed");
      CHECK(id.pod_uid == "11111111-2222-3333-4444-555555555555");
      CHECK(id.service_account_uid == "66666666-7777-8888-9999-000000000000");
      clock.Advance(std::chrono::hours(2));
      ExpectError(verifier, token, TokenError::kExpired);
    }
  }
}

// ---------------------------------------------------------------------------------------
// VerifyIfCached: the verified-token cache alone, for an event loop's fast path.

namespace {

VerifiedIdentity ExpectCachedIdentity(pi::ServiceAccountTokenVerifier& verifier, const std::string& token) {
  std::optional<pi::TokenVerifyResult> result = verifier.VerifyIfCached(token);
  REQUIRE(result.has_value());
  REQUIRE(std::holds_alternative<VerifiedIdentity>(*result));
  return std::get<VerifiedIdentity>(*result);
}

}  // namespace

TEST_CASE("VerifyIfCached answers only from the verified-token cache", "[jwt][cache][if_cached]") {
  Fixture f;
  const std::string token = f.Mint(f.rsa, f.Claims());  // exp = now + 3600
  const int lookups_before = f.source.lookups;
  CHECK_FALSE(f.verifier.VerifyIfCached(token).has_value());  // never verified
  CHECK(f.source.lookups == lookups_before);                   // nothing cached: no key lookup either
  CHECK(f.verifier.cache_size() == 0);                          // and nothing verified or cached
  CHECK(f.verifier.cache_hits() == 0);

  const VerifiedIdentity verified = ExpectIdentity(f.verifier, token);
  int refreshes_before = f.source.refreshes;

  SECTION("after Verify: the same identity, counted as a cache hit") {
    const VerifiedIdentity cached = ExpectCachedIdentity(f.verifier, token);
    CHECK(cached.namespace_name == verified.namespace_name);
    CHECK(cached.service_account == verified.service_account);
    CHECK(cached.pod_name == verified.pod_name);
    CHECK(cached.pod_uid == verified.pod_uid);
    CHECK(cached.service_account_uid == verified.service_account_uid);
    CHECK(cached.node_name == verified.node_name);
    CHECK(cached.expiration == verified.expiration);
    CHECK(f.verifier.cache_hits() == 1);
    ExpectIdentity(f.verifier, token);  // and Verify still hits too
    CHECK(f.verifier.cache_hits() == 2);
  }
  SECTION("another token (one changed byte) is not known") {
    std::string tampered = token;
    tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
    CHECK_FALSE(f.verifier.VerifyIfCached(tampered).has_value());
  }
  SECTION("after the cache TTL: nullopt, and the entry is dropped as Verify drops it") {
    f.clock.Advance(f.options.verified_cache_ttl - std::chrono::seconds(1));
    ExpectCachedIdentity(f.verifier, token);
    f.clock.Advance(std::chrono::seconds(1));
    CHECK_FALSE(f.verifier.VerifyIfCached(token).has_value());
    CHECK(f.verifier.cache_size() == 0);
    CHECK(f.verifier.cache_hits() == 1);
  }
  SECTION("after a key-set change: nullopt, even with the same keys") {
    f.source.SetNext(JwksOf({f.rsa, f.ec}));
    REQUIRE(f.source.RefreshForUnknownKid() == pi::JwksRefreshResult::kUpdated);
    refreshes_before = f.source.refreshes;  // that one was the test's own
    CHECK_FALSE(f.verifier.VerifyIfCached(token).has_value());
    CHECK(f.verifier.cache_hits() == 0);
    ExpectIdentity(f.verifier, token);  // re-verified against the new snapshot
    ExpectCachedIdentity(f.verifier, token);
  }
  CHECK(f.source.refreshes == refreshes_before);  // never asks the source for keys
}

TEST_CASE("VerifyIfCached: never past exp plus the leeway", "[jwt][cache][if_cached]") {
  Fixture f;
  auto claims = f.Claims();
  claims.ttl = std::chrono::seconds(100);  // shorter than the cache TTL
  const std::string token = f.Mint(f.rsa, claims);
  ExpectIdentity(f.verifier, token);
  f.clock.Advance(std::chrono::seconds(100 + 59));
  ExpectCachedIdentity(f.verifier, token);  // inside the leeway
  f.clock.Advance(std::chrono::seconds(1));
  CHECK_FALSE(f.verifier.VerifyIfCached(token).has_value());
  CHECK(f.verifier.cache_hits() == 1);
}

TEST_CASE("VerifyIfCached: nullopt with the cache off or for oversize tokens", "[jwt][cache][if_cached]") {
  Fixture f;
  pi::JwtVerifierOptions off = f.options;
  off.verified_cache_entries = 0;
  pi::JwtVerifier uncached(f.source, f.clock, off);
  const std::string token = f.Mint(f.rsa, f.Claims());
  ExpectIdentity(uncached, token);
  CHECK_FALSE(uncached.VerifyIfCached(token).has_value());
  CHECK(uncached.cache_hits() == 0);

  // A token over max_token_bytes is never answered from the cache (Verify rejects it).
  pi::JwtVerifierOptions small = f.options;
  small.max_token_bytes = token.size() - 1;
  pi::JwtVerifier limited(f.source, f.clock, small);
  ExpectError(limited, token, TokenError::kTooLarge);
  CHECK_FALSE(limited.VerifyIfCached(token).has_value());

  // The TokenReview verifier keeps the interface's default: it never answers early.
  ReviewFixture review;
  const std::string review_token = review.Token();
  REQUIRE(std::holds_alternative<VerifiedIdentity>(review.verifier.Verify(review_token)));
  CHECK_FALSE(review.verifier.VerifyIfCached(review_token).has_value());
}

TEST_CASE("VerifyIfCached reports its hits to on_success as cache answers", "[jwt][cache][if_cached]") {
  Fixture f;
  std::vector<bool> calls;
  pi::JwtVerifierOptions options = f.options;
  options.on_success = [&calls](bool from_cache) { calls.push_back(from_cache); };
  pi::JwtVerifier verifier(f.source, f.clock, options);
  const std::string token = f.Mint(f.rsa, f.Claims());
  CHECK_FALSE(verifier.VerifyIfCached(token).has_value());  // a miss is not reported
  ExpectIdentity(verifier, token);
  ExpectCachedIdentity(verifier, token);
  CHECK(calls == std::vector<bool>{false, true});
}
