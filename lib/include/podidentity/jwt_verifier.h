// Service-account token verification: a pod's projected token (a compact JWS signed
// by the API server) in, the pod it was issued for out. JwtVerifier checks it locally
// against a JWKS; TokenReviewVerifier asks the API server (so tokens of deleted pods
// are rejected too). Every failure has its own reason code; messages never contain
// the token.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>

#include "podidentity/clock.h"
#include "podidentity/http_client.h"
#include "podidentity/key_source.h"
#include "podidentity/status.h"

namespace podidentity {

// Why a token was rejected. All are the caller's fault (HTTP 400 in the agent, as EKS
// answers) except kKeysUnavailable and kReviewUnavailable (our side: 503).
enum class TokenError {
  kTooLarge,             // over max_token_bytes (checked before anything else)
  kMalformed,            // not three base64url parts, bad JSON, wrong claim types
  kAlgorithmNotAllowed,  // alg other than RS256 / ES256 (none, HS256, RS384, ...)
  kUnknownKeyId,         // no key with the token's kid, even after a refresh
  kBadSignature,         // the signature does not verify (or the key is of another type)
  kWrongIssuer,          // iss missing or not the configured issuer
  kWrongAudience,        // aud missing or does not contain the configured audience
  kExpired,              // exp (+ leeway) is past
  kNotYetValid,          // nbf (- leeway) is in the future
  kIssuedInFuture,       // iat (- leeway) is in the future
  kMissingClaim,         // exp, sub or kubernetes.io missing
  kSubjectMismatch,      // sub is not system:serviceaccount:<ns>:<sa> of the kubernetes.io claim
  kMissingPodClaim,      // no kubernetes.io.pod name + uid (pod identity needs a pod-bound token)
  kReviewRejected,       // TokenReview: not authenticated, or no pod / audience in the answer
  kKeysUnavailable,      // no key set loaded yet
  kReviewUnavailable,    // TokenReview could not be performed (API server down, 5xx)
};
// Stable snake_case name for logs and metric labels, e.g. "token_expired".
std::string_view TokenErrorName(TokenError error);
// True when the token (the client) is at fault: the agent answers 400.
bool IsClientTokenError(TokenError error);

struct TokenVerifyError {
  TokenError reason = TokenError::kMalformed;
  std::string message;  // what was wrong; never the token or parts of it
  // kUnauthenticated for client errors (kInvalidArgument for kTooLarge / kMalformed),
  // kUnavailable for kKeysUnavailable / kReviewUnavailable; message as above.
  Status ToStatus() const;
};

// The pod a token was issued for. Filled only from a verified token.
struct VerifiedIdentity {
  std::string namespace_name;
  std::string service_account;
  std::string pod_name;
  std::string pod_uid;
  std::string service_account_uid;  // may be empty
  std::string node_name;            // kubernetes.io.node.name; may be empty
  std::chrono::system_clock::time_point expiration;  // the token's exp
};

using TokenVerifyResult = std::variant<VerifiedIdentity, TokenVerifyError>;

// Thread-safety: implementations are thread-safe.
class ServiceAccountTokenVerifier {
 public:
  virtual ~ServiceAccountTokenVerifier() = default;
  virtual TokenVerifyResult Verify(std::string_view token) = 0;
  // The answer Verify() would give, but only when it can be given at once from memory
  // (no key refresh, no signature math, no I/O, no waiting); nullopt otherwise, and then
  // the caller runs Verify() where blocking is allowed. For an event loop's fast path.
  // The default never knows: verifiers without such a cache need not implement it.
  virtual std::optional<TokenVerifyResult> VerifyIfCached(std::string_view /*token*/) { return std::nullopt; }
};

struct JwtVerifierOptions {
  std::string issuer;                                 // required: the API server's --service-account-issuer
  std::string audience = "pods.eks.amazonaws.com";   // must be one of the token's aud values
  std::chrono::seconds leeway{60};                    // clock skew allowed for exp, nbf, iat
  size_t max_token_bytes = 16 * 1024;
  // Verified-token cache: a pod's SDK presents the same token on every call, so a
  // token that verified is remembered (by the SHA-256 of its bytes; the token itself is
  // not stored) and, while the entry holds, answered without repeating the signature
  // math and the claim parsing. An entry holds while all of these are true:
  //   - now < min(verification time + verified_cache_ttl, exp + leeway);
  //   - the key set is the very snapshot the token was verified against (any JWKS
  //     change, e.g. a rotated or removed key, invalidates every entry at once).
  // Only successes are cached. 0 entries turns the cache off.
  size_t verified_cache_entries = 10000;
  std::chrono::seconds verified_cache_ttl{300};
  // Called after each successful verification; from_cache says whether the
  // verified-token cache answered. For metrics: must be cheap and thread-safe.
  std::function<void(bool from_cache)> on_success;
};

// Local verification against a JwksSource. Order: size, structure, header (strict
// JSON, alg allowlist), key by kid (one rate-limited refresh on an unknown kid),
// signature, then the claims. A token without a kid (Kubernetes always sets one) is
// accepted only when the key set holds exactly one key of the token's algorithm.
// Thread-safe and lock-free on the hot path (the key set is a snapshot; each
// signature check uses its own EVP_MD_CTX).
//
// With the verified-token cache on (the default, see JwtVerifierOptions), a repeated
// token costs one SHA-256, a map lookup under mu_ and one JwksSource::Current() call
// (which may be made with mu_ held, so it must never call back into the verifier).
class JwtVerifier final : public ServiceAccountTokenVerifier {
 public:
  JwtVerifier(JwksSource& keys, const Clock& clock, JwtVerifierOptions options);
  TokenVerifyResult Verify(std::string_view token) override;
  // Answers only from the verified-token cache: the identity Verify() would return when
  // the token's entry holds by exactly the rules of a cache hit in Verify() (TTL,
  // exp + leeway on the injected clock, the same key-set snapshot, max_token_bytes, the
  // cache turned on), counted as a hit like one (cache_hits(), on_success(true));
  // nullopt otherwise. Costs one SHA-256, a map lookup under mu_ and one lock-free
  // JwksSource::Current(): never a refresh, a signature check or any I/O. Never returns
  // an error (only successes are cached).
  std::optional<TokenVerifyResult> VerifyIfCached(std::string_view token) override;

  // Tokens answered from the verified-token cache, and entries in it now.
  uint64_t cache_hits() const { return cache_hits_.load(std::memory_order_relaxed); }
  size_t cache_size() const;

 private:
  struct CachedToken {
    VerifiedIdentity identity;
    std::shared_ptr<const Jwks> jwks;  // the snapshot it was verified against (kept alive: no ABA)
    std::chrono::system_clock::time_point valid_until;
  };
  TokenVerifyResult VerifyWithCache(std::string_view token, bool* from_cache);
  // The cache-hit rules shared by Verify() and VerifyIfCached(): the identity cached
  // under `digest` (the SHA-256 of the token) if its entry holds now and was verified
  // against the current key set; counts the hit. Drops an entry whose time is up.
  std::optional<VerifiedIdentity> FindCached(const std::string& digest);
  // Whether the verified-token cache applies to `token` at all (on, and not oversize).
  bool CacheApplies(std::string_view token) const;
  TokenVerifyResult VerifyUncached(std::string_view token, std::shared_ptr<const Jwks>* verified_with);
  void Remember(std::string digest, const VerifiedIdentity& identity, std::shared_ptr<const Jwks> jwks);

  JwksSource& keys_;
  const Clock& clock_;
  const JwtVerifierOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, CachedToken> cache_;  // guarded by mu_; key: SHA-256 of the token
  std::atomic<uint64_t> cache_hits_{0};
};

// The claims check alone, on a payload whose signature was already verified (or by
// the API server, for TokenReview). Exposed for tests.
TokenVerifyResult CheckServiceAccountClaims(std::string_view payload_json, const JwtVerifierOptions& options,
                                            std::chrono::system_clock::time_point now);

// TokenReview (authentication.k8s.io/v1): request body and answer.
std::string BuildTokenReviewRequest(std::string_view token, std::string_view audience);
// Parses the API server's answer. Requires status.authenticated, a service-account
// username, the pod name + uid extras and the audience in status.audiences.
TokenVerifyResult ParseTokenReviewResponse(std::string_view json, std::string_view audience);

struct TokenReviewVerifierOptions {
  std::string url = "https://kubernetes.default.svc/apis/authentication.k8s.io/v1/tokenreviews";
  std::string audience = "pods.eks.amazonaws.com";
  // The agent's own service-account token (re-read per request). Empty: no Authorization.
  std::string bearer_token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::chrono::seconds cache_ttl{30};  // positive answers only; never past the token's exp
  size_t max_cache_entries = 10000;
  size_t max_token_bytes = 16 * 1024;
  std::chrono::milliseconds timeout{5000};
};

// Asks the API server about each token, caching positive answers briefly keyed by the
// SHA-256 of the token (the token itself is never stored). Thread-safe: mu_ guards cache_.
class TokenReviewVerifier final : public ServiceAccountTokenVerifier {
 public:
  TokenReviewVerifier(HttpClient& http, const Clock& clock, TokenReviewVerifierOptions options);
  TokenVerifyResult Verify(std::string_view token) override;
  size_t cache_size() const;

 private:
  struct Entry {
    VerifiedIdentity identity;
    std::chrono::system_clock::time_point valid_until;
  };
  HttpClient& http_;
  const Clock& clock_;
  const TokenReviewVerifierOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> cache_;  // key: SHA-256 of the token (raw bytes)
};

}  // namespace podidentity
