// EksAuthClient: the signed AssumeRoleForPodIdentity request, response parsing and the
// restJson error mapping.
#include "podidentity/eks_auth_client.h"

#include <catch2/catch.hpp>

#include <regex>

#include "fake_http_client.h"
#include "podidentity/sigv4_signer.h"

namespace pi = podidentity;
using pi::testing::FakeHttpClient;

namespace {

constexpr const char* kAgentSecret = "AgentSecretKeyDoNotLeak0000000000000000000";
constexpr const char* kToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl";

constexpr const char* kSuccess = R"({
  "subject": {"namespace": "team-a", "serviceAccount": "app-sa"},
  "audience": "pods.eks.amazonaws.com",
  "podIdentityAssociation": {
    "associationArn": "arn:aws:eks:us-west-2:123456789012:podidentityassociation/demo/a-abcdefghijklmnop1",
    "associationId": "a-abcdefghijklmnop1"
  },
  "assumedRoleUser": {
    "arn": "arn:aws:sts::123456789012:assumed-role/demo/eks-demo-app-7d9f8-x-0b3c",
    "assumeRoleId": "AROA123EXAMPLE123:eks-demo-app-7d9f8-x-0b3c"
  },
  "credentials": {
    "sessionToken": "PodSessionTokenEXAMPLE",
    "secretAccessKey": "PodSecretAccessKeyEXAMPLE00000000000000000",
    "accessKeyId": "ASIAPODEXAMPLE",
    "expiration": 1700021600
  }
})";

std::string HeaderOf(const pi::HttpRequest& request, std::string_view name) {
  pi::HttpResponse as_response;
  as_response.headers = request.headers;
  return as_response.Header(name);
}

pi::HttpResponse Json(int status, std::string body, pi::HttpHeaders extra = {}) {
  pi::HttpResponse response;
  response.status = status;
  response.headers = {{"Content-Type", "application/json"}, {"x-amzn-RequestId", "req-42"}};
  response.headers.insert(response.headers.end(), extra.begin(), extra.end());
  response.body = std::move(body);
  return response;
}

struct Fixture {
  pi::ManualClock clock{std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000))};
  pi::StaticCredentialsProvider agent{pi::AwsCredentials{"AKIDAGENT", kAgentSecret, "AgentToken", std::nullopt, ""}};
  std::function<pi::StatusOr<pi::HttpResponse>(const pi::HttpRequest&)> answer = [](const pi::HttpRequest&) {
    return pi::StatusOr<pi::HttpResponse>(Json(200, kSuccess));
  };
  FakeHttpClient http{[this](const pi::HttpRequest& r) { return answer(r); }};

  pi::EksAuthClient Client(std::string endpoint = "") {
    pi::EksAuthOptions options;
    options.region = "us-west-2";
    options.endpoint = std::move(endpoint);
    options.cluster_name = "demo";
    options.clock = &clock;
    return pi::EksAuthClient(http, agent, options);
  }
};

}  // namespace

TEST_CASE("AssumeRoleForPodIdentity sends a SigV4-signed JSON POST", "[eks-auth]") {
  Fixture f;
  pi::EksAuthClient client = f.Client();
  pi::EksAuthCallInfo info;
  pi::StatusOr<pi::EksAuthResult> result = client.AssumeRoleForPodIdentity(kToken, &info);
  REQUIRE(result.ok());
  CHECK(info.http_status == 200);
  CHECK(info.request_id == "req-42");

  const auto requests = f.http.requests();
  REQUIRE(requests.size() == 1);
  const pi::HttpRequest& request = requests[0];
  CHECK(request.method == "POST");
  CHECK(request.url == "https://eks-auth.us-west-2.api.aws/clusters/demo/assume-role-for-pod-identity");
  CHECK(request.body == std::string("{\"token\":\"") + kToken + "\"}");
  CHECK(HeaderOf(request, "Content-Type") == "application/json");
  CHECK(HeaderOf(request, "Host") == "eks-auth.us-west-2.api.aws");
  CHECK(HeaderOf(request, "X-Amz-Security-Token") == "AgentToken");
  const std::regex authz(
      "AWS4-HMAC-SHA256 Credential=AKIDAGENT/20231114/us-west-2/eks-auth/aws4_request, "
      "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}");
  CHECK(std::regex_match(HeaderOf(request, "Authorization"), authz));
  pi::HttpRequest resigned = request;
  REQUIRE(pi::sigv4::Sign(resigned, pi::AwsCredentials{"AKIDAGENT", kAgentSecret, "AgentToken", std::nullopt, ""},
                          "us-west-2", "eks-auth", f.clock.Now())
              .ok());
  CHECK(HeaderOf(resigned, "Authorization") == HeaderOf(request, "Authorization"));

  CHECK(result->credentials.access_key_id == "ASIAPODEXAMPLE");
  CHECK(result->credentials.secret_access_key == "PodSecretAccessKeyEXAMPLE00000000000000000");
  CHECK(result->credentials.session_token == "PodSessionTokenEXAMPLE");
  REQUIRE(result->credentials.expiration.has_value());
  CHECK(*result->credentials.expiration == std::chrono::system_clock::time_point(std::chrono::seconds(1700021600)));
  CHECK(result->credentials.account_id == "123456789012");
  CHECK(result->assumed_role_arn == "arn:aws:sts::123456789012:assumed-role/demo/eks-demo-app-7d9f8-x-0b3c");
  CHECK(result->assume_role_id == "AROA123EXAMPLE123:eks-demo-app-7d9f8-x-0b3c");
  CHECK(result->audience == "pods.eks.amazonaws.com");
  CHECK(result->association_id == "a-abcdefghijklmnop1");
  CHECK(result->association_arn.ends_with("/demo/a-abcdefghijklmnop1"));
  CHECK(result->subject_namespace == "team-a");
  CHECK(result->subject_service_account == "app-sa");
}

TEST_CASE("EKS Auth endpoints and override", "[eks-auth]") {
  CHECK(pi::EksAuthEndpointForRegion("eu-central-1") == "https://eks-auth.eu-central-1.api.aws");
  CHECK(pi::EksAuthEndpointForRegion("cn-northwest-1") ==
        "https://eks-auth.cn-northwest-1.api.amazonwebservices.com.cn");
  Fixture f;
  pi::EksAuthClient client = f.Client("http://127.0.0.1:9000/");
  CHECK(client.url() == "http://127.0.0.1:9000/clusters/demo/assume-role-for-pod-identity");
  REQUIRE(client.AssumeRoleForPodIdentity(kToken).ok());
  CHECK(HeaderOf(f.http.requests().at(0), "Host") == "127.0.0.1:9000");
}

TEST_CASE("Fractional expirations parse; incomplete responses fail", "[eks-auth]") {
  pi::StatusOr<pi::EksAuthResult> fractional = pi::ParseEksAuthResponse(
      R"({"credentials":{"accessKeyId":"A","secretAccessKey":"S","sessionToken":"T","expiration":1700021600.5}})");
  REQUIRE(fractional.ok());
  CHECK(*fractional->credentials.expiration ==
        std::chrono::system_clock::time_point(std::chrono::milliseconds(1700021600500)));
  CHECK(fractional->credentials.account_id.empty());

  for (const char* body : {
           "",
           "[]",
           R"({"credentials":{"accessKeyId":"A","secretAccessKey":"LEAKME","sessionToken":"T"}})",
           R"({"credentials":{"accessKeyId":"A","secretAccessKey":"LEAKME","sessionToken":"T","expiration":"soon"}})",
           R"({"credentials":{"accessKeyId":"A","secretAccessKey":"LEAKME","sessionToken":"T","expiration":-1}})",
           R"({"credentials":{"accessKeyId":"","secretAccessKey":"LEAKME","sessionToken":"T","expiration":1}})",
           R"({"credentials":{"accessKeyId":"A","accessKeyId":"B","secretAccessKey":"LEAKME","sessionToken":"T","expiration":1}})",
       }) {
    pi::StatusOr<pi::EksAuthResult> result = pi::ParseEksAuthResponse(body);
    INFO(body);
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == pi::StatusCode::kInternal);
    CHECK(result.status().message().find("LEAKME") == std::string::npos);
  }
}

TEST_CASE("restJson errors map to Status codes", "[eks-auth]") {
  struct Case {
    int http_status;
    std::string body;
    pi::HttpHeaders headers;
    pi::StatusCode code;
    std::string error_code;
  };
  const std::vector<Case> cases = {
      {403, R"({"__type":"AccessDeniedException","message":"not allowed"})", {}, pi::StatusCode::kPermissionDenied,
       "AccessDeniedException"},
      {401, R"({"__type":"com.amazonaws.eksauth#InvalidTokenException","message":"bad token"})", {},
       pi::StatusCode::kUnauthenticated, "InvalidTokenException"},
      {401, R"({"message":"expired"})", {{"x-amzn-ErrorType", "ExpiredTokenException:http://internal.amazon.com/"}},
       pi::StatusCode::kUnauthenticated, "ExpiredTokenException"},
      {404, R"({"__type":"ResourceNotFoundException","message":"no association"})", {}, pi::StatusCode::kNotFound,
       "ResourceNotFoundException"},
      {429, R"({"__type":"ThrottlingException","Message":"slow down"})", {}, pi::StatusCode::kResourceExhausted,
       "ThrottlingException"},
      {400, R"({"__type":"InvalidRequestException"})", {}, pi::StatusCode::kInvalidArgument,
       "InvalidRequestException"},
      {400, R"({"__type":"InvalidParameterException"})", {}, pi::StatusCode::kInvalidArgument,
       "InvalidParameterException"},
      {503, R"({"__type":"ServiceUnavailableException"})", {}, pi::StatusCode::kUnavailable,
       "ServiceUnavailableException"},
      {500, R"({"__type":"InternalServerException"})", {}, pi::StatusCode::kUnavailable, "InternalServerException"},
      {403, R"({"__type":"InvalidSignatureException","message":"Signature expired"})", {},
       pi::StatusCode::kUnavailable, "InvalidSignatureException"},
      {502, "<html>Bad Gateway</html>", {}, pi::StatusCode::kUnavailable, ""},
      {400, R"({"__type":"SomethingNewException"})", {}, pi::StatusCode::kFailedPrecondition,
       "SomethingNewException"},
  };
  for (const Case& c : cases) {
    Fixture f;
    f.answer = [&c](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
      return Json(c.http_status, c.body, c.headers);
    };
    pi::EksAuthClient client = f.Client();
    pi::EksAuthCallInfo info;
    pi::StatusOr<pi::EksAuthResult> result = client.AssumeRoleForPodIdentity(kToken, &info);
    INFO(c.body);
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == c.code);
    CHECK(info.error_code == c.error_code);
    CHECK(info.http_status == c.http_status);
    if (!c.error_code.empty()) CHECK(result.status().message().find(c.error_code) != std::string::npos);
    CHECK(result.status().message().find(kToken) == std::string::npos);
    CHECK(result.status().message().find(kAgentSecret) == std::string::npos);
  }
}

TEST_CASE("EKS Auth: transport errors pass through, agent credential failures are kUnavailable", "[eks-auth]") {
  Fixture f;
  f.answer = [](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    return pi::UnavailableError("connection refused");
  };
  pi::EksAuthClient client = f.Client();
  pi::StatusOr<pi::EksAuthResult> result = client.AssumeRoleForPodIdentity(kToken);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == pi::StatusCode::kUnavailable);
  CHECK(result.status().message().find("connection refused") != std::string::npos);

  class FailingProvider final : public pi::AwsCredentialsProvider {
   public:
    pi::StatusOr<pi::AwsCredentials> GetCredentials() override { return pi::PermissionDeniedError("no role"); }
  } failing;
  FakeHttpClient http([](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> { return Json(200, kSuccess); });
  pi::EksAuthOptions options;
  options.region = "us-west-2";
  options.cluster_name = "demo";
  pi::EksAuthClient broken(http, failing, options);
  result = broken.AssumeRoleForPodIdentity(kToken);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == pi::StatusCode::kUnavailable);
  CHECK(http.requests().empty());
}
