// JWKS (RFC 7517): the service-account signing keys the API server publishes at
// /openid/v1/jwks, parsed into ready-to-use OpenSSL public keys. Only what Kubernetes
// signs with is kept: RSA keys of at least 2048 bits (RS256) and EC P-256 keys (ES256).
// Unusable keys are skipped with a reason; a document without a usable key is an error.
#pragma once

#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "podidentity/status.h"

namespace podidentity {

// The JWS algorithms we accept. Everything else (none, HS*, RS384, PS256, ...) is
// rejected by name before any key is looked up.
enum class SignatureAlgorithm { kRS256, kES256 };
std::string_view SignatureAlgorithmName(SignatureAlgorithm alg);  // "RS256" / "ES256"
// Only the allowlisted names; nullopt for anything else (including "none").
std::optional<SignatureAlgorithm> ParseSignatureAlgorithm(std::string_view name);

// One public key, converted once to an EVP_PKEY so that verification costs only the
// signature math. Immutable; copies share the EVP_PKEY. Thread-safe: Verify creates
// its own EVP_MD_CTX per call (OpenSSL 3 allows concurrent use of one EVP_PKEY).
class VerificationKey {
 public:
  // RSA from the big-endian modulus and exponent bytes. Fails below `min_rsa_bits`.
  static StatusOr<VerificationKey> FromRsa(std::string kid, std::string_view modulus, std::string_view exponent,
                                           int min_rsa_bits = 2048);
  // EC P-256 from the 32-byte big-endian affine coordinates; the point must be on the curve.
  static StatusOr<VerificationKey> FromEcP256(std::string kid, std::string_view x, std::string_view y);

  const std::string& kid() const { return kid_; }
  SignatureAlgorithm algorithm() const { return algorithm_; }
  int bits() const { return bits_; }

  // Verifies a JWS signature over `signing_input` ("<header>.<payload>"): PKCS#1 v1.5
  // with SHA-256 for RS256, raw R||S (64 bytes, RFC 7518 section 3.4) with SHA-256 for ES256.
  bool Verify(std::string_view signing_input, std::string_view signature) const;

  // The OpenSSL key, for callers that need it (e.g. the test token minter). Never null.
  EVP_PKEY* pkey() const { return pkey_.get(); }

 private:
  VerificationKey(std::string kid, SignatureAlgorithm alg, std::shared_ptr<EVP_PKEY> pkey, int bits)
      : kid_(std::move(kid)), algorithm_(alg), pkey_(std::move(pkey)), bits_(bits) {}
  std::string kid_;
  SignatureAlgorithm algorithm_;
  std::shared_ptr<EVP_PKEY> pkey_;
  int bits_;
};

// A key of the document that was not usable, and why (for a warning log line).
struct SkippedKey {
  size_t index = 0;  // position in "keys"
  std::string kid;   // may be empty
  std::string reason;
};

struct JwksParseOptions {
  int min_rsa_bits = 2048;          // RSA keys below this are skipped
  size_t max_document_bytes = 1 << 20;
  size_t max_keys = 100;            // more entries than this is an error, not a skip
};

// An immutable key set. Thread-safe (const after Parse).
class Jwks {
 public:
  // Parses {"keys":[...]}. Each entry needs "kty" ("RSA" with "n","e"; "EC" with
  // "crv":"P-256","x","y"), base64url without padding. Entries are skipped (not fatal)
  // when: kty/crv unsupported, "use" present and not "sig", "alg" present and not the
  // key type's algorithm (RS256 / ES256), fields missing or not valid base64url, the
  // key invalid or too short, or the kid already seen. Fails when the document is not
  // strict JSON (duplicate keys included), has no "keys" array, or no usable key.
  static StatusOr<Jwks> Parse(std::string_view json, const JwksParseOptions& options = {});
  // A key set from keys built in code (tests, benchmarks). Fails when empty.
  static StatusOr<Jwks> FromKeys(std::vector<VerificationKey> keys);

  // The key with this kid, or null. Keys without a kid are never returned here.
  const VerificationKey* Find(std::string_view kid) const;
  // For a token without a kid: the key when exactly one key has this algorithm, else null.
  const VerificationKey* FindOnly(SignatureAlgorithm alg) const;

  const std::vector<VerificationKey>& keys() const { return keys_; }
  const std::vector<SkippedKey>& skipped() const { return skipped_; }
  // Sorted kids, for logs ("keys loaded: a, b").
  std::vector<std::string> Kids() const;

 private:
  std::vector<VerificationKey> keys_;
  std::vector<SkippedKey> skipped_;
};

}  // namespace podidentity
