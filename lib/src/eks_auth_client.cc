#include "podidentity/eks_auth_client.h"

#include <rapidjson/document.h>

#include <cmath>
#include <set>
#include <utility>

#include "podidentity/json_util.h"
#include "podidentity/sigv4_signer.h"
#include "podidentity/sts_client.h"

namespace podidentity {
namespace {

const rapidjson::Value* Member(const rapidjson::Value& object, const char* name) {
  if (!object.IsObject()) return nullptr;
  const auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

std::string StringMember(const rapidjson::Value* object, const char* name) {
  if (object == nullptr) return "";
  const rapidjson::Value* value = Member(*object, name);
  return value != nullptr && value->IsString() ? std::string(value->GetString(), value->GetStringLength()) : "";
}

// "aws.protocoltests#FooError:http://internal..." -> "FooError".
std::string SanitizeErrorCode(std::string_view code) {
  const size_t colon = code.find(':');
  if (colon != std::string_view::npos) code = code.substr(0, colon);
  const size_t hash = code.rfind('#');
  if (hash != std::string_view::npos) code = code.substr(hash + 1);
  while (!code.empty() && (code.front() == ' ' || code.back() == ' ')) {
    code = code.front() == ' ' ? code.substr(1) : code.substr(0, code.size() - 1);
  }
  return std::string(code);
}

}  // namespace

StatusOr<EksAuthResult> ParseEksAuthResponse(std::string_view body) {
  rapidjson::Document doc;
  Status parsed = ParseJsonStrict(body, doc);
  if (!parsed.ok()) return InternalError("EKS Auth response: " + parsed.message());
  if (!doc.IsObject()) return InternalError("EKS Auth response is not a JSON object");

  const rapidjson::Value* credentials = Member(doc, "credentials");
  if (credentials == nullptr || !credentials->IsObject()) return InternalError("EKS Auth response without credentials");
  EksAuthResult out;
  out.credentials.access_key_id = StringMember(credentials, "accessKeyId");
  out.credentials.secret_access_key = StringMember(credentials, "secretAccessKey");
  out.credentials.session_token = StringMember(credentials, "sessionToken");
  if (out.credentials.access_key_id.empty() || out.credentials.secret_access_key.empty() ||
      out.credentials.session_token.empty()) {
    return InternalError("EKS Auth response with incomplete credentials");
  }
  const rapidjson::Value* expiration = Member(*credentials, "expiration");
  if (expiration == nullptr || !expiration->IsNumber()) {
    return InternalError("EKS Auth response without a numeric credentials.expiration");
  }
  const double seconds = expiration->GetDouble();
  if (!std::isfinite(seconds) || seconds <= 0 || seconds > 253402300799.0) {  // up to year 9999
    return InternalError("EKS Auth response with an out-of-range credentials.expiration");
  }
  out.credentials.expiration = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(seconds)));

  const rapidjson::Value* user = Member(doc, "assumedRoleUser");
  out.assumed_role_arn = StringMember(user, "arn");
  out.assume_role_id = StringMember(user, "assumeRoleId");
  out.audience = StringMember(&doc, "audience");
  const rapidjson::Value* association = Member(doc, "podIdentityAssociation");
  out.association_arn = StringMember(association, "associationArn");
  out.association_id = StringMember(association, "associationId");
  const rapidjson::Value* subject = Member(doc, "subject");
  out.subject_namespace = StringMember(subject, "namespace");
  out.subject_service_account = StringMember(subject, "serviceAccount");
  out.credentials.account_id = AccountIdFromArn(out.assumed_role_arn);
  return out;
}

std::string EksAuthErrorCode(const HttpResponse& response) {
  const std::string header = response.Header("x-amzn-ErrorType");
  if (!header.empty()) return SanitizeErrorCode(header);
  rapidjson::Document doc;
  if (!ParseJsonStrict(response.body, doc).ok() || !doc.IsObject()) return "";
  std::string code = StringMember(&doc, "__type");
  if (code.empty()) code = StringMember(&doc, "code");
  return SanitizeErrorCode(code);
}

Status EksAuthErrorToStatus(const HttpResponse& response) {
  static const std::set<std::string, std::less<>> kAgentCredentials = {
      "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
      "MissingAuthenticationTokenException"};
  const std::string code = EksAuthErrorCode(response);
  std::string message;
  rapidjson::Document doc;
  if (ParseJsonStrict(response.body, doc).ok() && doc.IsObject()) {
    message = StringMember(&doc, "message");
    if (message.empty()) message = StringMember(&doc, "Message");
  }
  std::string text = code.empty() ? "EKS Auth answered" : code;
  if (!message.empty()) text += ": " + message;
  text += " (HTTP " + std::to_string(response.status) + ")";

  if (code == "AccessDeniedException") return PermissionDeniedError(text);
  if (code == "InvalidTokenException" || code == "ExpiredTokenException") return UnauthenticatedError(text);
  if (code == "ResourceNotFoundException") return NotFoundError(text);
  if (code == "ThrottlingException" || response.status == 429) return ResourceExhaustedError(text);
  if (code == "InvalidRequestException" || code == "InvalidParameterException") return InvalidArgumentError(text);
  if (kAgentCredentials.contains(code)) return UnavailableError("agent credentials rejected: " + text);
  if (code == "ServiceUnavailableException" || code == "InternalServerException" || response.status >= 500) {
    return UnavailableError(text);
  }
  return FailedPreconditionError(text);
}

std::string EksAuthEndpointForRegion(std::string_view region) {
  if (region.starts_with("cn-")) return "https://eks-auth." + std::string(region) + ".api.amazonwebservices.com.cn";
  return "https://eks-auth." + std::string(region) + ".api.aws";
}

EksAuthClient::EksAuthClient(HttpClient& http, AwsCredentialsProvider& credentials, EksAuthOptions options)
    : http_(http), credentials_(credentials), options_(std::move(options)), url_([this] {
        std::string base = options_.endpoint.empty() ? EksAuthEndpointForRegion(options_.region) : options_.endpoint;
        while (!base.empty() && base.back() == '/') base.pop_back();
        return base + "/clusters/" + sigv4::UriEncode(options_.cluster_name) + "/assume-role-for-pod-identity";
      }()) {}

StatusOr<EksAuthResult> EksAuthClient::AssumeRoleForPodIdentity(std::string_view token, EksAuthCallInfo* info) {
  EksAuthCallInfo local;
  EksAuthCallInfo& call = info != nullptr ? *info : local;
  call = EksAuthCallInfo{};
  const std::string context = "eks-auth AssumeRoleForPodIdentity (cluster " + options_.cluster_name + ")";

  StatusOr<AwsCredentials> own = credentials_.GetCredentials();
  if (!own.ok()) {
    return UnavailableError(context + ": the agent's own AWS credentials are unavailable: " + own.status().message());
  }
  HttpRequest request;
  request.method = "POST";
  request.url = url_;
  request.headers = {{"Content-Type", "application/json"}};
  request.body = "{\"token\":" + JsonQuote(token) + "}";
  request.timeout = options_.timeout;
  Status signed_ok = sigv4::Sign(request, *own, options_.region, "eks-auth", options_.clock->Now());
  if (!signed_ok.ok()) return Status(signed_ok.code(), context + ": " + signed_ok.message());

  StatusOr<HttpResponse> response = http_.Send(request);
  if (!response.ok()) return Status(response.status().code(), context + ": " + response.status().message());
  call.http_status = response->status;
  call.request_id = response->Header("x-amzn-RequestId");
  if (response->status != 200) {
    call.error_code = EksAuthErrorCode(*response);
    const Status status = EksAuthErrorToStatus(*response);
    return Status(status.code(), context + ": " + status.message());
  }
  StatusOr<EksAuthResult> result = ParseEksAuthResponse(response->body);
  if (!result.ok()) return Status(result.status().code(), context + ": " + result.status().message());
  return result;
}

}  // namespace podidentity
