// agent-micro: the in-process half of bench/agent (a benchmark, not a test).
//
//   verify  Service-account token verifications per second, RS256 (2048-bit) and ES256,
//           through JwtVerifier::Verify with its verified-token cache off (split,
//           base64url, strict JSON header and claims, key by kid, signature, every claim
//           check), against a baseline in the same run: OpenSSL's EVP_DigestVerify over
//           the same signing input with the same key and a pre-decoded signature, i.e.
//           the signature math alone. The ratio says how much the verifier adds around
//           the crypto. A last column gives the rate for a repeated token with the cache
//           on (what a pod's SDK polling with the same token costs).
//   memory  Heap bytes per CredentialCache entry (glibc mallinfo2 before/after N
//           entries with realistic key and credential sizes), next to the bytes of the
//           strings the entry must hold anyway (the baseline).
//
// Usage: agent-micro [--seconds S] [--entries N] [--session-token-bytes B]
// Prints markdown tables. Exits non-zero when a verification that must succeed fails,
// so a broken build cannot print a fast but meaningless figure.
#include <malloc.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "podidentity/base64.h"
#include "podidentity/clock.h"
#include "podidentity/credential_cache.h"
#include "podidentity/jwks.h"
#include "podidentity/jwt_verifier.h"
#include "podidentity/key_source.h"
#include "podidentity/token_minter.h"

namespace pi = podidentity;
using Steady = std::chrono::steady_clock;

namespace {

constexpr const char* kIssuer = "https://kubernetes.default.svc.cluster.local";

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "agent-micro: %s\n", message.c_str());
  std::exit(1);
}

// Runs `op` repeatedly for about `seconds` (checking the time every 64 calls) and
// returns calls per second.
template <typename Op>
double Rate(double seconds, Op&& op) {
  const auto start = Steady::now();
  const auto budget = std::chrono::duration<double>(seconds);
  uint64_t calls = 0;
  for (;;) {
    for (int i = 0; i < 64; ++i) op();
    calls += 64;
    const auto elapsed = std::chrono::duration<double>(Steady::now() - start);
    if (elapsed >= budget) return static_cast<double>(calls) / elapsed.count();
  }
}

// The JWS signature as OpenSSL's EVP_DigestVerify wants it: PKCS#1 bytes as they are
// for RS256, R||S converted to a DER ECDSA-Sig-Value for ES256.
std::string SignatureForOpenSsl(pi::SignatureAlgorithm alg, const std::string& jws_signature) {
  if (alg == pi::SignatureAlgorithm::kRS256) return jws_signature;
  if (jws_signature.size() != 64) Die("ES256 signature is not 64 bytes");
  const auto* raw = reinterpret_cast<const unsigned char*>(jws_signature.data());
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(raw, 32, nullptr);
  BIGNUM* s = BN_bin2bn(raw + 32, 32, nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) Die("ECDSA_SIG");
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) Die("i2d_ECDSA_SIG");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

struct VerifyRow {
  std::string alg;
  size_t token_bytes = 0;
  double verifier_per_s = 0;
  double openssl_per_s = 0;
  double cached_per_s = 0;
};

VerifyRow BenchVerify(pi::SignatureAlgorithm alg, double seconds) {
  auto key = pi::SigningKey::Generate(alg, "bench-key");
  if (!key.ok()) Die("key generation: " + key.status().message());
  pi::ServiceAccountTokenClaims claims;
  claims.issuer = kIssuer;
  claims.namespace_name = "demo-ns";
  claims.service_account = "demo-sa";
  claims.service_account_uid = "5f1c1e0c-8d0b-4c43-9d5e-8f0b2a6e1a11";
  claims.pod_name = "demo-app-7d4b9c8f6d-x2k9q";
  claims.pod_uid = "0b4c3e2a-1f5d-4a7b-9c8e-6d5f4e3a2b1c";
  claims.node_name = "ip-192-168-12-34.us-west-2.compute.internal";
  claims.node_uid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
  claims.jti = "3c2b1a09-8f7e-4d6c-b5a4-392817160504";
  claims.issued_at = std::chrono::system_clock::now();
  claims.ttl = std::chrono::hours(24);
  auto token = pi::MintToken(*key, claims);
  if (!token.ok()) Die("minting: " + token.status().message());

  auto public_key = key->PublicKey();
  if (!public_key.ok()) Die("public key: " + public_key.status().message());
  auto jwks = pi::Jwks::FromKeys({*public_key});
  if (!jwks.ok()) Die("jwks: " + jwks.status().message());
  pi::StaticJwksSource source(std::move(*jwks));
  pi::JwtVerifierOptions options;
  options.issuer = kIssuer;
  options.verified_cache_entries = 0;  // every call does the whole verification
  pi::JwtVerifier verifier(source, pi::SystemClock::Instance(), options);
  options.verified_cache_entries = 10000;
  pi::JwtVerifier cached(source, pi::SystemClock::Instance(), options);

  for (pi::JwtVerifier* v : {&verifier, &cached}) {
    auto first = v->Verify(*token);
    if (!std::holds_alternative<pi::VerifiedIdentity>(first)) {
      Die("the benchmark token does not verify: " + std::get<pi::TokenVerifyError>(first).message);
    }
  }

  // Baseline inputs, prepared once: the signing input and the decoded signature.
  const std::string_view text(*token);
  const size_t last_dot = text.rfind('.');
  const std::string signing_input(text.substr(0, last_dot));
  auto jws_signature = pi::base64::DecodeUrl(text.substr(last_dot + 1));
  if (!jws_signature.ok()) Die("signature base64url");
  const std::string signature = SignatureForOpenSsl(alg, *jws_signature);
  EVP_PKEY* pkey = public_key->pkey();

  VerifyRow row;
  row.alg = std::string(pi::SignatureAlgorithmName(alg));
  row.token_bytes = token->size();
  uint64_t failures = 0;
  row.verifier_per_s = Rate(seconds, [&] {
    if (!std::holds_alternative<pi::VerifiedIdentity>(verifier.Verify(*token))) ++failures;
  });
  row.openssl_per_s = Rate(seconds, [&] {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
                    EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                                     signing_input.size()) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) ++failures;
  });
  const uint64_t hits_before = cached.cache_hits();
  uint64_t calls = 0;
  row.cached_per_s = Rate(seconds, [&] {
    ++calls;
    if (!std::holds_alternative<pi::VerifiedIdentity>(cached.Verify(*token))) ++failures;
  });
  if (cached.cache_hits() - hits_before != calls) Die("the repeated token was not answered from the cache");
  if (failures != 0) Die(std::to_string(failures) + " verifications failed during the run");
  return row;
}

// Heap bytes in use (glibc). Only differences are meaningful.
size_t HeapInUse() { return mallinfo2().uordblks; }

struct MemoryRow {
  size_t entries = 0;
  double bytes_per_entry = 0;
  double payload_per_entry = 0;
};

// A fixed-width decimal suffix so every key and credential has the same size.
std::string Numbered(std::string_view prefix, size_t i, size_t width) {
  std::string digits = std::to_string(i);
  if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
  return std::string(prefix) + digits;
}

MemoryRow BenchMemory(size_t entries, size_t session_token_bytes) {
  pi::ManualClock clock(std::chrono::system_clock::now());
  pi::CredentialCacheOptions options;
  options.max_entries = entries;
  const auto expiration = clock.Now() + std::chrono::hours(1);
  const std::string role_arn = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access";

  // Keys and credentials are built before the first measurement, so the difference is
  // what the cache itself allocates: the encoded key, the entry, the shared credentials.
  std::vector<pi::CacheKey> keys;
  std::vector<pi::AwsCredentials> credentials;
  keys.reserve(entries);
  credentials.reserve(entries);
  double payload = 0;
  for (size_t i = 0; i < entries; ++i) {
    pi::CacheKey key;
    key.pod_uid = Numbered("0b4c3e2a-1f5d-4a7b-9c8e-", i, 12);  // 36 characters, like a uid
    key.pod_name = Numbered("demo-app-7d4b9c8f6d-", i, 6);
    key.namespace_name = "demo-ns";
    key.service_account = "demo-sa";
    key.role_arn = role_arn;
    pi::AwsCredentials c;
    c.access_key_id = Numbered("ASIA", i, 16);
    c.secret_access_key = Numbered("wJalrXUtnFEMI/K7MDENG/bPxRfiCY", i, 10);
    c.session_token = Numbered(std::string(session_token_bytes - 10, 'T'), i, 10);
    c.account_id = "111122223333";
    c.expiration = expiration;
    payload += static_cast<double>(pi::EncodeCacheKey(key).size() + c.access_key_id.size() +
                                   c.secret_access_key.size() + c.session_token.size() + c.account_id.size());
    keys.push_back(std::move(key));
    credentials.push_back(std::move(c));
  }

  pi::CredentialCache cache(clock, options);
  const size_t before = HeapInUse();
  for (size_t i = 0; i < entries; ++i) {
    auto result = cache.Get(keys[i], [&]() -> pi::StatusOr<pi::AwsCredentials> { return credentials[i]; });
    if (!result.ok() || result->outcome != pi::CacheOutcome::kMissFetched) Die("cache fill failed");
  }
  const size_t after = HeapInUse();
  if (cache.size() != entries) Die("cache holds " + std::to_string(cache.size()) + " entries");

  MemoryRow row;
  row.entries = entries;
  row.bytes_per_entry = static_cast<double>(after - before) / static_cast<double>(entries);
  row.payload_per_entry = payload / static_cast<double>(entries);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"agent-micro: token verifications/s and memory per credential cache entry (bench/agent)"};
  double seconds = 2.0;
  size_t entries = 10000;
  size_t session_token_bytes = 1024;
  app.add_option("--seconds", seconds, "Seconds per verification measurement")->check(CLI::PositiveNumber);
  app.add_option("--entries", entries, "Cache entries for the memory measurement")->check(CLI::Range(1, 10'000'000));
  app.add_option("--session-token-bytes", session_token_bytes, "Session token length per entry")
      ->check(CLI::Range(16, 65536));
  CLI11_PARSE(app, argc, argv);

  std::printf("| token | bytes | JwtVerifier full verifications/s (1 thread) | OpenSSL EVP_DigestVerify/s "
              "(baseline) | ratio | repeated token, verified-token cache/s |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (auto alg : {pi::SignatureAlgorithm::kRS256, pi::SignatureAlgorithm::kES256}) {
    const VerifyRow row = BenchVerify(alg, seconds);
    std::printf("| %s | %zu | %.0f | %.0f | %.2f | %.0f |\n", row.alg.c_str(), row.token_bytes, row.verifier_per_s,
                row.openssl_per_s, row.verifier_per_s / row.openssl_per_s, row.cached_per_s);
  }
  std::printf("\n");
  const MemoryRow memory = BenchMemory(entries, session_token_bytes);
  std::printf("| cache entries | heap bytes per entry | of which key + credential strings (baseline) | ratio |\n");
  std::printf("|---|---|---|---|\n");
  std::printf("| %zu (session token %zu B) | %.0f | %.0f | %.2f |\n", memory.entries, session_token_bytes,
              memory.bytes_per_entry, memory.payload_per_entry, memory.bytes_per_entry / memory.payload_per_entry);
  return 0;
}
