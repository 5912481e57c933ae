#include "podidentity/sigv4_signer.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <utility>
#include <vector>

namespace podidentity::sigv4 {
namespace {

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Trims and collapses every run of whitespace to one space ("Trimall" in the SigV4 docs;
// folded header lines become spaces too).
std::string TrimAll(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  bool pending_space = false;
  for (char c : value) {
    if (IsSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

std::tm UtcTm(std::chrono::system_clock::time_point time) {
  const std::time_t t = std::chrono::system_clock::to_time_t(time);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return tm;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ToLower(a) == ToLower(b);
}

void SetHeader(HttpHeaders& headers, std::string_view name, std::string value) {
  std::erase_if(headers, [&](const auto& h) { return EqualsIgnoreCase(h.first, name); });
  headers.emplace_back(std::string(name), std::move(value));
}

bool HasHeader(const HttpHeaders& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return EqualsIgnoreCase(h.first, name); });
}

// Headers a transport or proxy may add or rewrite after signing: never signed.
bool IsUnsignable(std::string_view lower_name) {
  return lower_name == "authorization" || lower_name == "user-agent" || lower_name == "expect" ||
         lower_name == "x-amzn-trace-id";
}

}  // namespace

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest), length));
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), mac, &length);
  return std::string(reinterpret_cast<const char*>(mac), length);
}

std::string UriEncode(std::string_view value, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size() * 3);
  for (unsigned char c : value) {
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 0xf]);
    }
  }
  return out;
}

std::string PercentDecode(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '%' && i + 2 < value.size()) {
      const int hi = HexValue(value[i + 1]);
      const int lo = HexValue(value[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(value[i]);
  }
  return out;
}

std::string NormalizePath(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    const std::string_view segment = path.substr(pos, next - pos);
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!segment.empty() && segment != ".") {
      segments.push_back(segment);
    }
    pos = next + 1;
  }
  // A trailing slash (or a trailing "." / ".." segment, which names a directory) is kept.
  const bool trailing_slash = !path.empty() && (path.back() == '/' || path.ends_with("/.") || path.ends_with("/..") ||
                                                path == "." || path == "..");
  std::string out = "/";
  for (size_t i = 0; i < segments.size(); ++i) {
    out.append(segments[i]);
    if (i + 1 < segments.size() || trailing_slash) out.push_back('/');
  }
  return out;
}

std::string CanonicalUri(std::string_view path, bool normalize) {
  if (path.empty()) return "/";
  return UriEncode(normalize ? NormalizePath(path) : std::string(path), /*keep_slash=*/true);
}

std::string CanonicalQueryString(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    size_t next = query.find('&', pos);
    if (next == std::string_view::npos) next = query.size();
    const std::string_view pair = query.substr(pos, next - pos);
    if (!pair.empty()) {
      const size_t eq = pair.find('=');
      const std::string_view name = pair.substr(0, eq);
      const std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      params.emplace_back(UriEncode(PercentDecode(name)), UriEncode(PercentDecode(value)));
    }
    pos = next + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out.push_back('&');
    out.append(name).append("=").append(value);
  }
  return out;
}

CanonicalHeaders CanonicalizeHeaders(const HttpHeaders& headers) {
  // std::map keeps names sorted; values of a repeated name join in arrival order.
  std::map<std::string, std::string> merged;
  for (const auto& [name, value] : headers) {
    const std::string lower = ToLower(TrimAll(name));
    auto [it, inserted] = merged.try_emplace(lower, TrimAll(value));
    if (!inserted) it->second.append(",").append(TrimAll(value));
  }
  CanonicalHeaders out;
  for (const auto& [name, value] : merged) {
    out.block.append(name).append(":").append(value).append("\n");
    if (!out.signed_headers.empty()) out.signed_headers.push_back(';');
    out.signed_headers.append(name);
  }
  return out;
}

std::string CanonicalRequest(std::string_view method, std::string_view path, std::string_view query,
                             const HttpHeaders& headers, std::string_view payload_hash, bool normalize_path) {
  const CanonicalHeaders canonical = CanonicalizeHeaders(headers);
  std::string out;
  out.append(method).append("\n");
  out.append(CanonicalUri(path, normalize_path)).append("\n");
  out.append(CanonicalQueryString(query)).append("\n");
  out.append(canonical.block).append("\n");
  out.append(canonical.signed_headers).append("\n");
  out.append(payload_hash);
  return out;
}

std::string AmzDate(std::chrono::system_clock::time_point time) {
  const std::tm tm = UtcTm(time);
  // Sized for any int fields, so the compiler can prove nothing is truncated.
  char buf[80];
  std::snprintf(buf, sizeof(buf), "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string DateStamp(std::chrono::system_clock::time_point time) { return AmzDate(time).substr(0, 8); }

std::string CredentialScope(std::string_view date_stamp, std::string_view region, std::string_view service) {
  std::string out;
  out.append(date_stamp).append("/").append(region).append("/").append(service).append("/aws4_request");
  return out;
}

std::string StringToSign(std::string_view amz_date, std::string_view credential_scope,
                         std::string_view canonical_request) {
  std::string out;
  out.append(kAlgorithm).append("\n");
  out.append(amz_date).append("\n");
  out.append(credential_scope).append("\n");
  out.append(Sha256Hex(canonical_request));
  return out;
}

std::string SigningKey(std::string_view secret_access_key, std::string_view date_stamp, std::string_view region,
                       std::string_view service) {
  std::string key = "AWS4";
  key.append(secret_access_key);
  std::string k_date = HmacSha256(key, date_stamp);
  // Scrub the copy of the secret before it goes out of scope.
  std::fill(key.begin(), key.end(), '\0');
  const std::string k_region = HmacSha256(k_date, region);
  const std::string k_service = HmacSha256(k_region, service);
  return HmacSha256(k_service, "aws4_request");
}

std::string Signature(std::string_view signing_key, std::string_view string_to_sign) {
  return HexEncode(HmacSha256(signing_key, string_to_sign));
}

std::string AuthorizationHeader(std::string_view access_key_id, std::string_view credential_scope,
                                std::string_view signed_headers, std::string_view signature) {
  std::string out(kAlgorithm);
  out.append(" Credential=").append(access_key_id).append("/").append(credential_scope);
  out.append(", SignedHeaders=").append(signed_headers);
  out.append(", Signature=").append(signature);
  return out;
}

Status Sign(HttpRequest& request, const AwsCredentials& credentials, std::string_view region,
            std::string_view service, std::chrono::system_clock::time_point time, const SignOptions& options,
            SigningTrace* trace) {
  if (credentials.empty()) return InvalidArgumentError("cannot sign: no access key id or secret access key");
  if (region.empty() || service.empty()) return InvalidArgumentError("cannot sign: empty region or service");
  StatusOr<ParsedUrl> url = ParseUrl(request.url);
  if (!url.ok()) return InvalidArgumentError("cannot sign: " + url.status().message());

  const std::string amz_date = AmzDate(time);
  const std::string date_stamp = DateStamp(time);

  if (!HasHeader(request.headers, "host")) {
    std::string host = url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host;
    const bool default_port = (url->scheme == "https" && url->port == 443) || (url->scheme == "http" && url->port == 80);
    if (!default_port) host.append(":").append(std::to_string(url->port));
    SetHeader(request.headers, "Host", std::move(host));
  }
  SetHeader(request.headers, "X-Amz-Date", amz_date);
  if (!credentials.session_token.empty()) {
    SetHeader(request.headers, "X-Amz-Security-Token", credentials.session_token);
  }
  const std::string payload_hash = Sha256Hex(request.body);
  if (options.add_content_sha256) SetHeader(request.headers, "x-amz-content-sha256", payload_hash);
  std::erase_if(request.headers, [](const auto& h) { return EqualsIgnoreCase(h.first, "authorization"); });

  HttpHeaders to_sign;
  for (const auto& header : request.headers) {
    if (!IsUnsignable(ToLower(header.first))) to_sign.push_back(header);
  }
  const std::string canonical_request =
      CanonicalRequest(request.method, url->path, url->query, to_sign, payload_hash, options.normalize_path);
  const std::string scope = CredentialScope(date_stamp, region, service);
  const std::string string_to_sign = StringToSign(amz_date, scope, canonical_request);
  std::string key = SigningKey(credentials.secret_access_key, date_stamp, region, service);
  const std::string signature = Signature(key, string_to_sign);
  std::fill(key.begin(), key.end(), '\0');

  request.headers.emplace_back(
      "Authorization",
      AuthorizationHeader(credentials.access_key_id, scope, CanonicalizeHeaders(to_sign).signed_headers, signature));
  if (trace != nullptr) {
    trace->canonical_request = canonical_request;
    trace->string_to_sign = string_to_sign;
    trace->signature = signature;
  }
  return Status::Ok();
}

}  // namespace podidentity::sigv4
