#include "podidentity/token_minter.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <chrono>

#include "podidentity/base64.h"
#include "podidentity/json_util.h"

namespace podidentity {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct BigNumFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using UniqueBio = std::unique_ptr<BIO, BioFree>;
using UniqueBigNum = std::unique_ptr<BIGNUM, BigNumFree>;

constexpr int kP256CoordinateBytes = 32;

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

// A public-key parameter as big-endian bytes, left-padded to `width` when width > 0.
std::string BigNumParam(EVP_PKEY* pkey, const char* name, int width = 0) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &raw) != 1) return std::string();
  UniqueBigNum bn(raw);
  const int size = width > 0 ? width : BN_num_bytes(bn.get());
  std::string out(static_cast<size_t>(size), '\0');
  if (BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), size) != size) return std::string();
  return out;
}

bool IsP256(EVP_PKEY* pkey) {
  char group[64] = {};
  size_t length = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &length) != 1) return false;
  const std::string_view name(group, length);
  return name == "prime256v1" || name == "P-256" || name == "secp256r1";
}

int64_t Seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

void AppendMember(std::string& out, std::string_view key, std::string_view value) {
  if (out.back() != '{') out.push_back(',');
  AppendJsonString(out, key);
  out.push_back(':');
  AppendJsonString(out, value);
}

void AppendNumber(std::string& out, std::string_view key, int64_t value) {
  if (out.back() != '{') out.push_back(',');
  AppendJsonString(out, key);
  out.push_back(':');
  out += std::to_string(value);
}

std::string SigningInput(std::string_view header_json, std::string_view payload_json) {
  return base64::EncodeUrl(header_json) + "." + base64::EncodeUrl(payload_json);
}

}  // namespace

StatusOr<SigningKey> SigningKey::Generate(SignatureAlgorithm alg, std::string kid, int rsa_bits) {
  EVP_PKEY* raw = alg == SignatureAlgorithm::kRS256
                      ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(rsa_bits))
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (raw == nullptr) return InternalError("key generation failed");
  return SigningKey(std::move(kid), alg, std::shared_ptr<EVP_PKEY>(raw, PkeyFree()));
}

StatusOr<SigningKey> SigningKey::FromPrivateKeyPem(std::string_view pem, std::string kid) {
  UniqueBio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return InternalError("BIO_new_mem_buf failed");
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (raw == nullptr) return InvalidArgumentError("not a PEM private key");
  std::shared_ptr<EVP_PKEY> pkey(raw, PkeyFree());
  if (EVP_PKEY_is_a(pkey.get(), "RSA")) return SigningKey(std::move(kid), SignatureAlgorithm::kRS256, std::move(pkey));
  if (EVP_PKEY_is_a(pkey.get(), "EC") && IsP256(pkey.get())) {
    return SigningKey(std::move(kid), SignatureAlgorithm::kES256, std::move(pkey));
  }
  return InvalidArgumentError("the private key is neither RSA nor EC P-256");
}

std::string SigningKey::PrivateKeyPem() const {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) return "";
  return BioText(bio.get());
}

std::string SigningKey::PublicKeyPem() const {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey_.get()) != 1) return "";
  return BioText(bio.get());
}

std::string SigningKey::PublicJwkJson() const {
  std::string out = "{";
  AppendMember(out, "use", "sig");
  if (algorithm_ == SignatureAlgorithm::kRS256) {
    AppendMember(out, "kty", "RSA");
    AppendMember(out, "kid", kid_);
    AppendMember(out, "alg", "RS256");
    AppendMember(out, "n", base64::EncodeUrl(BigNumParam(pkey_.get(), OSSL_PKEY_PARAM_RSA_N)));
    AppendMember(out, "e", base64::EncodeUrl(BigNumParam(pkey_.get(), OSSL_PKEY_PARAM_RSA_E)));
  } else {
    AppendMember(out, "kty", "EC");
    AppendMember(out, "kid", kid_);
    AppendMember(out, "crv", "P-256");
    AppendMember(out, "alg", "ES256");
    AppendMember(out, "x", base64::EncodeUrl(BigNumParam(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_X, kP256CoordinateBytes)));
    AppendMember(out, "y", base64::EncodeUrl(BigNumParam(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_Y, kP256CoordinateBytes)));
  }
  out += "}";
  return out;
}

StatusOr<VerificationKey> SigningKey::PublicKey() const {
  if (algorithm_ == SignatureAlgorithm::kRS256) {
    return VerificationKey::FromRsa(kid_, BigNumParam(pkey_.get(), OSSL_PKEY_PARAM_RSA_N),
                                    BigNumParam(pkey_.get(), OSSL_PKEY_PARAM_RSA_E), 1024);
  }
  return VerificationKey::FromEcP256(kid_, BigNumParam(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_X, kP256CoordinateBytes),
                                     BigNumParam(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_Y, kP256CoordinateBytes));
}

StatusOr<std::string> SigningKey::Sign(std::string_view input) const {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  size_t length = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &length, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) != 1) {
    return InternalError("EVP_DigestSign failed");
  }
  std::string signature(length, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return InternalError("EVP_DigestSign failed");
  }
  signature.resize(length);
  if (algorithm_ == SignatureAlgorithm::kRS256) return signature;
  // EVP produces a DER ECDSA-Sig-Value; JWS wants R||S, each left-padded to 32 bytes.
  const unsigned char* der = reinterpret_cast<const unsigned char*>(signature.data());
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(signature.size())));
  if (!sig) return InternalError("cannot decode the ECDSA signature");
  std::string raw(2 * kP256CoordinateBytes, '\0');
  unsigned char* out = reinterpret_cast<unsigned char*>(raw.data());
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out, kP256CoordinateBytes) != kP256CoordinateBytes ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out + kP256CoordinateBytes, kP256CoordinateBytes) !=
          kP256CoordinateBytes) {
    return InternalError("ECDSA signature does not fit P-256");
  }
  return raw;
}

std::string JwksJson(const std::vector<SigningKey>& keys) {
  std::string out = "{\"keys\":[";
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out += ",";
    out += keys[i].PublicJwkJson();
  }
  out += "]}";
  return out;
}

std::string BuildClaimsJson(const ServiceAccountTokenClaims& claims) {
  const int64_t iat = Seconds(claims.issued_at);
  std::string out = "{";
  // Keys in the order the API server writes them (alphabetical, from Go's JSON encoder).
  if (out.back() != '{') out.push_back(',');
  out += "\"aud\":[";
  for (size_t i = 0; i < claims.audiences.size(); ++i) {
    if (i > 0) out += ",";
    AppendJsonString(out, claims.audiences[i]);
  }
  out += "]";
  AppendNumber(out, "exp", iat + claims.ttl.count());
  AppendNumber(out, "iat", iat);
  AppendMember(out, "iss", claims.issuer);
  if (!claims.jti.empty()) AppendMember(out, "jti", claims.jti);
  out += ",\"kubernetes.io\":{";
  AppendMember(out, "namespace", claims.namespace_name);
  if (!claims.node_name.empty()) {
    out += ",\"node\":{";
    AppendMember(out, "name", claims.node_name);
    if (!claims.node_uid.empty()) AppendMember(out, "uid", claims.node_uid);
    out += "}";
  }
  if (!claims.pod_name.empty()) {
    out += ",\"pod\":{";
    AppendMember(out, "name", claims.pod_name);
    AppendMember(out, "uid", claims.pod_uid);
    out += "}";
  }
  out += ",\"serviceaccount\":{";
  AppendMember(out, "name", claims.service_account);
  if (!claims.service_account_uid.empty()) AppendMember(out, "uid", claims.service_account_uid);
  out += "}}";
  AppendNumber(out, "nbf", iat + claims.not_before_offset.count());
  if (claims.padding_bytes > 0) AppendMember(out, "padding", std::string(claims.padding_bytes, 'x'));
  AppendMember(out, "sub", claims.subject.value_or("system:serviceaccount:" + claims.namespace_name + ":" +
                                                    claims.service_account));
  out += "}";
  return out;
}

std::string BuildHeaderJson(std::string_view alg, std::string_view kid) {
  std::string out = "{";
  AppendMember(out, "alg", alg);
  if (!kid.empty()) AppendMember(out, "kid", kid);
  out += "}";
  return out;
}

StatusOr<std::string> SignCompact(const SigningKey& key, std::string_view header_json, std::string_view payload_json) {
  std::string input = SigningInput(header_json, payload_json);
  StatusOr<std::string> signature = key.Sign(input);
  if (!signature.ok()) return signature.status();
  return input + "." + base64::EncodeUrl(*signature);
}

StatusOr<std::string> MintToken(const SigningKey& key, const ServiceAccountTokenClaims& claims) {
  return SignCompact(key, BuildHeaderJson(SignatureAlgorithmName(key.algorithm()), key.kid()), BuildClaimsJson(claims));
}

std::string MintUnsignedToken(std::string_view kid, const ServiceAccountTokenClaims& claims) {
  return SigningInput(BuildHeaderJson("none", kid), BuildClaimsJson(claims)) + ".";
}

std::string MintHs256Token(std::string_view secret, std::string_view kid, const ServiceAccountTokenClaims& claims) {
  const std::string input = SigningInput(BuildHeaderJson("HS256", kid), BuildClaimsJson(claims));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(input.data()),
       input.size(), mac, &length);
  return input + "." + base64::EncodeUrl(std::string_view(reinterpret_cast<const char*>(mac), length));
}

}  // namespace podidentity
