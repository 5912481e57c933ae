#include "podidentity/jwks.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <rapidjson/document.h>

#include <algorithm>

#include "podidentity/base64.h"
#include "podidentity/json_util.h"

namespace podidentity {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BigNumFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ParamBuildFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using UniquePkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using UniqueBigNum = std::unique_ptr<BIGNUM, BigNumFree>;

// Above this, one verification costs tens of milliseconds: a JWKS could be used to
// slow the agent down. Kubernetes uses 2048 (kubeadm) to 4096 bits.
constexpr int kMaxRsaBits = 8192;
constexpr size_t kP256CoordinateBytes = 32;

UniqueBigNum ToBigNum(std::string_view bytes) {
  return UniqueBigNum(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()),
                                nullptr));
}

// Builds a public EVP_PKEY of `type` ("RSA" / "EC") from the parameters; null on failure.
std::shared_ptr<EVP_PKEY> PublicKeyFromParams(const char* type, OSSL_PARAM_BLD* builder) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(builder));
  UniquePkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return nullptr;
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1 || raw == nullptr) return nullptr;
  return std::shared_ptr<EVP_PKEY>(raw, PkeyFree());
}

// Converts a JWS ES256 signature (R||S, 32 bytes each) to the DER ECDSA-Sig-Value EVP wants.
bool RawEcdsaToDer(std::string_view raw, std::string& der) {
  if (raw.size() != 2 * kP256CoordinateBytes) return false;
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
  UniqueBigNum r = ToBigNum(raw.substr(0, kP256CoordinateBytes));
  UniqueBigNum s = ToBigNum(raw.substr(kP256CoordinateBytes));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return false;
  r.release();  // owned by sig now
  s.release();
  const int length = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (length <= 0) return false;
  der.resize(static_cast<size_t>(length));
  unsigned char* out = reinterpret_cast<unsigned char*>(der.data());
  return i2d_ECDSA_SIG(sig.get(), &out) == length;
}

const rapidjson::Value* Member(const rapidjson::Value& object, const char* name) {
  const auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

// A required base64url member, decoded; the error names the member.
StatusOr<std::string> DecodedMember(const rapidjson::Value& key, const char* name) {
  const rapidjson::Value* value = Member(key, name);
  if (value == nullptr) return InvalidArgumentError(std::string("missing \"") + name + "\"");
  if (!value->IsString()) return InvalidArgumentError(std::string("\"") + name + "\" is not a string");
  StatusOr<std::string> bytes = base64::DecodeUrl(std::string_view(value->GetString(), value->GetStringLength()));
  if (!bytes.ok()) return InvalidArgumentError(std::string("\"") + name + "\" is not base64url: " + bytes.status().message());
  if (bytes->empty()) return InvalidArgumentError(std::string("\"") + name + "\" is empty");
  return bytes;
}

StatusOr<VerificationKey> ParseKey(const rapidjson::Value& key, std::string kid, const JwksParseOptions& options) {
  const rapidjson::Value* kty = Member(key, "kty");
  if (kty == nullptr || !kty->IsString()) return InvalidArgumentError("missing \"kty\"");
  const std::string_view type(kty->GetString(), kty->GetStringLength());
  if (type != "RSA" && type != "EC") return InvalidArgumentError("unsupported kty \"" + std::string(type) + "\"");
  const SignatureAlgorithm expected = type == "RSA" ? SignatureAlgorithm::kRS256 : SignatureAlgorithm::kES256;

  // "use" and "alg" are optional (RFC 7517 4.2, 4.4); when present they must allow
  // exactly what we would verify with this key.
  if (const rapidjson::Value* use = Member(key, "use")) {
    if (!use->IsString() || std::string_view(use->GetString(), use->GetStringLength()) != "sig") {
      return InvalidArgumentError("\"use\" is not \"sig\"");
    }
  }
  if (const rapidjson::Value* alg = Member(key, "alg")) {
    if (!alg->IsString()) return InvalidArgumentError("\"alg\" is not a string");
    const std::string_view name(alg->GetString(), alg->GetStringLength());
    if (name != SignatureAlgorithmName(expected)) {
      return InvalidArgumentError("\"alg\" " + std::string(name) + " does not match a " + std::string(type) +
                                  " key (want " + std::string(SignatureAlgorithmName(expected)) + ")");
    }
  }

  if (expected == SignatureAlgorithm::kRS256) {
    StatusOr<std::string> n = DecodedMember(key, "n");
    if (!n.ok()) return n.status();
    StatusOr<std::string> e = DecodedMember(key, "e");
    if (!e.ok()) return e.status();
    return VerificationKey::FromRsa(std::move(kid), *n, *e, options.min_rsa_bits);
  }
  const rapidjson::Value* crv = Member(key, "crv");
  if (crv == nullptr || !crv->IsString()) return InvalidArgumentError("missing \"crv\"");
  const std::string_view curve(crv->GetString(), crv->GetStringLength());
  if (curve != "P-256") return InvalidArgumentError("unsupported curve \"" + std::string(curve) + "\"");
  StatusOr<std::string> x = DecodedMember(key, "x");
  if (!x.ok()) return x.status();
  StatusOr<std::string> y = DecodedMember(key, "y");
  if (!y.ok()) return y.status();
  return VerificationKey::FromEcP256(std::move(kid), *x, *y);
}

}  // namespace

std::string_view SignatureAlgorithmName(SignatureAlgorithm alg) {
  switch (alg) {
    case SignatureAlgorithm::kRS256: return "RS256";
    case SignatureAlgorithm::kES256: return "ES256";
  }
  return "unknown";
}

std::optional<SignatureAlgorithm> ParseSignatureAlgorithm(std::string_view name) {
  if (name == "RS256") return SignatureAlgorithm::kRS256;
  if (name == "ES256") return SignatureAlgorithm::kES256;
  return std::nullopt;
}

StatusOr<VerificationKey> VerificationKey::FromRsa(std::string kid, std::string_view modulus,
                                                   std::string_view exponent, int min_rsa_bits) {
  UniqueBigNum n = ToBigNum(modulus);
  UniqueBigNum e = ToBigNum(exponent);
  if (!n || !e) return InternalError("BN_bin2bn failed");
  const int bits = BN_num_bits(n.get());
  if (bits < min_rsa_bits) {
    return InvalidArgumentError("RSA modulus has " + std::to_string(bits) + " bits; at least " +
                                std::to_string(min_rsa_bits) + " required");
  }
  if (bits > kMaxRsaBits) return InvalidArgumentError("RSA modulus has " + std::to_string(bits) + " bits; at most 8192 allowed");
  // A public exponent that is even, 1, or wider than 64 bits is not a real RSA key.
  if (!BN_is_odd(e.get()) || BN_is_one(e.get()) || BN_num_bits(e.get()) > 64) {
    return InvalidArgumentError("RSA public exponent is invalid");
  }
  std::unique_ptr<OSSL_PARAM_BLD, ParamBuildFree> builder(OSSL_PARAM_BLD_new());
  if (!builder || OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
    return InternalError("OSSL_PARAM_BLD failed");
  }
  std::shared_ptr<EVP_PKEY> pkey = PublicKeyFromParams("RSA", builder.get());
  if (!pkey) return InvalidArgumentError("OpenSSL rejected the RSA key");
  return VerificationKey(std::move(kid), SignatureAlgorithm::kRS256, std::move(pkey), bits);
}

StatusOr<VerificationKey> VerificationKey::FromEcP256(std::string kid, std::string_view x, std::string_view y) {
  if (x.size() != kP256CoordinateBytes || y.size() != kP256CoordinateBytes) {
    return InvalidArgumentError("P-256 coordinates must be 32 bytes each");
  }
  std::string point;  // SEC 1 uncompressed form: 0x04 || x || y
  point.reserve(1 + 2 * kP256CoordinateBytes);
  point.push_back('\x04');
  point.append(x);
  point.append(y);
  std::unique_ptr<OSSL_PARAM_BLD, ParamBuildFree> builder(OSSL_PARAM_BLD_new());
  if (!builder ||
      OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1) {
    return InternalError("OSSL_PARAM_BLD failed");
  }
  std::shared_ptr<EVP_PKEY> pkey = PublicKeyFromParams("EC", builder.get());
  if (!pkey) return InvalidArgumentError("the point is not on the P-256 curve");
  // fromdata already decodes the point onto the curve; the public check also rules
  // out the point at infinity and points outside the prime-order subgroup.
  UniquePkeyCtx check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) return InvalidArgumentError("the EC public key is invalid");
  return VerificationKey(std::move(kid), SignatureAlgorithm::kES256, std::move(pkey), 256);
}

bool VerificationKey::Verify(std::string_view signing_input, std::string_view signature) const {
  std::string der;
  std::string_view to_check = signature;
  if (algorithm_ == SignatureAlgorithm::kES256) {
    if (!RawEcdsaToDer(signature, der)) return false;
    to_check = der;
  } else if (signature.size() != static_cast<size_t>(EVP_PKEY_get_size(pkey_.get()))) {
    return false;
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey_.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(to_check.data()), to_check.size(),
                          reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
}

StatusOr<Jwks> Jwks::Parse(std::string_view json, const JwksParseOptions& options) {
  if (json.size() > options.max_document_bytes) {
    return InvalidArgumentError("JWKS is larger than " + std::to_string(options.max_document_bytes) + " bytes");
  }
  rapidjson::Document doc;
  if (Status parsed = ParseJsonStrict(json, doc, 16); !parsed.ok()) {
    return InvalidArgumentError("JWKS is not valid JSON: " + parsed.message());
  }
  if (!doc.IsObject()) return InvalidArgumentError("JWKS is not a JSON object");
  const rapidjson::Value* keys = Member(doc, "keys");
  if (keys == nullptr || !keys->IsArray()) return InvalidArgumentError("JWKS has no \"keys\" array");
  if (keys->Size() > options.max_keys) {
    return InvalidArgumentError("JWKS has " + std::to_string(keys->Size()) + " keys; at most " +
                                std::to_string(options.max_keys) + " allowed");
  }
  Jwks jwks;
  for (rapidjson::SizeType i = 0; i < keys->Size(); ++i) {
    const rapidjson::Value& entry = (*keys)[i];
    SkippedKey skipped;
    skipped.index = i;
    if (!entry.IsObject()) {
      skipped.reason = "not a JSON object";
      jwks.skipped_.push_back(std::move(skipped));
      continue;
    }
    if (const rapidjson::Value* kid = Member(entry, "kid")) {
      if (!kid->IsString()) {
        skipped.reason = "\"kid\" is not a string";
        jwks.skipped_.push_back(std::move(skipped));
        continue;
      }
      skipped.kid.assign(kid->GetString(), kid->GetStringLength());
    }
    // Two keys with one kid would make the choice of key depend on order: skip the later.
    if (!skipped.kid.empty() && jwks.Find(skipped.kid) != nullptr) {
      skipped.reason = "duplicate kid";
      jwks.skipped_.push_back(std::move(skipped));
      continue;
    }
    StatusOr<VerificationKey> key = ParseKey(entry, skipped.kid, options);
    if (!key.ok()) {
      skipped.reason = key.status().message();
      jwks.skipped_.push_back(std::move(skipped));
      continue;
    }
    jwks.keys_.push_back(std::move(key).value());
  }
  if (jwks.keys_.empty()) {
    std::string reasons;
    for (const SkippedKey& s : jwks.skipped_) {
      reasons += reasons.empty() ? "" : "; ";
      reasons += "keys[" + std::to_string(s.index) + "]" + (s.kid.empty() ? "" : " (kid " + s.kid + ")") + ": " + s.reason;
    }
    return InvalidArgumentError("JWKS has no usable key" + (reasons.empty() ? std::string() : ": " + reasons));
  }
  return jwks;
}

StatusOr<Jwks> Jwks::FromKeys(std::vector<VerificationKey> keys) {
  if (keys.empty()) return InvalidArgumentError("JWKS has no usable key");
  Jwks jwks;
  jwks.keys_ = std::move(keys);
  return jwks;
}

const VerificationKey* Jwks::Find(std::string_view kid) const {
  if (kid.empty()) return nullptr;
  // A handful of keys: a linear scan beats a map here.
  for (const VerificationKey& key : keys_) {
    if (key.kid() == kid) return &key;
  }
  return nullptr;
}

const VerificationKey* Jwks::FindOnly(SignatureAlgorithm alg) const {
  const VerificationKey* found = nullptr;
  for (const VerificationKey& key : keys_) {
    if (key.algorithm() != alg) continue;
    if (found != nullptr) return nullptr;
    found = &key;
  }
  return found;
}

std::vector<std::string> Jwks::Kids() const {
  std::vector<std::string> kids;
  for (const VerificationKey& key : keys_) kids.push_back(key.kid());
  std::sort(kids.begin(), kids.end());
  return kids;
}

}  // namespace podidentity
