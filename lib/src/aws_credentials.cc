#include "podidentity/aws_credentials.h"

#include <pugixml.hpp>
#include <rapidjson/document.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <cstdio>
#include <iterator>
#include <utility>

#include "podidentity/json_util.h"

namespace podidentity {
namespace {

constexpr size_t kMaxCredentialsFileBytes = 1 << 20;
// STS accepts web identity tokens up to 20,000 characters; leave room for whitespace.
constexpr size_t kMaxWebIdentityTokenBytes = 64 * 1024;
constexpr std::string_view kDefaultImdsEndpoint = "http://169.254.169.254";
constexpr std::string_view kImdsTokenTtlSeconds = "21600";

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// The variable's value when it is set and not empty.
std::optional<std::string> NonEmpty(const EnvLookup& env, const std::string& name) {
  std::optional<std::string> value = env(name);
  if (value && value->empty()) return std::nullopt;
  return value;
}

Status WithPrefix(const Status& status, std::string_view prefix) {
  return Status(status.code(), std::string(prefix) + status.message());
}

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

// Reads a whole file of at most `max_bytes`. kNotFound when it does not exist.
StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    const int error = errno;
    if (error == ENOENT) return NotFoundError(path + " does not exist");
    return UnavailableError("cannot read " + path + ": " + std::strerror(error));
  }
  std::string content;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) {
    content.append(buffer, n);
    if (content.size() > max_bytes) {
      return ResourceExhaustedError(path + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  if (std::ferror(file.get()) != 0) return UnavailableError("cannot read " + path);
  return content;
}

bool ParseDigits(std::string_view text, size_t pos, size_t count, int& out) {
  if (pos + count > text.size()) return false;
  int value = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + (text[i] - '0');
  }
  out = value;
  return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool IsUnreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

// RFC 3986 percent-encoding of everything but unreserved characters, as AWS expects in
// form bodies.
void AppendFormParam(std::string& out, std::string_view name, std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  if (!out.empty()) out.push_back('&');
  auto encode = [&out](std::string_view s) {
    for (char c : s) {
      if (IsUnreserved(c)) {
        out.push_back(c);
      } else {
        const auto byte = static_cast<unsigned char>(c);
        out.push_back('%');
        out.push_back(kHex[byte >> 4]);
        out.push_back(kHex[byte & 0x0F]);
      }
    }
  };
  encode(name);
  out.push_back('=');
  encode(value);
}

// STS's RoleSessionName charset is [\w+=,.@-], 2-64 characters.
bool IsSessionNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '+' ||
         c == '=' || c == ',' || c == '.' || c == '@' || c == '-';
}

// Element name without a namespace prefix ("sts:Credentials" -> "Credentials").
std::string_view LocalName(const pugi::xml_node& node) {
  std::string_view name = node.name();
  const size_t colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

pugi::xml_node Child(const pugi::xml_node& parent, std::string_view name) {
  for (pugi::xml_node child = parent.first_child(); child; child = child.next_sibling()) {
    if (child.type() == pugi::node_element && LocalName(child) == name) return child;
  }
  return {};
}

std::string ChildText(const pugi::xml_node& parent, std::string_view name) {
  return std::string(Trim(Child(parent, name).text().as_string()));
}

// The account id of an ARN ("arn:aws:sts::111122223333:assumed-role/..."), or empty.
std::string AccountOfArn(std::string_view arn) {
  size_t start = 0;
  for (int field = 0; field < 4; ++field) {
    const size_t colon = arn.find(':', start);
    if (colon == std::string_view::npos) return {};
    start = colon + 1;
  }
  const size_t end = arn.find(':', start);
  if (end == std::string_view::npos) return {};
  return std::string(arn.substr(start, end - start));
}

StatusCode CodeForStsError(int http_status, std::string_view code) {
  if (code == "AccessDenied") return StatusCode::kPermissionDenied;
  if (code == "InvalidIdentityToken" || code == "ExpiredTokenException" || code == "ExpiredToken" ||
      code == "IDPRejectedClaim") {
    return StatusCode::kUnauthenticated;
  }
  if (code == "Throttling" || code == "ThrottlingException" || http_status == 429) {
    return StatusCode::kResourceExhausted;
  }
  if (code == "IDPCommunicationError" || http_status >= 500) return StatusCode::kUnavailable;
  return StatusCode::kInvalidArgument;
}

// Text of a line of an INI file up to an inline comment ('#' or ';' after whitespace).
std::string_view StripInlineComment(std::string_view s) {
  for (size_t i = 1; i < s.size(); ++i) {
    if ((s[i] == '#' || s[i] == ';') && IsSpace(s[i - 1])) return s.substr(0, i);
  }
  return s;
}

Status IniError(std::string_view source, size_t line, std::string_view problem) {
  return InvalidArgumentError(std::string(source) + ":" + std::to_string(line) + ": " + std::string(problem));
}

std::string TrimTrailingSlashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

bool IsRoleNameChar(char c) {
  return IsSessionNameChar(c);  // IAM role names use the same charset: [\w+=,.@-]
}

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

StatusOr<std::chrono::system_clock::time_point> ParseAwsTimestamp(std::string_view text) {
  const Status bad = InvalidArgumentError("timestamp is not ISO 8601 (YYYY-MM-DDTHH:MM:SSZ)");
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (text.size() < 20 || !ParseDigits(text, 0, 4, year) || text[4] != '-' || !ParseDigits(text, 5, 2, month) ||
      text[7] != '-' || !ParseDigits(text, 8, 2, day) || (text[10] != 'T' && text[10] != 't') ||
      !ParseDigits(text, 11, 2, hour) || text[13] != ':' || !ParseDigits(text, 14, 2, minute) || text[16] != ':' ||
      !ParseDigits(text, 17, 2, second)) {
    return bad;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return bad;
  size_t pos = 19;
  std::chrono::nanoseconds fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t nanos = 0;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 9) {
        nanos = nanos * 10 + (text[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    if (digits == 0) return bad;
    for (int i = digits; i < 9; ++i) nanos *= 10;
    fraction = std::chrono::nanoseconds(nanos);
  }
  std::chrono::minutes offset{0};
  const std::string_view zone = text.substr(pos);
  if (zone == "Z" || zone == "z") {
    // UTC
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    int offset_hours = 0, offset_minutes = 0;
    if (!ParseDigits(zone, 1, 2, offset_hours) || !ParseDigits(zone, 4, 2, offset_minutes) || offset_hours > 23 ||
        offset_minutes > 59) {
      return bad;
    }
    offset = std::chrono::minutes(offset_hours * 60 + offset_minutes);
    if (zone[0] == '-') offset = -offset;
  } else {
    return bad;
  }
  const int64_t days = DaysFromCivil(year, month, day);
  const auto since_epoch = std::chrono::seconds(days * 86400 + hour * 3600 + minute * 60 + second) - offset;
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(since_epoch + fraction));
}

// ---------------------------------------------------------------------------------------
// Environment

StatusOr<AwsCredentials> EnvironmentCredentialsProvider::GetCredentials() {
  std::optional<std::string> id = NonEmpty(env_, "AWS_ACCESS_KEY_ID");
  std::optional<std::string> secret = NonEmpty(env_, "AWS_SECRET_ACCESS_KEY");
  if (!id && !secret) return NotFoundError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set");
  if (!id) return InvalidArgumentError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
  if (!secret) return InvalidArgumentError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
  AwsCredentials credentials;
  credentials.access_key_id = std::move(*id);
  credentials.secret_access_key = std::move(*secret);
  credentials.session_token = NonEmpty(env_, "AWS_SESSION_TOKEN").value_or("");
  return credentials;
}

// ---------------------------------------------------------------------------------------
// Shared credentials file

StatusOr<SharedCredentialsProfile> ParseSharedCredentials(std::string_view text, std::string_view profile,
                                                          std::string_view source_name) {
  SharedCredentialsProfile result;
  bool in_section = false;
  bool in_profile = false;
  bool after_empty_property = false;  // indented lines that follow are sub-properties
  size_t line_number = 0;
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    ++line_number;

    const bool indented = !line.empty() && (line.front() == ' ' || line.front() == '\t');
    const std::string_view trimmed = Trim(line);
    if (trimmed.empty() || trimmed.front() == '#' || trimmed.front() == ';') continue;
    if (indented && after_empty_property) continue;

    if (trimmed.front() == '[') {
      const std::string_view header = Trim(StripInlineComment(trimmed));
      if (header.back() != ']') return IniError(source_name, line_number, "section header without a closing ']'");
      const std::string_view name = Trim(header.substr(1, header.size() - 2));
      if (name.empty() || name.find_first_of("[]") != std::string_view::npos) {
        return IniError(source_name, line_number, "malformed section header");
      }
      in_section = true;
      in_profile = name == profile;
      if (in_profile) result.found = true;
      after_empty_property = false;
      continue;
    }

    const size_t equals = trimmed.find('=');
    if (equals == std::string_view::npos) {
      return IniError(source_name, line_number, "expected '[profile]' or 'key = value'");
    }
    if (!in_section) return IniError(source_name, line_number, "property outside of a [profile] section");
    const std::string key = ToLower(Trim(trimmed.substr(0, equals)));
    if (key.empty()) return IniError(source_name, line_number, "property without a name");
    const std::string_view value = Trim(StripInlineComment(trimmed.substr(equals + 1)));
    after_empty_property = value.empty();
    if (!in_profile) continue;
    if (key == "aws_access_key_id") {
      result.credentials.access_key_id = std::string(value);
    } else if (key == "aws_secret_access_key") {
      result.credentials.secret_access_key = std::string(value);
    } else if (key == "aws_session_token") {
      result.credentials.session_token = std::string(value);
    }
  }
  return result;
}

StatusOr<AwsCredentials> SharedFileCredentialsProvider::GetCredentials() {
  std::string path;
  if (std::optional<std::string> file = NonEmpty(env_, "AWS_SHARED_CREDENTIALS_FILE")) {
    path = std::move(*file);
    if (path.starts_with("~/")) {
      std::optional<std::string> home = NonEmpty(env_, "HOME");
      if (!home) return NotFoundError("AWS_SHARED_CREDENTIALS_FILE starts with ~/ but HOME is not set");
      path = *home + path.substr(1);
    }
  } else if (std::optional<std::string> home = NonEmpty(env_, "HOME")) {
    path = *home + "/.aws/credentials";
  } else {
    return NotFoundError("neither AWS_SHARED_CREDENTIALS_FILE nor HOME is set");
  }
  const std::string profile = NonEmpty(env_, "AWS_PROFILE").value_or("default");

  StatusOr<std::string> text = ReadSmallFile(path, kMaxCredentialsFileBytes);
  if (!text.ok()) return text.status();
  StatusOr<SharedCredentialsProfile> parsed = ParseSharedCredentials(*text, profile, path);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->found) return NotFoundError("profile '" + profile + "' not found in " + path);
  const std::string where = "profile '" + profile + "' in " + path;
  if (parsed->credentials.access_key_id.empty()) return InvalidArgumentError(where + " has no aws_access_key_id");
  if (parsed->credentials.secret_access_key.empty()) {
    return InvalidArgumentError(where + " has no aws_secret_access_key");
  }
  return std::move(parsed->credentials);
}

// ---------------------------------------------------------------------------------------
// Web identity

std::string BuildAssumeRoleWithWebIdentityBody(std::string_view role_arn, std::string_view session_name,
                                               std::string_view token) {
  std::string body;
  AppendFormParam(body, "Action", "AssumeRoleWithWebIdentity");
  AppendFormParam(body, "Version", "2011-06-15");
  AppendFormParam(body, "RoleArn", role_arn);
  AppendFormParam(body, "RoleSessionName", session_name);
  AppendFormParam(body, "WebIdentityToken", token);
  return body;
}

StatusOr<AwsCredentials> ParseAssumeRoleWithWebIdentityResponse(int http_status, std::string_view body) {
  pugi::xml_document doc;
  const pugi::xml_parse_result parsed = doc.load_buffer(body.data(), body.size());
  const pugi::xml_node root = parsed ? doc.document_element() : pugi::xml_node();

  if (http_status != 200 || (root && LocalName(root) == "ErrorResponse")) {
    const pugi::xml_node error = root ? Child(root, "Error") : pugi::xml_node();
    const std::string code = error ? ChildText(error, "Code") : std::string();
    std::string message = error ? ChildText(error, "Message") : std::string();
    if (message.size() > 512) message.resize(512);
    std::string text = "STS AssumeRoleWithWebIdentity failed: HTTP " + std::to_string(http_status);
    if (!code.empty()) text += " " + code;
    if (!message.empty()) text += ": " + message;
    StatusCode status_code = CodeForStsError(http_status, code);
    if (http_status == 200) status_code = StatusCode::kInternal;  // an error document with 200
    return Status(status_code, std::move(text));
  }
  if (!root) return InternalError("STS AssumeRoleWithWebIdentity: response is not XML");
  if (LocalName(root) != "AssumeRoleWithWebIdentityResponse") {
    return InternalError("STS AssumeRoleWithWebIdentity: unexpected response element <" + std::string(LocalName(root)) +
                         ">");
  }
  const pugi::xml_node result = Child(root, "AssumeRoleWithWebIdentityResult");
  const pugi::xml_node credentials_node = Child(result, "Credentials");
  if (!credentials_node) {
    return InternalError("STS AssumeRoleWithWebIdentity: response has no AssumeRoleWithWebIdentityResult/Credentials");
  }
  AwsCredentials credentials;
  credentials.access_key_id = ChildText(credentials_node, "AccessKeyId");
  credentials.secret_access_key = ChildText(credentials_node, "SecretAccessKey");
  credentials.session_token = ChildText(credentials_node, "SessionToken");
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"AccessKeyId", &credentials.access_key_id},
                                    {"SecretAccessKey", &credentials.secret_access_key},
                                    {"SessionToken", &credentials.session_token}}) {
    if (value->empty()) return InternalError(std::string("STS AssumeRoleWithWebIdentity: response has no ") + name);
  }
  StatusOr<std::chrono::system_clock::time_point> expiration =
      ParseAwsTimestamp(ChildText(credentials_node, "Expiration"));
  if (!expiration.ok()) {
    return InternalError("STS AssumeRoleWithWebIdentity: Expiration: " + expiration.status().message());
  }
  credentials.expiration = *expiration;
  credentials.account_id = AccountOfArn(ChildText(Child(result, "AssumedRoleUser"), "Arn"));
  return credentials;
}

WebIdentityCredentialsProvider::WebIdentityCredentialsProvider(HttpClient& http, const Clock& clock, EnvLookup env,
                                                               WebIdentityOptions options)
    : http_(http), clock_(clock), env_(std::move(env)), options_(std::move(options)) {}

StatusOr<AwsCredentials> WebIdentityCredentialsProvider::GetCredentials() {
  std::optional<std::string> token_file = NonEmpty(env_, "AWS_WEB_IDENTITY_TOKEN_FILE");
  std::optional<std::string> role_arn = NonEmpty(env_, "AWS_ROLE_ARN");
  if (!token_file && !role_arn) return NotFoundError("AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are not set");
  if (!token_file) return InvalidArgumentError("AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not");
  if (!role_arn) return InvalidArgumentError("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");

  std::string session_name = NonEmpty(env_, "AWS_ROLE_SESSION_NAME").value_or("");
  if (session_name.empty()) {
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
    session_name = "pod-identity-agent-" + std::to_string(seconds);
  }
  if (session_name.size() < 2 || session_name.size() > 64 ||
      !std::all_of(session_name.begin(), session_name.end(), IsSessionNameChar)) {
    return InvalidArgumentError("AWS_ROLE_SESSION_NAME must be 2-64 characters of [A-Za-z0-9_+=,.@-]");
  }

  // Read on every call: the kubelet rotates projected tokens.
  StatusOr<std::string> token_text = ReadSmallFile(*token_file, kMaxWebIdentityTokenBytes);
  if (!token_text.ok()) {
    return Status(token_text.status().code() == StatusCode::kNotFound ? StatusCode::kUnavailable
                                                                      : token_text.status().code(),
                  "web identity token file: " + token_text.status().message());
  }
  const std::string_view token = Trim(*token_text);
  if (token.empty()) return UnavailableError("web identity token file " + *token_file + " is empty");

  std::string region = options_.region;
  if (region.empty()) region = NonEmpty(env_, "AWS_REGION").value_or(NonEmpty(env_, "AWS_DEFAULT_REGION").value_or(""));
  std::string endpoint = options_.sts_endpoint;
  if (endpoint.empty()) {
    if (region.empty()) {
      endpoint = "https://sts.amazonaws.com";
    } else {
      endpoint = "https://sts." + region + (region.starts_with("cn-") ? ".amazonaws.com.cn" : ".amazonaws.com");
    }
  }

  HttpRequest request;
  request.method = "POST";
  request.url = TrimTrailingSlashes(endpoint) + "/";
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  request.body = BuildAssumeRoleWithWebIdentityBody(*role_arn, session_name, token);
  request.timeout = options_.timeout;
  StatusOr<HttpResponse> response = http_.Send(request);
  if (!response.ok()) {
    return Status(response.status().code() == StatusCode::kDeadlineExceeded ? StatusCode::kDeadlineExceeded
                                                                            : StatusCode::kUnavailable,
                  "STS AssumeRoleWithWebIdentity at " + endpoint + ": " + response.status().message());
  }
  return ParseAssumeRoleWithWebIdentityResponse(response->status, response->body);
}

// ---------------------------------------------------------------------------------------
// EC2 IMDSv2

ImdsCredentialsProvider::ImdsCredentialsProvider(HttpClient& http, EnvLookup env, ImdsOptions options)
    : http_(http), env_(std::move(env)), options_(std::move(options)) {}

StatusOr<AwsCredentials> ImdsCredentialsProvider::GetCredentials() {
  if (ToLower(Trim(env_("AWS_EC2_METADATA_DISABLED").value_or(""))) == "true") {
    return NotFoundError("disabled by AWS_EC2_METADATA_DISABLED");
  }
  std::string endpoint = options_.endpoint;
  if (endpoint.empty()) endpoint = NonEmpty(env_, "AWS_EC2_METADATA_SERVICE_ENDPOINT").value_or("");
  if (endpoint.empty()) endpoint = std::string(kDefaultImdsEndpoint);
  endpoint = TrimTrailingSlashes(std::move(endpoint));

  auto send = [&](std::string method, const std::string& path, HttpHeaders headers) -> StatusOr<HttpResponse> {
    HttpRequest request;
    request.method = std::move(method);
    request.url = endpoint + path;
    request.headers = std::move(headers);
    request.timeout = options_.timeout;
    StatusOr<HttpResponse> response = http_.Send(request);
    if (!response.ok()) {
      return UnavailableError("IMDS at " + endpoint + " not reachable: " + response.status().message());
    }
    return response;
  };

  StatusOr<HttpResponse> token_response =
      send("PUT", "/latest/api/token", {{"X-aws-ec2-metadata-token-ttl-seconds", std::string(kImdsTokenTtlSeconds)}});
  if (!token_response.ok()) return token_response.status();
  if (token_response->status != 200) {
    return UnavailableError("IMDSv2 token request answered HTTP " + std::to_string(token_response->status));
  }
  const std::string token(Trim(token_response->body));
  if (token.empty()) return UnavailableError("IMDSv2 token request returned an empty token");
  const HttpHeaders with_token = {{"X-aws-ec2-metadata-token", token}};

  constexpr std::string_view kCredentialsPath = "/latest/meta-data/iam/security-credentials/";
  StatusOr<HttpResponse> roles = send("GET", std::string(kCredentialsPath), with_token);
  if (!roles.ok()) return roles.status();
  if (roles->status == 404) return NotFoundError("no IAM role attached to this instance");
  if (roles->status != 200) return UnavailableError("IMDS role list answered HTTP " + std::to_string(roles->status));
  std::string_view role = Trim(roles->body);
  role = Trim(role.substr(0, role.find('\n')));
  if (role.empty()) return NotFoundError("no IAM role attached to this instance");
  if (!std::all_of(role.begin(), role.end(), IsRoleNameChar)) {
    return InternalError("IMDS returned a malformed role name");
  }

  StatusOr<HttpResponse> document = send("GET", std::string(kCredentialsPath) + std::string(role), with_token);
  if (!document.ok()) return document.status();
  if (document->status == 404) return NotFoundError("IMDS has no credentials for role " + std::string(role));
  if (document->status != 200) {
    return UnavailableError("IMDS credentials for role " + std::string(role) + " answered HTTP " +
                            std::to_string(document->status));
  }
  rapidjson::Document json;
  if (const Status parsed = ParseJsonStrict(document->body, json, 8); !parsed.ok()) {
    return InternalError("IMDS credentials document is not valid JSON");  // the body holds secrets: not quoted
  }
  if (!json.IsObject()) return InternalError("IMDS credentials document is not a JSON object");
  const rapidjson::Value& object = json;  // const iterators: clang rejects the non-const ==
  auto field = [&object](const char* name) -> std::optional<std::string> {
    const auto it = object.FindMember(name);
    if (it == object.MemberEnd() || !it->value.IsString()) return std::nullopt;
    return std::string(it->value.GetString(), it->value.GetStringLength());
  };
  const std::string code = field("Code").value_or("");
  if (code != "Success") {
    return UnavailableError("IMDS credentials for role " + std::string(role) + " have Code '" + code.substr(0, 64) +
                            "'");
  }
  AwsCredentials credentials;
  for (const auto& [name, target] : {std::pair<const char*, std::string*>{"AccessKeyId", &credentials.access_key_id},
                                     {"SecretAccessKey", &credentials.secret_access_key},
                                     {"Token", &credentials.session_token}}) {
    std::optional<std::string> value = field(name);
    if (!value || value->empty()) return InternalError(std::string("IMDS credentials document has no ") + name);
    *target = std::move(*value);
  }
  StatusOr<std::chrono::system_clock::time_point> expiration = ParseAwsTimestamp(field("Expiration").value_or(""));
  if (!expiration.ok()) return InternalError("IMDS credentials document: Expiration: " + expiration.status().message());
  credentials.expiration = *expiration;
  return credentials;
}

// ---------------------------------------------------------------------------------------
// Chain

StatusOr<AwsCredentials> ChainCredentialsProvider::GetCredentials() {
  std::optional<size_t> winner;
  {
    std::lock_guard<std::mutex> lock(mu_);
    winner = winner_;
  }
  if (winner) {
    StatusOr<AwsCredentials> credentials = links_[*winner].provider->GetCredentials();
    if (!credentials.ok()) return WithPrefix(credentials.status(), links_[*winner].name + ": ");
    return credentials;
  }

  std::string reasons;
  bool all_not_configured = true;
  for (size_t i = 0; i < links_.size(); ++i) {
    StatusOr<AwsCredentials> credentials = links_[i].provider->GetCredentials();
    if (credentials.ok() && !credentials->empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!winner_) winner_ = i;
      return credentials;
    }
    const Status reason = credentials.ok() ? InternalError("returned empty credentials") : credentials.status();
    if (reason.code() != StatusCode::kNotFound) all_not_configured = false;
    if (!reasons.empty()) reasons += "; ";
    reasons += links_[i].name + ": " + reason.message();
  }
  std::string message = "no AWS credentials found (" + reasons + ")";
  return all_not_configured ? FailedPreconditionError(std::move(message)) : UnavailableError(std::move(message));
}

// ---------------------------------------------------------------------------------------
// Refreshing

RefreshingCredentialsProvider::RefreshingCredentialsProvider(std::unique_ptr<AwsCredentialsProvider> inner,
                                                             const Clock& clock, RefreshingCredentialsOptions options)
    : inner_(std::move(inner)), clock_(clock), options_(options) {}

StatusOr<AwsCredentials> RefreshingCredentialsProvider::GetCredentials() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto now = clock_.Now();
  const bool valid = cached_.has_value() && (!cached_->expiration || now < *cached_->expiration);
  if (valid) {
    const bool due = cached_->expiration && now >= *cached_->expiration - options_.refresh_before &&
                     now >= next_attempt_at_;
    if (!due || flight_ != nullptr) return *cached_;
  } else if (flight_ != nullptr) {
    // Nothing valid to hand out: wait for the call in flight (holding the flight keeps
    // its result reachable after the leader clears flight_).
    std::shared_ptr<Flight> flight = flight_;
    flight_done_.wait(lock, [&flight] { return flight->done; });
    return *flight->result;
  }

  auto flight = std::make_shared<Flight>();
  flight_ = flight;
  lock.unlock();
  StatusOr<AwsCredentials> result = InternalError("credentials provider did not run");
  try {
    result = inner_->GetCredentials();
  } catch (const std::exception& e) {
    result = InternalError(std::string("credentials provider threw an exception: ") + e.what());
  } catch (...) {
    result = InternalError("credentials provider threw an exception");
  }
  lock.lock();
  const auto done_at = clock_.Now();
  if (result.ok() && result->expiration && *result->expiration <= done_at) {
    result = InternalError("credentials provider returned expired credentials");
  }
  if (result.ok()) cached_ = *result;
  next_attempt_at_ = done_at + options_.retry_interval;
  flight->result.emplace(result);
  flight->done = true;
  flight_ = nullptr;
  flight_done_.notify_all();
  if (!result.ok() && cached_ && (!cached_->expiration || done_at < *cached_->expiration)) return *cached_;
  return result;
}

// ---------------------------------------------------------------------------------------
// Default chain

std::unique_ptr<AwsCredentialsProvider> MakeDefaultCredentialsChain(HttpClient& http, const Clock& clock, EnvLookup env,
                                                                    DefaultChainOptions options) {
  std::vector<ChainCredentialsProvider::Link> links;
  links.push_back({"environment", std::make_unique<EnvironmentCredentialsProvider>(env)});
  links.push_back({"shared credentials file", std::make_unique<SharedFileCredentialsProvider>(env)});
  links.push_back({"web identity",
                   std::make_unique<WebIdentityCredentialsProvider>(http, clock, env, std::move(options.web_identity))});
  links.push_back({"EC2 instance metadata", std::make_unique<ImdsCredentialsProvider>(http, env, std::move(options.imds))});
  return std::make_unique<RefreshingCredentialsProvider>(std::make_unique<ChainCredentialsProvider>(std::move(links)),
                                                         clock, options.refresh);
}

}  // namespace podidentity
