// mint-token: makes signing keys and service-account tokens shaped like the API
// server's, for the integration tests, the demo and the benchmarks (never for
// production: real tokens come from the kubelet). Subcommands:
//   keygen --alg RS256|ES256 --kid K --out-key key.pem --out-jwks jwks.json
//   jwks   --key key.pem --kid K [--key key2.pem --kid K2 ...]   (prints a JWKS)
//   mint   --key key.pem --kid K --issuer I --audience A --namespace N
//          --service-account S --pod-name P --pod-uid U --ttl 86400 [...]
// `mint` prints the token without a trailing newline (SDKs reject one in token files).
// `mint --count N` prints N tokens, one per line, for pods "<P>-<i>" with uids "<U>-<i>"
// (i = 0..N-1), e.g. to fill the agent's cache with N distinct pods.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "podidentity/jwks.h"
#include "podidentity/token_minter.h"

namespace pi = podidentity;

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "mint-token: %s\n", message.c_str());
  return 1;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return true;
}

bool WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) return false;
    out << content;
    if (!out) return false;
  }
  return ::chmod(path.c_str(), mode) == 0;
}

pi::StatusOr<pi::SigningKey> LoadKey(const std::string& path, const std::string& kid) {
  std::string pem;
  if (!ReadFile(path, &pem)) return pi::InvalidArgumentError("cannot read " + path);
  auto key = pi::SigningKey::FromPrivateKeyPem(pem, kid);
  if (!key.ok()) return pi::InvalidArgumentError(path + ": " + key.status().message());
  return key;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mint-token: test keys and service-account tokens shaped like the API server's", "mint-token"};
  app.require_subcommand(1);

  // keygen
  CLI::App* keygen = app.add_subcommand("keygen", "Generate a signing key and write its JWKS");
  std::string alg = "RS256", kid, out_key, out_jwks;
  int bits = 2048;
  keygen->add_option("--alg", alg, "RS256 or ES256")->check(CLI::IsMember({"RS256", "ES256"}))->capture_default_str();
  keygen->add_option("--kid", kid, "Key id")->required();
  keygen->add_option("--out-key", out_key, "Private key PEM to write (mode 0600)")->required();
  keygen->add_option("--out-jwks", out_jwks, "JWKS JSON to write (the public key)")->required();
  keygen->add_option("--bits", bits, "RSA modulus size")->capture_default_str();

  // jwks
  CLI::App* jwks = app.add_subcommand("jwks", "Print a JWKS with the public halves of the given keys");
  std::vector<std::string> jwks_keys, jwks_kids;
  jwks->add_option("--key", jwks_keys, "Private key PEM (repeatable)")->required();
  jwks->add_option("--kid", jwks_kids, "Key id, one per --key")->required();

  // mint
  CLI::App* mint = app.add_subcommand("mint", "Print a signed service-account token (no trailing newline)");
  std::string key_path, mint_kid, alg_override;
  pi::ServiceAccountTokenClaims claims;
  std::vector<std::string> audiences;
  int64_t ttl = 86400, not_before_offset = 0, issued_at_offset = 0, now = 0;
  size_t pad_bytes = 0;
  size_t count = 0;
  bool no_pod = false;
  std::string subject;
  mint->add_option("--key", key_path, "Private key PEM (RSA -> RS256, EC P-256 -> ES256)")->required();
  mint->add_option("--kid", mint_kid, "Key id for the header (may differ from the JWKS: unknown-kid tests)")->required();
  mint->add_option("--issuer", claims.issuer, "iss")->required();
  mint->add_option("--audience", audiences, "aud (repeatable)")->required();
  mint->add_option("--namespace", claims.namespace_name, "kubernetes.io.namespace")->required();
  mint->add_option("--service-account", claims.service_account, "kubernetes.io.serviceaccount.name")->required();
  mint->add_option("--service-account-uid", claims.service_account_uid, "kubernetes.io.serviceaccount.uid");
  mint->add_option("--pod-name", claims.pod_name, "kubernetes.io.pod.name");
  mint->add_option("--pod-uid", claims.pod_uid, "kubernetes.io.pod.uid");
  mint->add_option("--node-name", claims.node_name, "kubernetes.io.node.name (optional)");
  mint->add_option("--ttl", ttl, "Seconds from iat to exp (negative: already expired)")->capture_default_str();
  mint->add_option("--not-before-offset", not_before_offset, "nbf = iat + this many seconds")->capture_default_str();
  mint->add_option("--issued-at-offset", issued_at_offset, "iat = now + this many seconds")->capture_default_str();
  mint->add_option("--now", now, "Current time as Unix seconds (default: the system clock)");
  mint->add_option("--subject", subject, "Override sub (subject-mismatch tests)");
  mint->add_flag("--no-pod", no_pod, "Omit kubernetes.io.pod (a token not bound to a pod)");
  mint->add_option("--pad-bytes", pad_bytes, "Add a padding claim of this many bytes (size-limit tests)");
  mint->add_option("--alg-override", alg_override, "Forge: none (unsigned) or HS256 (HMAC keyed with the public key PEM)")
      ->check(CLI::IsMember({"none", "HS256"}));
  mint->add_option("--count", count, "Print this many tokens, one per line, for pods <pod-name>-<i>")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }

  if (keygen->parsed()) {
    auto key = pi::SigningKey::Generate(*pi::ParseSignatureAlgorithm(alg), kid, bits);
    if (!key.ok()) return Fail(key.status().message());
    if (!WriteFile(out_key, key->PrivateKeyPem(), 0600)) return Fail("cannot write " + out_key);
    if (!WriteFile(out_jwks, pi::JwksJson({*key}) + "\n", 0644)) return Fail("cannot write " + out_jwks);
    return 0;
  }

  if (jwks->parsed()) {
    if (jwks_keys.size() != jwks_kids.size()) return Fail("give one --kid per --key");
    std::vector<pi::SigningKey> keys;
    for (size_t i = 0; i < jwks_keys.size(); ++i) {
      auto key = LoadKey(jwks_keys[i], jwks_kids[i]);
      if (!key.ok()) return Fail(key.status().message());
      keys.push_back(*key);
    }
    std::cout << pi::JwksJson(keys) << "\n";
    return 0;
  }

  auto key = LoadKey(key_path, mint_kid);
  if (!key.ok()) return Fail(key.status().message());
  const auto clock_now = now != 0 ? std::chrono::system_clock::time_point(std::chrono::seconds(now))
                                  : std::chrono::system_clock::now();
  claims.audiences = audiences;
  claims.issued_at = clock_now + std::chrono::seconds(issued_at_offset);
  claims.ttl = std::chrono::seconds(ttl);
  claims.not_before_offset = std::chrono::seconds(not_before_offset);
  claims.padding_bytes = pad_bytes;
  if (!subject.empty()) claims.subject = subject;
  if (no_pod) {
    claims.pod_name.clear();
    claims.pod_uid.clear();
  } else if (claims.pod_name.empty() || claims.pod_uid.empty()) {
    return Fail("--pod-name and --pod-uid are required (or --no-pod)");
  }

  if (count > 0) {
    if (no_pod || !alg_override.empty()) return Fail("--count mints pod-bound signed tokens only");
    const std::string pod_name = claims.pod_name, pod_uid = claims.pod_uid;
    std::string out;
    for (size_t i = 0; i < count; ++i) {
      claims.pod_name = pod_name + "-" + std::to_string(i);
      claims.pod_uid = pod_uid + "-" + std::to_string(i);
      auto signed_token = pi::MintToken(*key, claims);
      if (!signed_token.ok()) return Fail(signed_token.status().message());
      out += *signed_token;
      out += '\n';
    }
    std::cout << out << std::flush;
    return 0;
  }

  std::string token;
  if (alg_override == "none") {
    token = pi::MintUnsignedToken(mint_kid, claims);
  } else if (alg_override == "HS256") {
    token = pi::MintHs256Token(key->PublicKeyPem(), mint_kid, claims);
  } else {
    auto signed_token = pi::MintToken(*key, claims);
    if (!signed_token.ok()) return Fail(signed_token.status().message());
    token = *signed_token;
  }
  std::cout << token << std::flush;
  return 0;
}
