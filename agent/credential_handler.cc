#include "credential_handler.h"

#include <ctime>

#include "error_mapping.h"
#include "podidentity/json_util.h"

namespace podidentity::agent {
namespace {

bool IsLoopback(std::string_view host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost" || host.starts_with("127.");
}

std::string Lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

HostPolicy::HostPolicy(const std::vector<std::string>& served_hosts) {
  bool loopback = false;
  for (const std::string& host : served_hosts) {
    allowed_.push_back(Lowercase(StripPort(host)));
    loopback = loopback || IsLoopback(allowed_.back());
  }
  // An agent on loopback (tests, a local demo) is called as localhost / 127.0.0.1 / [::1]
  // whatever loopback address it bound, as the SDKs allow exactly these names.
  if (loopback) {
    for (const char* name : {"localhost", "127.0.0.1", "::1"}) allowed_.emplace_back(name);
  }
}

std::string HostPolicy::StripPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return std::string(close == std::string_view::npos ? host.substr(1) : host.substr(1, close - 1));
  }
  const size_t colon = host.find(':');
  // More than one colon and no brackets: a bare IPv6 address without a port.
  if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos) {
    return std::string(host.substr(0, colon));
  }
  return std::string(host);
}

bool HostPolicy::Allows(std::string_view host_header) const {
  const std::string host = Lowercase(StripPort(host_header));
  for (const std::string& allowed : allowed_) {
    if (host == allowed) return true;
  }
  return false;
}

std::string FormatRfc3339Utc(std::chrono::system_clock::time_point time) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[32];
  const size_t n = std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(buffer, n);
}

std::string RenderCredentialsJson(const AwsCredentials& credentials) {
  std::string body = "{\"AccessKeyId\":";
  AppendJsonString(body, credentials.access_key_id);
  body += ",\"SecretAccessKey\":";
  AppendJsonString(body, credentials.secret_access_key);
  body += ",\"Token\":";
  AppendJsonString(body, credentials.session_token);
  body += ",\"AccountId\":";
  AppendJsonString(body, credentials.account_id);
  body += ",\"Expiration\":";
  AppendJsonString(body, credentials.expiration ? FormatRfc3339Utc(*credentials.expiration) : "");
  body += '}';
  return body;
}

namespace {

void Fail(CredentialResponse& response, const HttpError& error) {
  response.status = error.status;
  response.body = error.Body();
  response.outcome = error.code;
}

// The response for an exchange's answer, shared by Handle() and TryHandle() so that the
// fast path answers byte for byte as the slow one.
CredentialResponse RespondTo(const std::variant<ExchangeResult, ExchangeError>& result, const ExchangeTrace& trace) {
  CredentialResponse response;
  if (trace.pod) {
    response.log_fields.emplace_back("namespace", trace.pod->namespace_name);
    response.log_fields.emplace_back("service_account", trace.pod->service_account);
    response.log_fields.emplace_back("pod", trace.pod->pod_name);
    response.log_fields.emplace_back("pod_uid", trace.pod->pod_uid);
  }
  if (!trace.role_arn.empty()) response.log_fields.emplace_back("role_arn", trace.role_arn);
  if (trace.cache_outcome) response.cache = std::string(CacheOutcomeName(*trace.cache_outcome));
  response.broker_seconds = trace.broker_seconds;
  if (const auto* error = std::get_if<ExchangeError>(&result)) {
    Fail(response, MapExchangeError(*error));
    response.log_fields.emplace_back("reason", error->reason);
    return response;
  }
  const ExchangeResult& ok = std::get<ExchangeResult>(result);
  response.status = 200;
  response.outcome = "ok";
  response.cache = std::string(CacheOutcomeName(ok.cache_outcome));
  response.cache_hit = ok.cache_outcome == CacheOutcome::kHit || ok.cache_outcome == CacheOutcome::kServedStaleOnError;
  response.body = RenderCredentialsJson(*ok.credentials);
  return response;
}

}  // namespace

std::optional<CredentialResponse> CredentialHandler::RejectBeforeExchange(const CredentialRequest& request) const {
  CredentialResponse response;
  if (!hosts_.Allows(request.host)) {
    Fail(response, WrongHostError(request.host));
    return response;
  }
  if (!request.has_authorization || request.authorization.empty()) {
    Fail(response, MissingTokenError());
    return response;
  }
  return std::nullopt;
}

CredentialResponse CredentialHandler::Handle(const CredentialRequest& request) {
  if (std::optional<CredentialResponse> rejected = RejectBeforeExchange(request)) return std::move(*rejected);
  ExchangeTrace trace;
  auto result = exchange_.Run(request.authorization, &trace);
  return RespondTo(result, trace);
}

std::optional<CredentialResponse> CredentialHandler::TryHandle(const CredentialRequest& request) {
  if (std::optional<CredentialResponse> rejected = RejectBeforeExchange(request)) return rejected;
  ExchangeTrace trace;
  auto result = exchange_.TryRunWithoutBlocking(request.authorization, &trace);
  if (!result) return std::nullopt;
  return RespondTo(*result, trace);
}

}  // namespace podidentity::agent
