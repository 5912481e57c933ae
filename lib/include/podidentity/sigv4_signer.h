// AWS Signature Version 4 (header signing) as pure steps: canonical request, string to
// sign, signing key, signature, Authorization header. Each step is a free function so
// tests can check them one by one against the official aws-sig-v4-test-suite; Sign()
// chains them for an HttpRequest. No clock inside: the signing time is a parameter.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "podidentity/aws_types.h"
#include "podidentity/http_client.h"
#include "podidentity/status.h"

namespace podidentity::sigv4 {

inline constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
// SHA-256 of the empty string (the payload hash of a body-less request).
inline constexpr std::string_view kEmptyPayloadSha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// Raw (binary) HMAC-SHA256 of `data` under `key`.
std::string HmacSha256(std::string_view key, std::string_view data);
std::string HexEncode(std::string_view bytes);

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters (A-Z a-z 0-9
// - . _ ~) stay, every other byte becomes %XY (upper-case hex). '/' stays only when
// `keep_slash` (paths). Also the encoding of the Query protocol's form bodies.
std::string UriEncode(std::string_view value, bool keep_slash = false);
// Decodes %XY escapes; malformed escapes are kept as they are. '+' is not a space.
std::string PercentDecode(std::string_view value);

// Removes "." and ".." segments and empty segments (duplicate slashes), keeping a
// trailing slash; the result always starts with '/'. What every AWS service except S3
// expects before encoding.
std::string NormalizePath(std::string_view path);
// The canonical URI: the (optionally normalized) path with each byte outside the
// unreserved set percent-encoded. The path is taken as it appears in the request URL,
// so an already-encoded "%20" is encoded again to "%2520", as AWS does for non-S3.
std::string CanonicalUri(std::string_view path, bool normalize = true);
// The canonical query string: parameters split on '&', each name and value decoded and
// re-encoded with UriEncode, sorted by encoded name then value, "name=value" joined by '&'.
std::string CanonicalQueryString(std::string_view query);

struct CanonicalHeaders {
  std::string block;           // "name:value\n" lines, sorted by lower-case name
  std::string signed_headers;  // "name1;name2"
};
// Lower-cases names, trims values and collapses runs of spaces/tabs to one space, joins
// repeated names' values with ',' in order of appearance, and sorts by name. Every
// header given is signed: the caller chooses which headers to pass.
CanonicalHeaders CanonicalizeHeaders(const HttpHeaders& headers);

// The canonical request: method, canonical URI, canonical query, header block, blank
// line, signed headers, payload hash, separated by '\n'.
std::string CanonicalRequest(std::string_view method, std::string_view path, std::string_view query,
                             const HttpHeaders& headers, std::string_view payload_hash, bool normalize_path = true);

// "20150830T123600Z" and "20150830" for `time` (UTC).
std::string AmzDate(std::chrono::system_clock::time_point time);
std::string DateStamp(std::chrono::system_clock::time_point time);
// "20150830/us-east-1/service/aws4_request".
std::string CredentialScope(std::string_view date_stamp, std::string_view region, std::string_view service);

std::string StringToSign(std::string_view amz_date, std::string_view credential_scope,
                         std::string_view canonical_request);
// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"), raw bytes.
std::string SigningKey(std::string_view secret_access_key, std::string_view date_stamp, std::string_view region,
                       std::string_view service);
// Lower-case hex HMAC-SHA256 of the string to sign under the signing key.
std::string Signature(std::string_view signing_key, std::string_view string_to_sign);
std::string AuthorizationHeader(std::string_view access_key_id, std::string_view credential_scope,
                                std::string_view signed_headers, std::string_view signature);

struct SignOptions {
  // Adds and signs x-amz-content-sha256 (S3 wants it; STS and EKS Auth do not).
  bool add_content_sha256 = false;
  // Path normalization: on for every service but S3.
  bool normalize_path = true;
};

// The intermediate values of one Sign() call, for tests and debugging. Holds no secret.
struct SigningTrace {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;
};

// Signs `request` in place: sets X-Amz-Date (replacing any), Host (from the URL unless
// the request already has one: "host" or "host:port" for a non-default port, IPv6
// literals in brackets), X-Amz-Security-Token when the credentials have a session token,
// optionally x-amz-content-sha256, then Authorization. Every header of the request is
// signed except Authorization, User-Agent, Expect and X-Amzn-Trace-Id (which proxies
// and transports may change). Fails with kInvalidArgument on an unparsable URL or
// empty credentials; the message never contains a credential.
Status Sign(HttpRequest& request, const AwsCredentials& credentials, std::string_view region,
            std::string_view service, std::chrono::system_clock::time_point time, const SignOptions& options = {},
            SigningTrace* trace = nullptr);

}  // namespace podidentity::sigv4
