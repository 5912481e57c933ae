// Token minting: service-account tokens shaped exactly like the ones the API server
// projects into pods (header {"alg","kid"}, claims aud, exp, iat, nbf, iss, sub, jti,
// kubernetes.io{namespace, serviceaccount, pod, node}), signed with RS256 or ES256.
// For tests, the demo and benchmarks only: the agent never mints tokens. Also
// generates key pairs and renders their public halves as a JWKS, and builds the
// forgeries the security tests need (alg none, HS256 keyed with the public key).
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "podidentity/jwks.h"
#include "podidentity/status.h"

namespace podidentity {

// A private signing key with its kid. Immutable; copies share the key. Thread-safe.
class SigningKey {
 public:
  // RSA (RS256, `rsa_bits`) or EC P-256 (ES256).
  static StatusOr<SigningKey> Generate(SignatureAlgorithm alg, std::string kid, int rsa_bits = 2048);
  // A PEM private key (PKCS#8 or traditional); the algorithm follows the key type
  // (RSA -> RS256, EC P-256 -> ES256; other curves and types fail).
  static StatusOr<SigningKey> FromPrivateKeyPem(std::string_view pem, std::string kid);

  const std::string& kid() const { return kid_; }
  SignatureAlgorithm algorithm() const { return algorithm_; }

  std::string PrivateKeyPem() const;  // PKCS#8
  std::string PublicKeyPem() const;   // SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----")
  // {"use":"sig","kty":...,"kid":...,"alg":...,<n,e | crv,x,y>} as the API server publishes it.
  std::string PublicJwkJson() const;
  // The public half, ready for a Jwks (benchmarks and tests without JSON).
  StatusOr<VerificationKey> PublicKey() const;
  // A JWS signature over `input`: PKCS#1 v1.5 for RS256, raw R||S for ES256.
  StatusOr<std::string> Sign(std::string_view input) const;

 private:
  SigningKey(std::string kid, SignatureAlgorithm alg, std::shared_ptr<EVP_PKEY> pkey)
      : kid_(std::move(kid)), algorithm_(alg), pkey_(std::move(pkey)) {}
  std::string kid_;
  SignatureAlgorithm algorithm_;
  std::shared_ptr<EVP_PKEY> pkey_;
};

// {"keys":[<PublicJwkJson of each key>]}
std::string JwksJson(const std::vector<SigningKey>& keys);

// What the API server puts into a projected token.
struct ServiceAccountTokenClaims {
  std::string issuer = "https://kubernetes.default.svc.cluster.local";
  std::vector<std::string> audiences{"pods.eks.amazonaws.com"};
  std::string namespace_name = "default";
  std::string service_account = "default";
  std::string service_account_uid;
  // Empty pod_name: no kubernetes.io.pod claim (a token not bound to a pod).
  std::string pod_name;
  std::string pod_uid;
  std::string node_name;  // empty: no kubernetes.io.node claim
  std::string node_uid;
  // Default "system:serviceaccount:<namespace>:<service account>"; set to forge a mismatch.
  std::optional<std::string> subject;
  std::chrono::system_clock::time_point issued_at;  // iat
  std::chrono::seconds ttl{3600};                   // exp = iat + ttl
  std::chrono::seconds not_before_offset{0};        // nbf = iat + offset
  std::string jti;                                  // empty: no jti claim
  size_t padding_bytes = 0;                         // adds "padding":"xxx..." (size-limit tests)
};

std::string BuildClaimsJson(const ServiceAccountTokenClaims& claims);
// {"alg":<alg>,"kid":<kid>} (no kid member when kid is empty).
std::string BuildHeaderJson(std::string_view alg, std::string_view kid);

// base64url(header).base64url(payload).base64url(signature) with the key's algorithm.
// The header is taken as given (tests pass odd headers on purpose).
StatusOr<std::string> SignCompact(const SigningKey& key, std::string_view header_json, std::string_view payload_json);
// A token as the API server would mint it with this key.
StatusOr<std::string> MintToken(const SigningKey& key, const ServiceAccountTokenClaims& claims);

// Forgeries for negative tests. alg "none" with an empty signature:
std::string MintUnsignedToken(std::string_view kid, const ServiceAccountTokenClaims& claims);
// alg "HS256", HMAC-SHA256 keyed with `secret` (the classic attack uses the public key PEM).
std::string MintHs256Token(std::string_view secret, std::string_view kid, const ServiceAccountTokenClaims& claims);

}  // namespace podidentity
