#include "podidentity/jwt_verifier.h"

#include <openssl/evp.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <cmath>

#include "podidentity/base64.h"
#include "podidentity/json_util.h"

namespace podidentity {
namespace {

using TimePoint = std::chrono::system_clock::time_point;

constexpr std::string_view kSubjectPrefix = "system:serviceaccount:";
constexpr std::string_view kPodNameExtra = "authentication.kubernetes.io/pod-name";
constexpr std::string_view kPodUidExtra = "authentication.kubernetes.io/pod-uid";
constexpr std::string_view kNodeNameExtra = "authentication.kubernetes.io/node-name";
// NumericDates beyond this (year 5138) are nonsense and would overflow time_point maths.
constexpr double kMaxNumericDate = 1e11;
constexpr int kMaxJsonDepth = 16;

TokenVerifyError Fail(TokenError reason, std::string message) { return TokenVerifyError{reason, std::move(message)}; }

// Claim values in messages are attacker-chosen: quote them and cap their length.
std::string Shown(std::string_view value) {
  constexpr size_t kMax = 80;
  if (value.size() > kMax) return JsonQuote(value.substr(0, kMax)) + "...";
  return JsonQuote(value);
}

const rapidjson::Value* Member(const rapidjson::Value& object, std::string_view name) {
  const auto it = object.FindMember(rapidjson::Value(rapidjson::StringRef(name.data(), name.size())));
  return it == object.MemberEnd() ? nullptr : &it->value;
}

std::string_view View(const rapidjson::Value& v) { return std::string_view(v.GetString(), v.GetStringLength()); }

// A string member; nullopt when absent or not a string (`*wrong_type` tells which).
std::optional<std::string_view> StringMember(const rapidjson::Value& object, std::string_view name,
                                             bool* wrong_type = nullptr) {
  const rapidjson::Value* v = Member(object, name);
  if (wrong_type != nullptr) *wrong_type = v != nullptr && !v->IsString();
  if (v == nullptr || !v->IsString()) return std::nullopt;
  return View(*v);
}

enum class DateParse { kAbsent, kOk, kInvalid };
DateParse NumericDate(const rapidjson::Value& payload, std::string_view name, double* out) {
  const rapidjson::Value* v = Member(payload, name);
  if (v == nullptr) return DateParse::kAbsent;
  if (!v->IsNumber()) return DateParse::kInvalid;
  const double d = v->GetDouble();
  if (!std::isfinite(d) || d < 0 || d >= kMaxNumericDate) return DateParse::kInvalid;
  *out = d;
  return DateParse::kOk;
}

// "system:serviceaccount:<ns>:<sa>" -> (ns, sa); false for anything else.
bool SplitSubject(std::string_view subject, std::string_view* ns, std::string_view* sa) {
  if (subject.substr(0, kSubjectPrefix.size()) != kSubjectPrefix) return false;
  const std::string_view rest = subject.substr(kSubjectPrefix.size());
  const size_t colon = rest.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) return false;
  if (rest.find(':', colon + 1) != std::string_view::npos) return false;
  *ns = rest.substr(0, colon);
  *sa = rest.substr(colon + 1);
  return true;
}

TimePoint FromNumericDate(double seconds) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(
      std::chrono::seconds(static_cast<int64_t>(std::floor(seconds)))));
}

double ToSeconds(TimePoint t) { return std::chrono::duration<double>(t.time_since_epoch()).count(); }

std::string Sha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) != 1) return std::string();
  return std::string(reinterpret_cast<const char*>(digest), length);
}

// The first string of user.extra[name] (TokenReview extras are string arrays).
std::optional<std::string_view> FirstExtra(const rapidjson::Value* extra, std::string_view name) {
  if (extra == nullptr || !extra->IsObject()) return std::nullopt;
  const rapidjson::Value* values = Member(*extra, name);
  if (values == nullptr || !values->IsArray() || values->Empty() || !(*values)[0].IsString()) return std::nullopt;
  const std::string_view value = View((*values)[0]);
  if (value.empty()) return std::nullopt;
  return value;
}

// The token's exp without verifying it, for a token the API server has just accepted.
std::optional<TimePoint> UnverifiedExpiration(std::string_view token) {
  const size_t first = token.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  const size_t second = token.find('.', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  StatusOr<std::string> payload = base64::DecodeUrl(token.substr(first + 1, second - first - 1));
  if (!payload.ok()) return std::nullopt;
  rapidjson::Document doc;
  if (!ParseJsonStrict(*payload, doc, kMaxJsonDepth).ok() || !doc.IsObject()) return std::nullopt;
  double exp = 0;
  if (NumericDate(doc, "exp", &exp) != DateParse::kOk) return std::nullopt;
  return FromNumericDate(exp);
}

}  // namespace

std::string_view TokenErrorName(TokenError error) {
  switch (error) {
    case TokenError::kTooLarge: return "token_too_large";
    case TokenError::kMalformed: return "token_malformed";
    case TokenError::kAlgorithmNotAllowed: return "algorithm_not_allowed";
    case TokenError::kUnknownKeyId: return "unknown_key_id";
    case TokenError::kBadSignature: return "bad_signature";
    case TokenError::kWrongIssuer: return "wrong_issuer";
    case TokenError::kWrongAudience: return "wrong_audience";
    case TokenError::kExpired: return "token_expired";
    case TokenError::kNotYetValid: return "token_not_yet_valid";
    case TokenError::kIssuedInFuture: return "token_issued_in_future";
    case TokenError::kMissingClaim: return "missing_claim";
    case TokenError::kSubjectMismatch: return "subject_mismatch";
    case TokenError::kMissingPodClaim: return "missing_pod_claim";
    case TokenError::kReviewRejected: return "token_review_rejected";
    case TokenError::kKeysUnavailable: return "keys_unavailable";
    case TokenError::kReviewUnavailable: return "token_review_unavailable";
  }
  return "unknown";
}

bool IsClientTokenError(TokenError error) {
  return error != TokenError::kKeysUnavailable && error != TokenError::kReviewUnavailable;
}

Status TokenVerifyError::ToStatus() const {
  if (!IsClientTokenError(reason)) return UnavailableError(message);
  if (reason == TokenError::kTooLarge || reason == TokenError::kMalformed) return InvalidArgumentError(message);
  return UnauthenticatedError(message);
}

// ---------------------------------------------------------------------------------------
// Claims

TokenVerifyResult CheckServiceAccountClaims(std::string_view payload_json, const JwtVerifierOptions& options,
                                            TimePoint now) {
  rapidjson::Document payload;
  if (Status parsed = ParseJsonStrict(payload_json, payload, kMaxJsonDepth); !parsed.ok()) {
    return Fail(TokenError::kMalformed, "token payload is not valid JSON: " + parsed.message());
  }
  if (!payload.IsObject()) return Fail(TokenError::kMalformed, "token payload is not a JSON object");

  bool wrong_type = false;
  const std::optional<std::string_view> issuer = StringMember(payload, "iss", &wrong_type);
  if (wrong_type) return Fail(TokenError::kMalformed, "iss is not a string");
  if (!issuer) return Fail(TokenError::kWrongIssuer, "token has no iss claim");
  if (*issuer != options.issuer) {
    return Fail(TokenError::kWrongIssuer, "iss " + Shown(*issuer) + " is not the configured issuer");
  }

  const rapidjson::Value* aud = Member(payload, "aud");
  if (aud == nullptr) return Fail(TokenError::kWrongAudience, "token has no aud claim");
  bool audience_found = false;
  if (aud->IsString()) {
    audience_found = View(*aud) == options.audience;
  } else if (aud->IsArray()) {
    for (const rapidjson::Value& item : aud->GetArray()) {
      if (!item.IsString()) return Fail(TokenError::kMalformed, "aud holds a non-string");
      audience_found = audience_found || View(item) == options.audience;
    }
  } else {
    return Fail(TokenError::kMalformed, "aud is neither a string nor an array");
  }
  if (!audience_found) {
    return Fail(TokenError::kWrongAudience, "aud does not contain " + Shown(options.audience));
  }

  const double now_seconds = ToSeconds(now);
  const double leeway = static_cast<double>(options.leeway.count());
  double exp = 0, nbf = 0, iat = 0;
  switch (NumericDate(payload, "exp", &exp)) {
    case DateParse::kAbsent: return Fail(TokenError::kMissingClaim, "token has no exp claim");
    case DateParse::kInvalid: return Fail(TokenError::kMalformed, "exp is not a valid NumericDate");
    case DateParse::kOk: break;
  }
  if (now_seconds >= exp + leeway) return Fail(TokenError::kExpired, "token expired");
  switch (NumericDate(payload, "nbf", &nbf)) {
    case DateParse::kInvalid: return Fail(TokenError::kMalformed, "nbf is not a valid NumericDate");
    case DateParse::kOk:
      if (now_seconds + leeway < nbf) return Fail(TokenError::kNotYetValid, "token is not valid yet (nbf)");
      break;
    case DateParse::kAbsent: break;
  }
  switch (NumericDate(payload, "iat", &iat)) {
    case DateParse::kInvalid: return Fail(TokenError::kMalformed, "iat is not a valid NumericDate");
    case DateParse::kOk:
      if (now_seconds + leeway < iat) return Fail(TokenError::kIssuedInFuture, "token is issued in the future (iat)");
      break;
    case DateParse::kAbsent: break;
  }

  const std::optional<std::string_view> subject = StringMember(payload, "sub", &wrong_type);
  if (wrong_type) return Fail(TokenError::kMalformed, "sub is not a string");
  if (!subject) return Fail(TokenError::kMissingClaim, "token has no sub claim");
  std::string_view ns, sa;
  if (!SplitSubject(*subject, &ns, &sa)) {
    return Fail(TokenError::kSubjectMismatch, "sub " + Shown(*subject) + " is not system:serviceaccount:<ns>:<sa>");
  }
  const rapidjson::Value* kube = Member(payload, "kubernetes.io");
  if (kube == nullptr) return Fail(TokenError::kMissingClaim, "token has no kubernetes.io claim");
  if (!kube->IsObject()) return Fail(TokenError::kMalformed, "kubernetes.io is not an object");
  const std::optional<std::string_view> claim_ns = StringMember(*kube, "namespace");
  if (!claim_ns) return Fail(TokenError::kMissingClaim, "token has no kubernetes.io.namespace");
  const rapidjson::Value* service_account = Member(*kube, "serviceaccount");
  if (service_account == nullptr || !service_account->IsObject()) {
    return Fail(TokenError::kMissingClaim, "token has no kubernetes.io.serviceaccount");
  }
  const std::optional<std::string_view> claim_sa = StringMember(*service_account, "name");
  if (!claim_sa) return Fail(TokenError::kMissingClaim, "token has no kubernetes.io.serviceaccount.name");
  if (*claim_ns != ns || *claim_sa != sa) {
    return Fail(TokenError::kSubjectMismatch, "sub " + Shown(*subject) + " disagrees with kubernetes.io (namespace " +
                                                  Shown(*claim_ns) + ", service account " + Shown(*claim_sa) + ")");
  }

  const rapidjson::Value* pod = Member(*kube, "pod");
  if (pod == nullptr || !pod->IsObject()) {
    return Fail(TokenError::kMissingPodClaim, "token is not bound to a pod (no kubernetes.io.pod)");
  }
  const std::optional<std::string_view> pod_name = StringMember(*pod, "name");
  const std::optional<std::string_view> pod_uid = StringMember(*pod, "uid");
  if (!pod_name || pod_name->empty() || !pod_uid || pod_uid->empty()) {
    return Fail(TokenError::kMissingPodClaim, "kubernetes.io.pod lacks a name or uid");
  }

  VerifiedIdentity identity;
  identity.namespace_name = std::string(ns);
  identity.service_account = std::string(sa);
  identity.pod_name = std::string(*pod_name);
  identity.pod_uid = std::string(*pod_uid);
  identity.service_account_uid = std::string(StringMember(*service_account, "uid").value_or(""));
  if (const rapidjson::Value* node = Member(*kube, "node"); node != nullptr && node->IsObject()) {
    identity.node_name = std::string(StringMember(*node, "name").value_or(""));
  }
  identity.expiration = FromNumericDate(exp);
  return identity;
}

// ---------------------------------------------------------------------------------------
// JwtVerifier

JwtVerifier::JwtVerifier(JwksSource& keys, const Clock& clock, JwtVerifierOptions options)
    : keys_(keys), clock_(clock), options_(std::move(options)) {}

TokenVerifyResult JwtVerifier::Verify(std::string_view token) {
  bool from_cache = false;
  TokenVerifyResult result = VerifyWithCache(token, &from_cache);
  if (options_.on_success && std::holds_alternative<VerifiedIdentity>(result)) options_.on_success(from_cache);
  return result;
}

std::optional<TokenVerifyResult> JwtVerifier::VerifyIfCached(std::string_view token) {
  if (!CacheApplies(token)) return std::nullopt;
  const std::string digest = Sha256(token);
  if (digest.empty()) return std::nullopt;
  std::optional<VerifiedIdentity> identity = FindCached(digest);
  if (!identity) return std::nullopt;
  if (options_.on_success) options_.on_success(/*from_cache=*/true);
  return TokenVerifyResult(std::move(*identity));
}

bool JwtVerifier::CacheApplies(std::string_view token) const {
  return options_.verified_cache_entries != 0 && token.size() <= options_.max_token_bytes;
}

std::optional<VerifiedIdentity> JwtVerifier::FindCached(const std::string& digest) {
  std::optional<CachedToken> cached;
  {
    const TimePoint now = clock_.Now();
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = cache_.find(digest); it != cache_.end()) {
      if (now < it->second.valid_until) {
        cached = it->second;
      } else {
        cache_.erase(it);
      }
    }
  }
  // The key set is consulted only for a cached token (a token that never verified is
  // still rejected by its header before any key lookup).
  if (!cached || keys_.Current() != cached->jwks) return std::nullopt;
  cache_hits_.fetch_add(1, std::memory_order_relaxed);
  return std::move(cached->identity);
}

TokenVerifyResult JwtVerifier::VerifyWithCache(std::string_view token, bool* from_cache) {
  if (!CacheApplies(token)) return VerifyUncached(token, nullptr);
  std::string digest = Sha256(token);
  if (digest.empty()) return VerifyUncached(token, nullptr);
  if (std::optional<VerifiedIdentity> identity = FindCached(digest)) {
    *from_cache = true;
    return std::move(*identity);
  }
  std::shared_ptr<const Jwks> verified_with;
  TokenVerifyResult result = VerifyUncached(token, &verified_with);
  if (const auto* identity = std::get_if<VerifiedIdentity>(&result); identity != nullptr && verified_with != nullptr) {
    Remember(std::move(digest), *identity, std::move(verified_with));
  }
  return result;
}

void JwtVerifier::Remember(std::string digest, const VerifiedIdentity& identity, std::shared_ptr<const Jwks> jwks) {
  const TimePoint now = clock_.Now();
  const TimePoint valid_until = std::min(now + options_.verified_cache_ttl, identity.expiration + options_.leeway);
  if (valid_until <= now) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (cache_.size() >= options_.verified_cache_entries) {
    // Full: drop what no longer holds; if everything still holds, drop an arbitrary entry
    // (its pod pays one full verification on its next call).
    const std::shared_ptr<const Jwks> current = keys_.Current();
    std::erase_if(cache_, [&](const auto& entry) { return entry.second.jwks != current || now >= entry.second.valid_until; });
    if (cache_.size() >= options_.verified_cache_entries) cache_.erase(cache_.begin());
  }
  cache_.insert_or_assign(std::move(digest), CachedToken{identity, std::move(jwks), valid_until});
}

size_t JwtVerifier::cache_size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_.size();
}

TokenVerifyResult JwtVerifier::VerifyUncached(std::string_view token, std::shared_ptr<const Jwks>* verified_with) {
  if (token.size() > options_.max_token_bytes) {
    return Fail(TokenError::kTooLarge, "token is larger than " + std::to_string(options_.max_token_bytes) + " bytes");
  }
  const size_t first = token.find('.');
  const size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return Fail(TokenError::kMalformed, "token is not a compact JWS (three dot-separated parts)");
  }
  const std::string_view header_part = token.substr(0, first);
  const std::string_view payload_part = token.substr(first + 1, second - first - 1);
  const std::string_view signature_part = token.substr(second + 1);
  const std::string_view signing_input = token.substr(0, second);

  StatusOr<std::string> header_json = base64::DecodeUrl(header_part);
  if (!header_json.ok()) return Fail(TokenError::kMalformed, "token header: " + header_json.status().message());
  rapidjson::Document header;
  if (Status parsed = ParseJsonStrict(*header_json, header, 4); !parsed.ok()) {
    return Fail(TokenError::kMalformed, "token header is not valid JSON: " + parsed.message());
  }
  if (!header.IsObject()) return Fail(TokenError::kMalformed, "token header is not a JSON object");
  bool wrong_type = false;
  const std::optional<std::string_view> alg_name = StringMember(header, "alg", &wrong_type);
  if (!alg_name) return Fail(TokenError::kMalformed, "token header has no alg string");
  const std::optional<SignatureAlgorithm> alg = ParseSignatureAlgorithm(*alg_name);
  if (!alg) {
    return Fail(TokenError::kAlgorithmNotAllowed, "alg " + Shown(*alg_name) + " is not allowed (RS256 or ES256 only)");
  }
  // "crit" lists extensions the verifier must understand (RFC 7515 4.1.11); we know none.
  if (Member(header, "crit") != nullptr) return Fail(TokenError::kMalformed, "token header has crit extensions");
  const std::optional<std::string_view> kid = StringMember(header, "kid", &wrong_type);
  if (wrong_type) return Fail(TokenError::kMalformed, "kid is not a string");

  StatusOr<std::string> signature = base64::DecodeUrl(signature_part);
  if (!signature.ok()) return Fail(TokenError::kMalformed, "token signature: " + signature.status().message());
  if (signature->empty()) return Fail(TokenError::kBadSignature, "token has no signature");
  // Decoded (not parsed) before the signature check so that bad base64 anywhere is
  // kMalformed; the JSON is only parsed once the signature holds.
  StatusOr<std::string> payload = base64::DecodeUrl(payload_part);
  if (!payload.ok()) return Fail(TokenError::kMalformed, "token payload: " + payload.status().message());

  std::shared_ptr<const Jwks> jwks = keys_.Current();
  if (jwks == nullptr) {
    // Started before the first successful load: try now (rate limited like a new kid).
    (void)keys_.RefreshForUnknownKid();
    jwks = keys_.Current();
    if (jwks == nullptr) return Fail(TokenError::kKeysUnavailable, "no signing keys loaded yet");
  }
  const VerificationKey* key = kid ? jwks->Find(*kid) : jwks->FindOnly(*alg);
  if (key == nullptr && kid && !kid->empty()) {
    // Maybe the API server rotated its keys: one (rate-limited) refresh, one retry.
    (void)keys_.RefreshForUnknownKid();
    jwks = keys_.Current();
    key = jwks->Find(*kid);
  }
  if (key == nullptr) {
    return Fail(TokenError::kUnknownKeyId, kid ? "no signing key with kid " + Shown(*kid)
                                                : "token has no kid and no single " +
                                                      std::string(SignatureAlgorithmName(*alg)) + " key exists");
  }
  if (key->algorithm() != *alg) {
    return Fail(TokenError::kBadSignature, "key " + Shown(key->kid()) + " is not an " +
                                               std::string(SignatureAlgorithmName(*alg)) + " key");
  }
  if (!key->Verify(signing_input, *signature)) return Fail(TokenError::kBadSignature, "token signature is invalid");

  if (verified_with != nullptr) *verified_with = jwks;
  return CheckServiceAccountClaims(*payload, options_, clock_.Now());
}

// ---------------------------------------------------------------------------------------
// TokenReview

std::string BuildTokenReviewRequest(std::string_view token, std::string_view audience) {
  std::string body = R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":)";
  AppendJsonString(body, token);
  body += R"(,"audiences":[)";
  AppendJsonString(body, audience);
  body += "]}}";
  return body;
}

TokenVerifyResult ParseTokenReviewResponse(std::string_view json, std::string_view audience) {
  rapidjson::Document doc;
  if (Status parsed = ParseJsonStrict(json, doc, kMaxJsonDepth); !parsed.ok()) {
    return Fail(TokenError::kReviewUnavailable, "TokenReview answer is not valid JSON: " + parsed.message());
  }
  const rapidjson::Value* status = doc.IsObject() ? Member(doc, "status") : nullptr;
  if (status == nullptr || !status->IsObject()) return Fail(TokenError::kReviewUnavailable, "TokenReview answer has no status");
  const rapidjson::Value* authenticated = Member(*status, "authenticated");
  if (authenticated == nullptr || !authenticated->IsBool() || !authenticated->GetBool()) {
    const std::optional<std::string_view> error = StringMember(*status, "error");
    return Fail(TokenError::kReviewRejected,
                "the API server did not authenticate the token" + (error ? ": " + Shown(*error) : std::string()));
  }
  // An empty status.audiences means the token is for the API server itself, not us.
  bool audience_found = false;
  if (const rapidjson::Value* audiences = Member(*status, "audiences"); audiences != nullptr && audiences->IsArray()) {
    for (const rapidjson::Value& item : audiences->GetArray()) {
      audience_found = audience_found || (item.IsString() && View(item) == audience);
    }
  }
  if (!audience_found) return Fail(TokenError::kWrongAudience, "TokenReview: the token is not for " + Shown(audience));
  const rapidjson::Value* user = Member(*status, "user");
  if (user == nullptr || !user->IsObject()) return Fail(TokenError::kReviewRejected, "TokenReview answer has no user");
  const std::optional<std::string_view> username = StringMember(*user, "username");
  std::string_view ns, sa;
  if (!username || !SplitSubject(*username, &ns, &sa)) {
    return Fail(TokenError::kSubjectMismatch, "TokenReview user is not a service account");
  }
  const rapidjson::Value* extra = Member(*user, "extra");
  const std::optional<std::string_view> pod_name = FirstExtra(extra, kPodNameExtra);
  const std::optional<std::string_view> pod_uid = FirstExtra(extra, kPodUidExtra);
  if (!pod_name || !pod_uid) return Fail(TokenError::kMissingPodClaim, "token is not bound to a pod");
  VerifiedIdentity identity;
  identity.namespace_name = std::string(ns);
  identity.service_account = std::string(sa);
  identity.pod_name = std::string(*pod_name);
  identity.pod_uid = std::string(*pod_uid);
  identity.service_account_uid = std::string(StringMember(*user, "uid").value_or(""));
  identity.node_name = std::string(FirstExtra(extra, kNodeNameExtra).value_or(""));
  return identity;
}

TokenReviewVerifier::TokenReviewVerifier(HttpClient& http, const Clock& clock, TokenReviewVerifierOptions options)
    : http_(http), clock_(clock), options_(std::move(options)) {}

size_t TokenReviewVerifier::cache_size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_.size();
}

TokenVerifyResult TokenReviewVerifier::Verify(std::string_view token) {
  if (token.size() > options_.max_token_bytes) {
    return Fail(TokenError::kTooLarge, "token is larger than " + std::to_string(options_.max_token_bytes) + " bytes");
  }
  if (token.empty()) return Fail(TokenError::kMalformed, "token is empty");
  const std::string cache_key = Sha256(token);
  if (cache_key.empty()) return Fail(TokenError::kReviewUnavailable, "SHA-256 failed");
  const TimePoint now = clock_.Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = cache_.find(cache_key); it != cache_.end()) {
      if (now < it->second.valid_until) return it->second.identity;
      cache_.erase(it);
    }
  }

  HttpRequest request;
  request.method = "POST";
  request.url = options_.url;
  request.timeout = options_.timeout;
  request.headers.emplace_back("Content-Type", "application/json");
  request.headers.emplace_back("Accept", "application/json");
  if (!options_.bearer_token_file.empty()) {
    StatusOr<std::string> bearer = ReadBearerTokenFile(options_.bearer_token_file);
    if (!bearer.ok()) return Fail(TokenError::kReviewUnavailable, "TokenReview: " + bearer.status().message());
    request.headers.emplace_back("Authorization", "Bearer " + *bearer);
  }
  request.body = BuildTokenReviewRequest(token, options_.audience);
  StatusOr<HttpResponse> response = http_.Send(request);
  if (!response.ok()) return Fail(TokenError::kReviewUnavailable, "TokenReview: " + response.status().message());
  // The API server answers a create with 201; 200 is accepted too.
  if (response->status != 200 && response->status != 201) {
    return Fail(TokenError::kReviewUnavailable, "TokenReview: HTTP " + std::to_string(response->status));
  }
  TokenVerifyResult result = ParseTokenReviewResponse(response->body, options_.audience);
  auto* identity = std::get_if<VerifiedIdentity>(&result);
  if (identity == nullptr) return result;

  // The API server checked exp; we read it only to bound the cache entry.
  TimePoint valid_until = now + options_.cache_ttl;
  if (const std::optional<TimePoint> exp = UnverifiedExpiration(token)) {
    identity->expiration = *exp;
    valid_until = std::min(valid_until, *exp);
  } else {
    identity->expiration = valid_until;
  }
  if (options_.cache_ttl.count() > 0 && options_.max_cache_entries > 0 && now < valid_until) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.size() >= options_.max_cache_entries) {
      std::erase_if(cache_, [now](const auto& item) { return item.second.valid_until <= now; });
    }
    // Still full: drop an arbitrary entry (keys are hashes, so effectively a random one).
    if (cache_.size() >= options_.max_cache_entries) cache_.erase(cache_.begin());
    cache_[cache_key] = Entry{*identity, valid_until};
  }
  return result;
}

}  // namespace podidentity
