// EksAuthClient: the EKS Auth API's AssumeRoleForPodIdentity, the broker on real EKS
// clusters. It posts the pod's service-account token to
// https://eks-auth.<region>.api.aws/clusters/<cluster>/assume-role-for-pod-identity,
// signed with SigV4 (service "eks-auth") as the agent's own identity; EKS checks the
// token, finds the association and returns the role's credentials (restJson protocol).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "podidentity/aws_credentials.h"
#include "podidentity/aws_types.h"
#include "podidentity/clock.h"
#include "podidentity/http_client.h"
#include "podidentity/status.h"

namespace podidentity {

// The parsed success document (field names as in the API reference).
struct EksAuthResult {
  AwsCredentials credentials;  // account_id from assumedRoleUser.arn
  std::string assumed_role_arn;
  std::string assume_role_id;
  std::string audience;
  std::string association_arn;
  std::string association_id;
  std::string subject_namespace;
  std::string subject_service_account;
};

// What the call got back, for logs and metrics. Never holds a credential or the token.
struct EksAuthCallInfo {
  int http_status = 0;     // 0 when no response arrived
  std::string error_code;  // e.g. "AccessDeniedException"; empty on success
  std::string request_id;  // x-amzn-RequestId
};

// Parses a 200 body. Required: credentials.{accessKeyId, secretAccessKey, sessionToken,
// expiration (epoch seconds, integer or fractional)}; the rest is taken when present.
StatusOr<EksAuthResult> ParseEksAuthResponse(std::string_view body);

// The error code of a restJson error: the x-amzn-ErrorType header when present, else the
// body's "__type" (or "code"), with any "namespace#" prefix and ":suffix" removed.
std::string EksAuthErrorCode(const HttpResponse& response);

// The Status for an error answer:
//   AccessDeniedException                        -> kPermissionDenied
//   InvalidTokenException, ExpiredTokenException -> kUnauthenticated (the pod's token)
//   ResourceNotFoundException                    -> kNotFound (no association)
//   ThrottlingException (or HTTP 429)            -> kResourceExhausted
//   InvalidRequestException, InvalidParameterException -> kInvalidArgument
//   ServiceUnavailableException, InternalServerException, any 5xx -> kUnavailable
//   UnrecognizedClientException, InvalidSignatureException, IncompleteSignatureException,
//   MissingAuthenticationTokenException          -> kUnavailable (the agent's own
//     credentials; see StsErrorToStatus for why this is not the pod's failure)
//   anything else                                -> kFailedPrecondition
// The message is "<code>: <message> (HTTP <status>)".
Status EksAuthErrorToStatus(const HttpResponse& response);

// https://eks-auth.<region>.api.aws (https://eks-auth.<region>.api.amazonwebservices.com.cn
// for cn-* regions).
std::string EksAuthEndpointForRegion(std::string_view region);

struct EksAuthOptions {
  std::string region;        // signing region and the default endpoint's region
  std::string endpoint;      // override base URL (the agent's --endpoint); empty: EksAuthEndpointForRegion
  std::string cluster_name;  // the {clusterName} of the request path
  const Clock* clock = &SystemClock::Instance();  // signing time
  std::chrono::milliseconds timeout{5000};        // per request
};

// Thread-safe when the HttpClient and the provider are; keeps no state between calls.
class EksAuthClient {
 public:
  EksAuthClient(HttpClient& http, AwsCredentialsProvider& credentials, EksAuthOptions options);

  // One signed call. A failure to get the agent's own credentials is kUnavailable;
  // transport errors pass through. The token never appears in a message.
  StatusOr<EksAuthResult> AssumeRoleForPodIdentity(std::string_view token, EksAuthCallInfo* info = nullptr);

  // The full request URL.
  const std::string& url() const { return url_; }

 private:
  HttpClient& http_;
  AwsCredentialsProvider& credentials_;
  const EksAuthOptions options_;
  const std::string url_;
};

}  // namespace podidentity
