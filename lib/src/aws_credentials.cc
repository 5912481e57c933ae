#include "podidentity/aws_credentials.h"

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
#include "podidentity/sts_client.h"

namespace podidentity {
namespace {

constexpr size_t kMaxCredentialsFileBytes = 1 << 20;
// STS accepts web identity tokens up to 20,000 characters; leave room for whitespace.
constexpr size_t kMaxWebIdentityTokenBytes = 64 * 1024;
constexpr std::string_view kDefaultImdsEndpoint = "http://169.254.169.254";
constexpr std::string_view kImdsTokenTtlSeconds = "21600";
// Longest STS error <Message> kept in a web identity error.
constexpr size_t kMaxStsErrorMessage = 512;

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

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
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

StatusOr<AwsCredentials> ParseAssumeRoleWithWebIdentityResponse(int http_status, std::string_view body,
                                                                std::string_view role_arn) {
  // A 200 can still carry an error document (a misbehaving proxy or STS-compatible server).
  std::optional<StsError> error = ParseStsError(body);
  if (http_status != 200 || error) {
    std::string text = "STS AssumeRoleWithWebIdentity failed: HTTP " + std::to_string(http_status);
    if (error) {
      // Bounded: the message ends up in logs and in the chain's combined error.
      if (error->message.size() > kMaxStsErrorMessage) error->message.resize(kMaxStsErrorMessage);
      text += " " + error->code;
      if (!error->message.empty()) text += ": " + error->message;
    }
    // StsErrorToStatus decides the code (its message format is StsClient's, not ours).
    const StatusCode code = http_status == 200 ? StatusCode::kInternal : StsErrorToStatus(http_status, error).code();
    return Status(code, std::move(text));
  }
  StatusOr<AssumeRoleResult> result = ParseAssumeRoleResponse(body, role_arn);
  if (!result.ok()) return WithPrefix(result.status(), "STS AssumeRoleWithWebIdentity: ");
  return std::move(result->credentials);
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
      !std::all_of(session_name.begin(), session_name.end(), IsRoleSessionNameChar)) {
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
  const std::string endpoint = options_.sts_endpoint.empty() ? StsEndpointForRegion(region) : options_.sts_endpoint;

  HttpRequest request;
  request.method = "POST";
  request.url = TrimTrailingSlashes(endpoint) + "/";
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  request.body = EncodeAssumeRoleWithWebIdentityForm({*role_arn, session_name, std::string(token), std::nullopt});
  request.timeout = options_.timeout;
  StatusOr<HttpResponse> response = http_.Send(request);
  if (!response.ok()) {
    return Status(response.status().code() == StatusCode::kDeadlineExceeded ? StatusCode::kDeadlineExceeded
                                                                            : StatusCode::kUnavailable,
                  "STS AssumeRoleWithWebIdentity at " + endpoint + ": " + response.status().message());
  }
  return ParseAssumeRoleWithWebIdentityResponse(response->status, response->body, *role_arn);
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
  if (!std::all_of(role.begin(), role.end(), IsRoleSessionNameChar)) {
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
  StatusOr<std::chrono::system_clock::time_point> expiration = ParseIso8601(field("Expiration").value_or(""));
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
