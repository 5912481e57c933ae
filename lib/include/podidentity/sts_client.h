// StsClient: AWS STS over the Query protocol (form POST, XML answers) - AssumeRole signed
// with SigV4 as the agent's own identity, and unsigned AssumeRoleWithWebIdentity for the
// agent's own credential chain. BuildPodSessionRequest turns (pod, association, cluster)
// into the AssumeRole calls EKS Pod Identity makes: session name, the six session tags,
// the session policy and the optional second hop into a target role.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "podidentity/associations.h"
#include "podidentity/aws_credentials.h"
#include "podidentity/aws_types.h"
#include "podidentity/clock.h"
#include "podidentity/exchange.h"
#include "podidentity/http_client.h"
#include "podidentity/random.h"
#include "podidentity/status.h"

namespace podidentity {

struct StsTag {
  std::string key;
  std::string value;
  bool operator==(const StsTag&) const = default;
};

// The parameters of one AssumeRole call (names as in the STS API).
struct AssumeRoleParams {
  std::string role_arn;
  std::string role_session_name;
  std::optional<int> duration_seconds;  // absent: STS's default (1 h)
  std::optional<std::string> policy;    // session policy JSON
  std::optional<std::string> external_id;
  std::vector<StsTag> tags;
  std::vector<std::string> transitive_tag_keys;
};

struct AssumeRoleWithWebIdentityParams {
  std::string role_arn;
  std::string role_session_name;
  std::string web_identity_token;
  std::optional<int> duration_seconds;
};

// The parsed success document.
struct AssumeRoleResult {
  AwsCredentials credentials;  // account_id filled from the assumed-role ARN (or the role ARN)
  std::string assumed_role_arn;
  std::string assumed_role_id;
};

// What an STS call got back, for logs and metrics. Never holds a credential.
struct StsCallInfo {
  int http_status = 0;      // 0 when no response arrived
  std::string error_code;   // STS's <Code>, e.g. "AccessDenied"; empty on success
  std::string request_id;   // x-amzn-RequestId (or <RequestId>) when present
};

// A parsed STS error document: AWS's <ErrorResponse><Error><Type/><Code/><Message/>
// or radosgw's S3-style <Error><Code/><Message/>.
struct StsError {
  std::string type;  // "Sender" / "Receiver" (AWS only)
  std::string code;
  std::string message;
  std::string request_id;
};
// Parses an error body; nullopt when it is not one of the two XML forms.
std::optional<StsError> ParseStsError(std::string_view body);

// The Status for an STS error answer. The code decides, then the HTTP status:
//   AccessDenied                                   -> kPermissionDenied (the role's trust
//                                                     policy does not let us assume it)
//   Throttling, RequestLimitExceeded, TooManyRequests, SlowDown -> kResourceExhausted
//   ExpiredToken, InvalidClientTokenId, SignatureDoesNotMatch, IncompleteSignature,
//   MissingAuthenticationToken, InvalidAccessKeyId, RequestTimeTooSkewed, RequestExpired
//                                                  -> kUnavailable: these are about the
//     agent's own credentials or clock, not about the pod. kPermissionDenied and
//     kUnauthenticated would make the credential cache evict the pod's still-valid
//     credentials and the agent blame the pod; an operator problem is a broker outage.
//   MalformedPolicyDocument, PackedPolicyTooLarge, ValidationError, InvalidParameterValue,
//   RegionDisabledException                        -> kFailedPrecondition (the association
//     or the agent's configuration is wrong; retrying will not help)
//   InvalidIdentityToken, IDPRejectedClaim, ExpiredTokenException (web identity)
//                                                  -> kUnauthenticated
//   IDPCommunicationError, InternalFailure, ServiceUnavailable, any 5xx -> kUnavailable
//   anything else                                  -> kFailedPrecondition
// The message is "<Code>: <Message> (HTTP <status>)"; STS messages never echo secrets.
Status StsErrorToStatus(int http_status, const std::optional<StsError>& error);

// Parses <AssumeRoleResponse> / <AssumeRoleWithWebIdentityResponse> (the result element
// is found by name; element text is trimmed). Expiration goes through ParseIso8601. The
// account id comes from the assumed-role ARN, else from `role_arn` (may be empty).
// Errors are kInternal with messages meant to follow the caller's context
// ("response without Credentials", "Expiration: ..."); none quotes a credential.
StatusOr<AssumeRoleResult> ParseAssumeRoleResponse(std::string_view body, std::string_view role_arn);

// The one timestamp parser for AWS answers (STS XML, IMDS JSON): ISO 8601 date and time
// "YYYY-MM-DDTHH:MM:SS", optional fractional seconds of any length (radosgw sends 9
// digits; beyond nanoseconds they are truncated), then "Z" or a "+HH:MM" / "-HH:MM"
// offset, which is applied. 'T' and 'Z' may be lower case (RFC 3339 allows it). Rejected:
// no zone (ambiguous), "+HHMM", impossible dates (2019-02-30), offsets beyond 23:59,
// trailing text. The error (kInvalidArgument) quotes at most 64 characters of `text`.
StatusOr<std::chrono::system_clock::time_point> ParseIso8601(std::string_view text);
// The 12-digit account of "arn:<partition>:<service>::<account>:...", or empty.
std::string AccountIdFromArn(std::string_view arn);

// The form body of an AssumeRole call (Action, Version, then the parameters; values
// percent-encoded as SigV4 encodes them). Exposed for tests.
std::string EncodeAssumeRoleForm(const AssumeRoleParams& params);

// The form body of an AssumeRoleWithWebIdentity call (unsigned: the token is the proof).
std::string EncodeAssumeRoleWithWebIdentityForm(const AssumeRoleWithWebIdentityParams& params);

// STS's RoleSessionName charset [\w+=,.@-] (IAM role names use the same one).
bool IsRoleSessionNameChar(char c);

// The regional STS endpoint: https://sts.<region>.amazonaws.com, or .amazonaws.com.cn for
// cn-* regions; the global endpoint https://sts.amazonaws.com for an empty region.
std::string StsEndpointForRegion(std::string_view region);

// ---- EKS Pod Identity parameters -----------------------------------------------------

struct ClusterInfo {
  std::string name;  // eks-cluster-name tag and part of the session name
  std::string arn;   // eks-cluster-arn tag when not empty
};

// The one or two AssumeRole calls for a pod.
struct PodSessionRequest {
  AssumeRoleParams first;                  // association.role_arn
  std::optional<AssumeRoleParams> second;  // association.target_role_arn, made with the first hop's credentials
};

// "eks-<cluster>-<pod>-<suffix>" with every character outside STS's [\w+=,.@-] replaced
// by '-', cut to STS's 64-character limit.
std::string MakeRoleSessionName(std::string_view cluster_name, std::string_view pod_name, std::string_view suffix);
// A random RFC 4122 version-4 UUID (EKS's session-name suffix), from `random`.
std::string RandomUuid(Random& random);

// As EKS Pod Identity does it:
//  - RoleSessionName = MakeRoleSessionName(cluster, pod, random UUID).
//  - Session tags eks-cluster-arn (only when cluster.arn is set), eks-cluster-name,
//    kubernetes-namespace, kubernetes-service-account, kubernetes-pod-name,
//    kubernetes-pod-uid, every key also in TransitiveTagKeys; none when the association
//    has disable_session_tags. (association.tags are the association's own resource tags
//    in EKS, not session tags: they are not sent.)
//  - With a target role, a second AssumeRole into it, signed with the first hop's
//    credentials, with the same session name and no tags: the first hop's tags are
//    transitive, so STS carries them into the chained session itself (and rejects a
//    request that sets a transitive key again). The session policy goes on the final hop
//    (the credentials the pod receives): the first hop without a target role, the
//    second with one. No ExternalId: the association model has none (EKS generates one
//    per association); AssumeRoleParams::external_id exists for when it does.
PodSessionRequest BuildPodSessionRequest(const PodIdentity& pod, const Association& association,
                                         const ClusterInfo& cluster, Random& random);

struct StsOptions {
  std::string region;    // signing region, and the regional endpoint when `endpoint` is empty
  std::string endpoint;  // override URL (e.g. radosgw, a test server); empty: StsEndpointForRegion(region)
  const Clock* clock = &SystemClock::Instance();  // signing time
  Random* random = nullptr;                       // session-name suffixes; null: an internal SystemRandom
  std::chrono::milliseconds timeout{5000};        // per request
  std::optional<int> duration_seconds;            // DurationSeconds for pod sessions; absent: STS's default
};

// Thread-safe when the HttpClient, the provider and the Random are (all of ours are).
// The client keeps no state between calls.
class StsClient {
 public:
  StsClient(HttpClient& http, AwsCredentialsProvider& credentials, StsOptions options);

  // One signed AssumeRole with the provider's credentials. A failure to get the agent's
  // own credentials is kUnavailable (an outage, not the pod's fault).
  StatusOr<AssumeRoleResult> AssumeRole(const AssumeRoleParams& params, StsCallInfo* info = nullptr);
  // The same, signed with `signer` (the second hop uses the first hop's credentials).
  StatusOr<AssumeRoleResult> AssumeRoleAs(const AwsCredentials& signer, const AssumeRoleParams& params,
                                          StsCallInfo* info = nullptr);
  // Unsigned; the token authenticates the call.
  StatusOr<AssumeRoleResult> AssumeRoleWithWebIdentity(const AssumeRoleWithWebIdentityParams& params,
                                                       StsCallInfo* info = nullptr);

  // BuildPodSessionRequest, then one or two AssumeRole calls. Returns the final
  // credentials with account_id set. `info` describes the last call made.
  StatusOr<AwsCredentials> AssumeRoleForPod(const PodIdentity& pod, const Association& association,
                                            const ClusterInfo& cluster, StsCallInfo* info = nullptr);

  const std::string& endpoint() const { return endpoint_; }

 private:
  StatusOr<AssumeRoleResult> Call(const std::string& form, const AwsCredentials* signer, std::string_view role_arn,
                                  StsCallInfo* info);

  HttpClient& http_;
  AwsCredentialsProvider& credentials_;
  const StsOptions options_;
  const std::string endpoint_;
  SystemRandom own_random_;
};

}  // namespace podidentity
