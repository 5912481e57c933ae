#include "podidentity/sts_client.h"

#include <pugixml.hpp>

#include <algorithm>
#include <array>
#include <set>
#include <utility>

#include "podidentity/sigv4_signer.h"
#include "xml_util.h"

namespace podidentity {
namespace {

using internal::Child;
using internal::ChildText;
using internal::LocalName;

constexpr std::string_view kStsVersion = "2011-06-15";
constexpr size_t kMaxRoleSessionName = 64;

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

void AppendParam(std::string& form, std::string_view name, std::string_view value) {
  if (!form.empty()) form.push_back('&');
  form.append(sigv4::UriEncode(name)).append("=").append(sigv4::UriEncode(value));
}

Status WithContext(const Status& status, std::string_view context) {
  return Status(status.code(), std::string(context) + ": " + status.message());
}

// Longest part of a malformed timestamp quoted in an error: enough to see what arrived,
// bounded because the text comes from a peer.
constexpr size_t kMaxQuotedTimestamp = 64;

}  // namespace

// ---- parsing ---------------------------------------------------------------------------

StatusOr<std::chrono::system_clock::time_point> ParseIso8601(std::string_view text) {
  using namespace std::chrono;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  const auto bad = [&] {
    return InvalidArgumentError("invalid ISO 8601 time '" + std::string(text.substr(0, kMaxQuotedTimestamp)) + "'");
  };
  if (text.size() < 19 || !ParseDigits(text, 0, 4, year) || text[4] != '-' || !ParseDigits(text, 5, 2, month) ||
      text[7] != '-' || !ParseDigits(text, 8, 2, day) || (text[10] != 'T' && text[10] != 't') ||
      !ParseDigits(text, 11, 2, hour) || text[13] != ':' || !ParseDigits(text, 14, 2, minute) || text[16] != ':' ||
      !ParseDigits(text, 17, 2, second)) {
    return bad();
  }
  size_t pos = 19;
  nanoseconds fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    const size_t start = pos;
    int64_t value = 0;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 9) {
        value = value * 10 + (text[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    if (pos == start) return bad();
    for (int i = digits; i < 9; ++i) value *= 10;
    fraction = nanoseconds(value);
  }
  minutes offset{0};
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int oh = 0, om = 0;
    if (!ParseDigits(text, pos + 1, 2, oh) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
        !ParseDigits(text, pos + 4, 2, om) || oh > 23 || om > 59) {
      return bad();
    }
    offset = hours(oh) + minutes(om);
    if (text[pos] == '-') offset = -offset;
    pos += 6;
  } else {
    return bad();  // a time without a zone is ambiguous
  }
  if (pos != text.size()) return bad();
  const year_month_day date{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month)),
                            std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok() || hour > 23 || minute > 59 || second > 60) return bad();
  const sys_time<nanoseconds> t = sys_days(date) + hours(hour) + minutes(minute) + seconds(second) + fraction - offset;
  return time_point_cast<system_clock::duration>(t);
}

std::string AccountIdFromArn(std::string_view arn) {
  // arn:partition:service:region:account:resource
  if (!arn.starts_with("arn:")) return "";
  size_t pos = 0;
  for (int field = 0; field < 4; ++field) {
    pos = arn.find(':', pos);
    if (pos == std::string_view::npos) return "";
    ++pos;
  }
  const size_t end = arn.find(':', pos);
  if (end == std::string_view::npos) return "";
  const std::string_view account = arn.substr(pos, end - pos);
  if (account.size() != 12 || !std::all_of(account.begin(), account.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return "";
  }
  return std::string(account);
}

std::optional<StsError> ParseStsError(std::string_view body) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return std::nullopt;
  const pugi::xml_node root = doc.document_element();
  StsError error;
  if (LocalName(root) == "ErrorResponse") {
    const pugi::xml_node node = Child(root, "Error");
    if (!node) return std::nullopt;
    error.type = ChildText(node, "Type");
    error.code = ChildText(node, "Code");
    error.message = ChildText(node, "Message");
    error.request_id = ChildText(root, "RequestId");
  } else if (LocalName(root) == "Error") {  // radosgw (S3 style)
    error.code = ChildText(root, "Code");
    error.message = ChildText(root, "Message");
    error.request_id = ChildText(root, "RequestId");
  } else {
    return std::nullopt;
  }
  if (error.code.empty()) return std::nullopt;
  return error;
}

Status StsErrorToStatus(int http_status, const std::optional<StsError>& error) {
  static const std::set<std::string, std::less<>> kThrottled = {"Throttling", "ThrottlingException",
                                                                "RequestLimitExceeded", "TooManyRequests",
                                                                "TooManyRequestsException", "SlowDown"};
  // The agent's own credentials or clock are wrong: an outage of the broker, not the pod's fault.
  static const std::set<std::string, std::less<>> kAgentCredentials = {
      "ExpiredToken",          "InvalidClientTokenId", "SignatureDoesNotMatch", "IncompleteSignature",
      "MissingAuthenticationToken", "InvalidAccessKeyId", "RequestTimeTooSkewed", "RequestExpired",
      "InvalidSignatureException", "UnrecognizedClientException", "MissingAuthenticationTokenException"};
  static const std::set<std::string, std::less<>> kConfiguration = {
      "MalformedPolicyDocument", "PackedPolicyTooLarge", "ValidationError", "InvalidParameterValue",
      "InvalidParameterCombination", "MissingParameter", "RegionDisabledException", "InvalidAction"};
  static const std::set<std::string, std::less<>> kWebIdentity = {"InvalidIdentityToken", "IDPRejectedClaim",
                                                                  "ExpiredTokenException"};
  static const std::set<std::string, std::less<>> kServer = {"IDPCommunicationError", "InternalFailure",
                                                             "InternalError", "ServiceUnavailable"};

  const std::string code = error ? error->code : "";
  std::string message = code.empty() ? "STS answered" : code;
  if (error && !error->message.empty()) message += ": " + error->message;
  message += " (HTTP " + std::to_string(http_status) + ")";

  if (code == "AccessDenied" || code == "AccessDeniedException") return PermissionDeniedError(message);
  if (kThrottled.contains(code) || http_status == 429) return ResourceExhaustedError(message);
  if (kAgentCredentials.contains(code)) return UnavailableError("agent credentials rejected: " + message);
  if (kConfiguration.contains(code)) return FailedPreconditionError(message);
  if (kWebIdentity.contains(code)) return UnauthenticatedError(message);
  if (kServer.contains(code) || http_status >= 500) return UnavailableError(message);
  return FailedPreconditionError(message);
}

StatusOr<AssumeRoleResult> ParseAssumeRoleResponse(std::string_view body, std::string_view role_arn) {
  pugi::xml_document doc;
  const pugi::xml_parse_result parsed = doc.load_buffer(body.data(), body.size());
  if (!parsed) return InternalError(std::string("response is not XML: ") + parsed.description());
  const pugi::xml_node root = doc.document_element();
  const std::string_view root_name = LocalName(root);
  if (!root_name.ends_with("Response")) {
    return InternalError("unexpected response element <" + std::string(root_name) + ">");
  }
  // <XResponse><XResult>: the result element is named after the action.
  pugi::xml_node result;
  for (pugi::xml_node child = root.first_child(); child; child = child.next_sibling()) {
    if (child.type() == pugi::node_element && LocalName(child).ends_with("Result")) {
      result = child;
      break;
    }
  }
  if (!result) return InternalError("response without a result element");
  const pugi::xml_node credentials = Child(result, "Credentials");
  if (!credentials) return InternalError("response without Credentials");

  AssumeRoleResult out;
  out.credentials.access_key_id = ChildText(credentials, "AccessKeyId");
  out.credentials.secret_access_key = ChildText(credentials, "SecretAccessKey");
  out.credentials.session_token = ChildText(credentials, "SessionToken");
  if (out.credentials.access_key_id.empty() || out.credentials.secret_access_key.empty() ||
      out.credentials.session_token.empty()) {
    return InternalError("response with incomplete Credentials");
  }
  const std::string expiration = ChildText(credentials, "Expiration");
  if (expiration.empty()) return InternalError("response without Expiration");
  StatusOr<std::chrono::system_clock::time_point> expires = ParseIso8601(expiration);
  if (!expires.ok()) return InternalError("Expiration: " + expires.status().message());
  out.credentials.expiration = *expires;

  const pugi::xml_node user = Child(result, "AssumedRoleUser");
  out.assumed_role_arn = ChildText(user, "Arn");
  out.assumed_role_id = ChildText(user, "AssumedRoleId");
  out.credentials.account_id = AccountIdFromArn(out.assumed_role_arn);
  if (out.credentials.account_id.empty()) out.credentials.account_id = AccountIdFromArn(role_arn);
  return out;
}

// ---- request building -------------------------------------------------------------------

std::string EncodeAssumeRoleForm(const AssumeRoleParams& params) {
  std::string form;
  AppendParam(form, "Action", "AssumeRole");
  AppendParam(form, "Version", kStsVersion);
  AppendParam(form, "RoleArn", params.role_arn);
  AppendParam(form, "RoleSessionName", params.role_session_name);
  if (params.duration_seconds) AppendParam(form, "DurationSeconds", std::to_string(*params.duration_seconds));
  if (params.policy) AppendParam(form, "Policy", *params.policy);
  if (params.external_id) AppendParam(form, "ExternalId", *params.external_id);
  for (size_t i = 0; i < params.tags.size(); ++i) {
    const std::string prefix = "Tags.member." + std::to_string(i + 1);
    AppendParam(form, prefix + ".Key", params.tags[i].key);
    AppendParam(form, prefix + ".Value", params.tags[i].value);
  }
  for (size_t i = 0; i < params.transitive_tag_keys.size(); ++i) {
    AppendParam(form, "TransitiveTagKeys.member." + std::to_string(i + 1), params.transitive_tag_keys[i]);
  }
  return form;
}

std::string EncodeAssumeRoleWithWebIdentityForm(const AssumeRoleWithWebIdentityParams& params) {
  std::string form;
  AppendParam(form, "Action", "AssumeRoleWithWebIdentity");
  AppendParam(form, "Version", kStsVersion);
  AppendParam(form, "RoleArn", params.role_arn);
  AppendParam(form, "RoleSessionName", params.role_session_name);
  AppendParam(form, "WebIdentityToken", params.web_identity_token);
  if (params.duration_seconds) AppendParam(form, "DurationSeconds", std::to_string(*params.duration_seconds));
  return form;
}

bool IsRoleSessionNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '+' ||
         c == '=' || c == ',' || c == '.' || c == '@' || c == '-';
}

std::string StsEndpointForRegion(std::string_view region) {
  if (region.empty()) return "https://sts.amazonaws.com";
  const std::string_view suffix = region.starts_with("cn-") ? ".amazonaws.com.cn" : ".amazonaws.com";
  return "https://sts." + std::string(region) + std::string(suffix);
}

std::string MakeRoleSessionName(std::string_view cluster_name, std::string_view pod_name, std::string_view suffix) {
  std::string name = "eks-";
  name.append(cluster_name).append("-").append(pod_name).append("-").append(suffix);
  for (char& c : name) {
    if (!IsRoleSessionNameChar(c)) c = '-';
  }
  if (name.size() > kMaxRoleSessionName) name.resize(kMaxRoleSessionName);
  return name;
}

std::string RandomUuid(Random& random) {
  std::array<unsigned char, 16> bytes{};
  for (size_t i = 0; i < bytes.size(); i += 4) {
    const auto word = static_cast<uint32_t>(random.Uniform(0, 0xffffffffLL));
    for (size_t j = 0; j < 4; ++j) bytes[i + j] = static_cast<unsigned char>(word >> (8 * j));
  }
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);  // version 4
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0xf]);
  }
  return out;
}

PodSessionRequest BuildPodSessionRequest(const PodIdentity& pod, const Association& association,
                                         const ClusterInfo& cluster, Random& random) {
  PodSessionRequest out;
  out.first.role_arn = association.role_arn;
  out.first.role_session_name = MakeRoleSessionName(cluster.name, pod.pod_name, RandomUuid(random));
  if (!association.disable_session_tags) {
    if (!cluster.arn.empty()) out.first.tags.push_back({"eks-cluster-arn", cluster.arn});
    out.first.tags.push_back({"eks-cluster-name", cluster.name});
    out.first.tags.push_back({"kubernetes-namespace", pod.namespace_name});
    out.first.tags.push_back({"kubernetes-service-account", pod.service_account});
    out.first.tags.push_back({"kubernetes-pod-name", pod.pod_name});
    out.first.tags.push_back({"kubernetes-pod-uid", pod.pod_uid});
    for (const StsTag& tag : out.first.tags) out.first.transitive_tag_keys.push_back(tag.key);
  }
  if (association.target_role_arn) {
    AssumeRoleParams second;
    second.role_arn = *association.target_role_arn;
    second.role_session_name = out.first.role_session_name;
    second.policy = association.policy;
    out.second = std::move(second);
  } else {
    out.first.policy = association.policy;
  }
  return out;
}

// ---- the client ---------------------------------------------------------------------------

StsClient::StsClient(HttpClient& http, AwsCredentialsProvider& credentials, StsOptions options)
    : http_(http),
      credentials_(credentials),
      options_(std::move(options)),
      endpoint_(options_.endpoint.empty() ? StsEndpointForRegion(options_.region) : options_.endpoint) {}

StatusOr<AssumeRoleResult> StsClient::AssumeRole(const AssumeRoleParams& params, StsCallInfo* info) {
  StatusOr<AwsCredentials> own = credentials_.GetCredentials();
  if (!own.ok()) {
    if (info != nullptr) *info = StsCallInfo{};
    return UnavailableError("sts AssumeRole " + params.role_arn +
                            ": the agent's own AWS credentials are unavailable: " + own.status().message());
  }
  return AssumeRoleAs(*own, params, info);
}

StatusOr<AssumeRoleResult> StsClient::AssumeRoleAs(const AwsCredentials& signer, const AssumeRoleParams& params,
                                                   StsCallInfo* info) {
  StatusOr<AssumeRoleResult> result = Call(EncodeAssumeRoleForm(params), &signer, params.role_arn, info);
  if (!result.ok()) return WithContext(result.status(), "sts AssumeRole " + params.role_arn);
  return result;
}

StatusOr<AssumeRoleResult> StsClient::AssumeRoleWithWebIdentity(const AssumeRoleWithWebIdentityParams& params,
                                                                StsCallInfo* info) {
  StatusOr<AssumeRoleResult> result = Call(EncodeAssumeRoleWithWebIdentityForm(params), nullptr, params.role_arn, info);
  if (!result.ok()) return WithContext(result.status(), "sts AssumeRoleWithWebIdentity " + params.role_arn);
  return result;
}

StatusOr<AwsCredentials> StsClient::AssumeRoleForPod(const PodIdentity& pod, const Association& association,
                                                     const ClusterInfo& cluster, StsCallInfo* info) {
  Random& random = options_.random != nullptr ? *options_.random : own_random_;
  PodSessionRequest request = BuildPodSessionRequest(pod, association, cluster, random);
  if (options_.duration_seconds) {
    request.first.duration_seconds = options_.duration_seconds;
    // STS caps a chained role session at one hour.
    if (request.second) request.second->duration_seconds = std::min(*options_.duration_seconds, 3600);
  }
  StatusOr<AssumeRoleResult> first = AssumeRole(request.first, info);
  if (!first.ok()) return first.status();
  if (!request.second) return std::move(first->credentials);
  StatusOr<AssumeRoleResult> second = AssumeRoleAs(first->credentials, *request.second, info);
  if (!second.ok()) return second.status();
  return std::move(second->credentials);
}

StatusOr<AssumeRoleResult> StsClient::Call(const std::string& form, const AwsCredentials* signer,
                                           std::string_view role_arn, StsCallInfo* info) {
  StsCallInfo local;
  StsCallInfo& call = info != nullptr ? *info : local;
  call = StsCallInfo{};

  HttpRequest request;
  request.method = "POST";
  request.url = endpoint_;
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  request.body = form;
  request.timeout = options_.timeout;
  if (signer != nullptr) {
    // The global endpoint signs for us-east-1.
    const std::string region = options_.region.empty() ? "us-east-1" : options_.region;
    Status signed_ok = sigv4::Sign(request, *signer, region, "sts", options_.clock->Now());
    if (!signed_ok.ok()) return signed_ok;
  }
  StatusOr<HttpResponse> response = http_.Send(request);
  if (!response.ok()) return response.status();  // transport errors pass through
  call.http_status = response->status;
  call.request_id = response->Header("x-amzn-RequestId");
  if (response->status != 200) {
    std::optional<StsError> error = ParseStsError(response->body);
    if (error) {
      call.error_code = error->code;
      if (call.request_id.empty()) call.request_id = error->request_id;
    }
    return StsErrorToStatus(response->status, error);
  }
  return ParseAssumeRoleResponse(response->body, role_arn);
}

}  // namespace podidentity
