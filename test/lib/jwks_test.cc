// JWKS parsing: RSA and EC keys as the API server publishes them, and every way a key
// is skipped (short modulus, wrong curve, off-curve point, missing fields, garbage
// base64, use/alg mismatches, duplicate kids) or a document refused outright.
#include "podidentity/jwks.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "podidentity/base64.h"
#include "podidentity/token_minter.h"
#include "test_support.h"

using podidentity::Jwks;
using podidentity::SignatureAlgorithm;
using podidentity::SigningKey;
using podidentity::VerificationKey;

namespace {

// Replaces the first `"name":"..."` string value in a JWK.
std::string WithMember(std::string jwk, const std::string& name, const std::string& value) {
  const std::string marker = "\"" + name + "\":\"";
  const size_t start = jwk.find(marker);
  REQUIRE(start != std::string::npos);
  const size_t value_start = start + marker.size();
  const size_t end = jwk.find('"', value_start);
  return jwk.replace(value_start, end - value_start, value);
}

std::string WithoutMember(std::string jwk, const std::string& name) {
  const std::string marker = "\"" + name + "\":\"";
  const size_t start = jwk.find(marker);
  REQUIRE(start != std::string::npos);
  size_t end = jwk.find('"', start + marker.size()) + 1;
  if (jwk[end] == ',') ++end;
  else if (jwk[start - 1] == ',') return jwk.erase(start - 1, end - start + 1);
  return jwk.erase(start, end - start);
}

std::string Doc(const std::vector<std::string>& keys) {
  std::string out = "{\"keys\":[";
  for (size_t i = 0; i < keys.size(); ++i) out += (i ? "," : "") + keys[i];
  return out + "]}";
}

}  // namespace

TEST_CASE("JWKS with an RSA and an EC key parses into usable keys", "[jwks]") {
  const SigningKey rsa = podidentity::testing::JwtTestKey("rsa-2048.pem", "rsa-kid");
  const SigningKey ec = podidentity::testing::JwtTestKey("ec-p256.pem", "ec-kid");
  auto jwks = Jwks::Parse(podidentity::JwksJson({rsa, ec}));
  REQUIRE(jwks.ok());
  CHECK(jwks->keys().size() == 2);
  CHECK(jwks->skipped().empty());
  CHECK(jwks->Kids() == std::vector<std::string>{"ec-kid", "rsa-kid"});

  const VerificationKey* rsa_key = jwks->Find("rsa-kid");
  REQUIRE(rsa_key != nullptr);
  CHECK(rsa_key->algorithm() == SignatureAlgorithm::kRS256);
  CHECK(rsa_key->bits() == 2048);
  const VerificationKey* ec_key = jwks->Find("ec-kid");
  REQUIRE(ec_key != nullptr);
  CHECK(ec_key->algorithm() == SignatureAlgorithm::kES256);
  CHECK(jwks->Find("other") == nullptr);
  CHECK(jwks->Find("") == nullptr);
  CHECK(jwks->FindOnly(SignatureAlgorithm::kRS256) == rsa_key);
  CHECK(jwks->FindOnly(SignatureAlgorithm::kES256) == ec_key);

  // The parsed keys verify what the private halves signed, and nothing else.
  auto rsa_sig = rsa.Sign("hello");
  auto ec_sig = ec.Sign("hello");
  REQUIRE(rsa_sig.ok());
  REQUIRE(ec_sig.ok());
  CHECK(ec_sig->size() == 64);
  CHECK(rsa_key->Verify("hello", *rsa_sig));
  CHECK(ec_key->Verify("hello", *ec_sig));
  CHECK_FALSE(rsa_key->Verify("hellO", *rsa_sig));
  CHECK_FALSE(ec_key->Verify("hellO", *ec_sig));
  CHECK_FALSE(rsa_key->Verify("hello", *ec_sig));
  CHECK_FALSE(ec_key->Verify("hello", rsa_sig->substr(0, 64)));
  CHECK_FALSE(ec_key->Verify("hello", ec_sig->substr(0, 63)));
  CHECK_FALSE(rsa_key->Verify("hello", rsa_sig->substr(1)));
}

TEST_CASE("A JWK as Kubernetes publishes it (no alg member) is accepted", "[jwks]") {
  const SigningKey rsa = podidentity::testing::JwtTestKey("rsa-2048.pem", "k8s");
  // kube-apiserver's /openid/v1/jwks: {"use":"sig","kty":"RSA","kid":...,"alg":"RS256","n":...,"e":"AQAB"};
  // some tools omit alg and use: both are optional.
  std::string jwk = WithoutMember(WithoutMember(rsa.PublicJwkJson(), "alg"), "use");
  auto jwks = Jwks::Parse(Doc({jwk}));
  REQUIRE(jwks.ok());
  CHECK(jwks->Find("k8s") != nullptr);
}

TEST_CASE("Unusable keys are skipped with a reason", "[jwks]") {
  const SigningKey rsa = podidentity::testing::JwtTestKey("rsa-2048.pem", "good");
  const SigningKey ec = podidentity::testing::JwtTestKey("ec-p256.pem", "ec");
  const SigningKey short_rsa = podidentity::testing::JwtTestKey("rsa-1024.pem", "short");
  const std::string good = rsa.PublicJwkJson();
  const std::string ec_jwk = ec.PublicJwkJson();

  struct Case {
    std::string name;
    std::string jwk;
    std::string reason;  // substring of the skip reason
  };
  std::string off_curve_y = *podidentity::base64::DecodeUrl(
      ec_jwk.substr(ec_jwk.find("\"y\":\"") + 5, 43));
  off_curve_y[31] = static_cast<char>(off_curve_y[31] ^ 1);
  const std::vector<Case> cases = {
      {"short modulus", short_rsa.PublicJwkJson(), "1024 bits"},
      {"wrong curve", WithMember(WithMember(ec_jwk, "crv", "P-384"), "kid", "p384"), "unsupported curve"},
      {"point not on the curve", WithMember(WithMember(ec_jwk, "y", podidentity::base64::EncodeUrl(off_curve_y)), "kid", "off"),
       "P-256"},
      {"short coordinate", WithMember(WithMember(ec_jwk, "x", "AQAB"), "kid", "shortx"), "32 bytes"},
      {"missing n", WithMember(WithoutMember(good, "n"), "kid", "no-n"), "missing \"n\""},
      {"missing e", WithMember(WithoutMember(good, "e"), "kid", "no-e"), "missing \"e\""},
      {"missing x", WithMember(WithoutMember(ec_jwk, "x"), "kid", "no-x"), "missing \"x\""},
      {"missing crv", WithMember(WithoutMember(ec_jwk, "crv"), "kid", "no-crv"), "missing \"crv\""},
      {"missing kty", WithMember(WithoutMember(good, "kty"), "kid", "no-kty"), "missing \"kty\""},
      {"garbage base64", WithMember(WithMember(good, "n", "!!not base64!!"), "kid", "garbage"), "base64url"},
      {"padded base64", WithMember(WithMember(good, "e", "AQAB=="), "kid", "padded"), "base64url"},
      {"symmetric key", R"({"kty":"oct","kid":"oct","k":"c2VjcmV0"})", "unsupported kty"},
      {"use enc", WithMember(WithMember(good, "use", "enc"), "kid", "enc"), "\"use\""},
      {"alg RS384", WithMember(WithMember(good, "alg", "RS384"), "kid", "rs384"), "RS384"},
      {"alg ES256 on an RSA key", WithMember(WithMember(good, "alg", "ES256"), "kid", "mixed"), "ES256"},
      {"even exponent", WithMember(WithMember(good, "e", "AQAC"), "kid", "even-e"), "exponent"},
      {"duplicate kid", good, "duplicate kid"},
      {"not an object", "42", "not a JSON object"},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      auto jwks = Jwks::Parse(Doc({good, c.jwk}));
      REQUIRE(jwks.ok());
      CHECK(jwks->keys().size() == 1);
      CHECK(jwks->Find("good") != nullptr);
      REQUIRE(jwks->skipped().size() == 1);
      CHECK(jwks->skipped()[0].index == 1);
      CHECK_THAT(jwks->skipped()[0].reason, Catch::Contains(c.reason));
    }
  }
}

TEST_CASE("A JWKS without a usable key is an error that lists the reasons", "[jwks]") {
  const SigningKey short_rsa = podidentity::testing::JwtTestKey("rsa-1024.pem", "short");
  auto jwks = Jwks::Parse(Doc({short_rsa.PublicJwkJson()}));
  REQUIRE_FALSE(jwks.ok());
  CHECK_THAT(jwks.status().message(), Catch::Contains("no usable key"));
  CHECK_THAT(jwks.status().message(), Catch::Contains("kid short"));
  CHECK_THAT(jwks.status().message(), Catch::Contains("1024 bits"));

  CHECK_FALSE(Jwks::Parse(R"({"keys":[]})").ok());
  CHECK_FALSE(Jwks::Parse(R"({"keys":{}})").ok());
  CHECK_FALSE(Jwks::Parse(R"({})").ok());
  CHECK_FALSE(Jwks::Parse(R"([])").ok());
  CHECK_FALSE(Jwks::Parse("not json").ok());
  CHECK_FALSE(Jwks::Parse("").ok());
  CHECK_FALSE(Jwks::FromKeys({}).ok());
}

TEST_CASE("JWKS parsing rejects duplicate JSON keys and oversized documents", "[jwks]") {
  const SigningKey rsa = podidentity::testing::JwtTestKey("rsa-2048.pem", "good");
  std::string jwk = rsa.PublicJwkJson();
  // A second "kid" inside one key: which one counts would depend on the parser.
  std::string duplicated = jwk.substr(0, jwk.size() - 1) + ",\"kid\":\"other\"}";
  auto parsed = Jwks::Parse(Doc({duplicated}));
  REQUIRE_FALSE(parsed.ok());
  CHECK_THAT(parsed.status().message(), Catch::Contains("not valid JSON"));

  podidentity::JwksParseOptions options;
  options.max_document_bytes = 100;
  CHECK_FALSE(Jwks::Parse(Doc({jwk}), options).ok());
  options = {};
  options.max_keys = 1;
  CHECK_FALSE(Jwks::Parse(Doc({jwk, jwk}), options).ok());
}

TEST_CASE("Keys without a kid are only found by algorithm, and only when unique", "[jwks]") {
  const SigningKey a = podidentity::testing::JwtTestKey("rsa-2048.pem", "");
  const SigningKey b = podidentity::testing::JwtTestKey("rsa-2048-second.pem", "");
  auto one = Jwks::Parse(Doc({a.PublicJwkJson()}));
  REQUIRE(one.ok());
  CHECK(one->FindOnly(SignatureAlgorithm::kRS256) != nullptr);
  CHECK(one->FindOnly(SignatureAlgorithm::kES256) == nullptr);
  CHECK(one->Find("") == nullptr);
  // Two kid-less keys are not duplicates of each other, but neither is "the only one".
  auto two = Jwks::Parse(Doc({a.PublicJwkJson(), b.PublicJwkJson()}));
  REQUIRE(two.ok());
  CHECK(two->keys().size() == 2);
  CHECK(two->FindOnly(SignatureAlgorithm::kRS256) == nullptr);
}

TEST_CASE("Algorithm names: only RS256 and ES256 parse", "[jwks]") {
  CHECK(podidentity::ParseSignatureAlgorithm("RS256") == SignatureAlgorithm::kRS256);
  CHECK(podidentity::ParseSignatureAlgorithm("ES256") == SignatureAlgorithm::kES256);
  for (const char* name : {"none", "None", "HS256", "RS384", "RS512", "PS256", "ES384", "EdDSA", "rs256", ""}) {
    CHECK_FALSE(podidentity::ParseSignatureAlgorithm(name).has_value());
  }
}
