#include "podidentity/aws_credentials.h"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <vector>

#include "fake_http_client.h"
#include "test_support.h"

using podidentity::testing::Signal;

using podidentity::testing::TempDir;

namespace {

using namespace std::chrono_literals;
using podidentity::AwsCredentials;
using podidentity::AwsCredentialsProvider;
using podidentity::ChainCredentialsProvider;
using podidentity::EnvLookup;
using podidentity::HttpRequest;
using podidentity::HttpResponse;
using podidentity::ManualClock;
using podidentity::StatusCode;
using podidentity::StatusOr;
using podidentity::testing::FakeHttpClient;

constexpr char kSecret[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr char kSessionToken[] = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";
constexpr char kWebToken[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl";

EnvLookup MapEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

void CheckNoSecrets(const std::string& message) {
  INFO(message);
  CHECK(message.find(kSecret) == std::string::npos);
  CHECK(message.find(kSessionToken) == std::string::npos);
  CHECK(message.find(kWebToken) == std::string::npos);
  CHECK(message.find("AKIAIOSFODNN7EXAMPLE") == std::string::npos);
}

HttpResponse Response(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

std::string Header(const HttpRequest& request, const std::string& name) {
  for (const auto& [key, value] : request.headers) {
    if (key.size() == name.size() &&
        std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
                     return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
                   })) {
      return value;
    }
  }
  return "<absent>";
}

constexpr char kWebIdentitySuccess[] = R"(<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:pod-identity:agent</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::111122223333:assumed-role/agent-role/agent-session</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:agent-session</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzEXAMPLESESSIONTOKEN</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <Expiration>2023-11-14T23:13:20.123456789Z</Expiration>
      <AccessKeyId>ASIAEXAMPLEWEBIDENTITY</AccessKeyId>
    </Credentials>
    <Audience>sts.amazonaws.com</Audience>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>)";

std::string StsError(const std::string& code, const std::string& message) {
  return "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>" + code +
         "</Code><Message>" + message + "</Message></Error><RequestId>x</RequestId></ErrorResponse>";
}

// A provider answering from a function, counting calls.
class ScriptedProvider final : public AwsCredentialsProvider {
 public:
  explicit ScriptedProvider(std::function<StatusOr<AwsCredentials>()> answer) : answer_(std::move(answer)) {}
  StatusOr<AwsCredentials> GetCredentials() override {
    ++calls;
    return answer_();
  }
  std::atomic<int> calls{0};

 private:
  std::function<StatusOr<AwsCredentials>()> answer_;
};

AwsCredentials Creds(std::string id, std::optional<std::chrono::system_clock::time_point> expiration = std::nullopt) {
  AwsCredentials credentials;
  credentials.access_key_id = std::move(id);
  credentials.secret_access_key = kSecret;
  credentials.session_token = kSessionToken;
  credentials.expiration = expiration;
  return credentials;
}

}  // namespace

// ---------------------------------------------------------------------------------------

TEST_CASE("EnvironmentCredentialsProvider") {
  SECTION("key, secret and session token") {
    podidentity::EnvironmentCredentialsProvider provider(MapEnv(
        {{"AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"}, {"AWS_SECRET_ACCESS_KEY", kSecret}, {"AWS_SESSION_TOKEN", kSessionToken}}));
    auto credentials = provider.GetCredentials();
    REQUIRE(credentials.ok());
    CHECK(credentials->access_key_id == "AKIAIOSFODNN7EXAMPLE");
    CHECK(credentials->secret_access_key == kSecret);
    CHECK(credentials->session_token == kSessionToken);
    CHECK_FALSE(credentials->expiration.has_value());
  }
  SECTION("without a session token") {
    podidentity::EnvironmentCredentialsProvider provider(
        MapEnv({{"AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"}, {"AWS_SECRET_ACCESS_KEY", kSecret}}));
    auto credentials = provider.GetCredentials();
    REQUIRE(credentials.ok());
    CHECK(credentials->session_token.empty());
  }
  SECTION("not configured") {
    podidentity::EnvironmentCredentialsProvider provider(MapEnv({{"AWS_ACCESS_KEY_ID", ""}}));
    auto credentials = provider.GetCredentials();
    REQUIRE_FALSE(credentials.ok());
    CHECK(credentials.status().code() == StatusCode::kNotFound);
  }
  SECTION("half configured") {
    podidentity::EnvironmentCredentialsProvider provider(MapEnv({{"AWS_SECRET_ACCESS_KEY", kSecret}}));
    auto credentials = provider.GetCredentials();
    REQUIRE_FALSE(credentials.ok());
    CHECK(credentials.status().code() == StatusCode::kInvalidArgument);
    CHECK(credentials.status().message() == "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
    CheckNoSecrets(credentials.status().message());
  }
}

TEST_CASE("ProcessEnvironment reads the real environment") {
  ::setenv("POD_IDENTITY_AWS_CREDENTIALS_TEST", "value", 1);
  const EnvLookup env = podidentity::ProcessEnvironment();
  CHECK(env("POD_IDENTITY_AWS_CREDENTIALS_TEST") == std::optional<std::string>("value"));
  ::unsetenv("POD_IDENTITY_AWS_CREDENTIALS_TEST");
  CHECK_FALSE(env("POD_IDENTITY_AWS_CREDENTIALS_TEST").has_value());
}

// ---------------------------------------------------------------------------------------

TEST_CASE("ParseSharedCredentials: comments, whitespace and sections") {
  const std::string text =
      "# leading comment\r\n"
      "; another comment\n"
      "[default]\n"
      "aws_access_key_id=AKIADEFAULT\n"
      "aws_secret_access_key = default-secret\n"
      "\n"
      "[  work  ]   # inline comment after a header\n"
      "  AWS_Access_Key_ID   =   AKIAWORK   \r\n"
      "aws_secret_access_key = work/secret+with=chars#not-a-comment ; a comment\n"
      "aws_session_token = work-token\t# comment\n"
      "region = us-east-1\n"
      "s3 =\n"
      "  max_concurrent_requests = 20\n"
      "  aws_access_key_id = NESTED-IGNORED\n"
      "[other]\n"
      "aws_access_key_id = AKIAOTHER\n"
      "[work]\n"
      "aws_session_token = work-token-2\n";

  auto work = podidentity::ParseSharedCredentials(text, "work", "creds");
  REQUIRE(work.ok());
  CHECK(work->found);
  CHECK(work->credentials.access_key_id == "AKIAWORK");
  CHECK(work->credentials.secret_access_key == "work/secret+with=chars#not-a-comment");
  CHECK(work->credentials.session_token == "work-token-2");  // repeated section: later wins

  auto fallback = podidentity::ParseSharedCredentials(text, "default", "creds");
  REQUIRE(fallback.ok());
  CHECK(fallback->credentials.access_key_id == "AKIADEFAULT");
  CHECK(fallback->credentials.secret_access_key == "default-secret");
  CHECK(fallback->credentials.session_token.empty());

  auto missing = podidentity::ParseSharedCredentials(text, "nope", "creds");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->found);

  // A profile's name is matched exactly: "profile work" is a different section.
  auto prefixed = podidentity::ParseSharedCredentials("[profile work]\naws_access_key_id = X\n", "work", "creds");
  REQUIRE(prefixed.ok());
  CHECK_FALSE(prefixed->found);

  auto no_trailing_newline = podidentity::ParseSharedCredentials("[default]\naws_access_key_id = LAST", "default", "f");
  REQUIRE(no_trailing_newline.ok());
  CHECK(no_trailing_newline->credentials.access_key_id == "LAST");
}

TEST_CASE("ParseSharedCredentials: malformed files name the line, not its content") {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"[default]\naws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
       "f:2: expected '[profile]' or 'key = value'"},
      {"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "f:1: property outside of a [profile] section"},
      {"[default\nkey = v\n", "f:1: section header without a closing ']'"},
      {"# c\n[]\n", "f:2: malformed section header"},
      {"[default]\n = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "f:2: property without a name"},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto parsed = podidentity::ParseSharedCredentials(c.text, "default", "f");
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == StatusCode::kInvalidArgument);
    CHECK(parsed.status().message() == c.message);
    CheckNoSecrets(parsed.status().message());
  }
}

TEST_CASE("SharedFileCredentialsProvider") {
  TempDir dir;
  const std::string file = dir.Write("credentials",
                                     "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = " +
                                         std::string(kSecret) + "\n[ci]\naws_access_key_id = AKIACI\n"
                                         "aws_secret_access_key = ci-secret\naws_session_token = " +
                                         kSessionToken + "\n[broken]\naws_access_key_id = AKIABROKEN\n");

  SECTION("AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE") {
    podidentity::SharedFileCredentialsProvider provider(
        MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "ci"}, {"HOME", "/nonexistent"}}));
    auto credentials = provider.GetCredentials();
    REQUIRE(credentials.ok());
    CHECK(credentials->access_key_id == "AKIACI");
    CHECK(credentials->secret_access_key == "ci-secret");
    CHECK(credentials->session_token == kSessionToken);
    CHECK_FALSE(credentials->expiration.has_value());
  }
  SECTION("$HOME/.aws/credentials and the default profile") {
    std::filesystem::create_directory(dir.path() / ".aws");
    dir.Write(".aws/credentials", "[default]\naws_access_key_id = AKIAHOME\naws_secret_access_key = home-secret\n");
    podidentity::SharedFileCredentialsProvider provider(MapEnv({{"HOME", dir.path().string()}}));
    auto credentials = provider.GetCredentials();
    REQUIRE(credentials.ok());
    CHECK(credentials->access_key_id == "AKIAHOME");
  }
  SECTION("~/ in AWS_SHARED_CREDENTIALS_FILE") {
    podidentity::SharedFileCredentialsProvider provider(
        MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", "~/credentials"}, {"HOME", dir.path().string()}}));
    auto credentials = provider.GetCredentials();
    REQUIRE(credentials.ok());
    CHECK(credentials->access_key_id == "AKIADEFAULT");
  }
  SECTION("the file is read on every call") {
    podidentity::SharedFileCredentialsProvider provider(MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}}));
    REQUIRE(provider.GetCredentials()->access_key_id == "AKIADEFAULT");
    dir.Write("credentials", "[default]\naws_access_key_id = AKIANEW\naws_secret_access_key = new\n");
    CHECK(provider.GetCredentials()->access_key_id == "AKIANEW");
  }
  SECTION("missing file, missing profile, missing key") {
    podidentity::SharedFileCredentialsProvider no_file(MapEnv({{"HOME", dir.path().string()}}));
    auto a = no_file.GetCredentials();
    REQUIRE_FALSE(a.ok());
    CHECK(a.status().code() == StatusCode::kNotFound);
    CHECK(a.status().message() == dir.Path(".aws/credentials") + " does not exist");

    podidentity::SharedFileCredentialsProvider no_home(MapEnv({}));
    CHECK(no_home.GetCredentials().status().code() == StatusCode::kNotFound);

    podidentity::SharedFileCredentialsProvider no_profile(
        MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "absent"}}));
    auto b = no_profile.GetCredentials();
    REQUIRE_FALSE(b.ok());
    CHECK(b.status().code() == StatusCode::kNotFound);
    CHECK(b.status().message() == "profile 'absent' not found in " + file);

    podidentity::SharedFileCredentialsProvider broken(
        MapEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "broken"}}));
    auto c = broken.GetCredentials();
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == StatusCode::kInvalidArgument);
    CHECK(c.status().message() == "profile 'broken' in " + file + " has no aws_secret_access_key");
    CheckNoSecrets(c.status().message());
  }
}

// ---------------------------------------------------------------------------------------

TEST_CASE("ParseAssumeRoleWithWebIdentityResponse") {
  using podidentity::ParseAssumeRoleWithWebIdentityResponse;
  SECTION("success") {
    auto credentials = ParseAssumeRoleWithWebIdentityResponse(200, kWebIdentitySuccess);
    REQUIRE(credentials.ok());
    CHECK(credentials->access_key_id == "ASIAEXAMPLEWEBIDENTITY");
    CHECK(credentials->secret_access_key == kSecret);
    CHECK(credentials->session_token == kSessionToken);
    CHECK(credentials->account_id == "111122223333");
    REQUIRE(credentials->expiration.has_value());
    CHECK(*credentials->expiration ==
          std::chrono::system_clock::time_point(std::chrono::seconds(1'700'003'600)) + 123456789ns);
  }
  SECTION("errors map to codes") {
    struct Case {
      int status;
      std::string code;
      StatusCode expected;
    };
    const Case cases[] = {
        {403, "AccessDenied", StatusCode::kPermissionDenied},
        {400, "InvalidIdentityToken", StatusCode::kUnauthenticated},
        {400, "ExpiredTokenException", StatusCode::kUnauthenticated},
        {403, "IDPRejectedClaim", StatusCode::kUnauthenticated},
        {400, "Throttling", StatusCode::kResourceExhausted},
        {503, "ServiceUnavailable", StatusCode::kUnavailable},
        // StsErrorToStatus's table: the request is wrong, retrying will not help.
        {400, "ValidationError", StatusCode::kFailedPrecondition},
        {400, "SomethingNew", StatusCode::kFailedPrecondition},
    };
    for (const Case& c : cases) {
      INFO(c.code);
      auto result = ParseAssumeRoleWithWebIdentityResponse(c.status, StsError(c.code, "it failed"));
      REQUIRE_FALSE(result.ok());
      CHECK(result.status().code() == c.expected);
      CHECK(result.status().message() ==
            "STS AssumeRoleWithWebIdentity failed: HTTP " + std::to_string(c.status) + " " + c.code + ": it failed");
    }
    auto not_xml = ParseAssumeRoleWithWebIdentityResponse(502, "<html>bad gateway");
    REQUIRE_FALSE(not_xml.ok());
    CHECK(not_xml.status().code() == StatusCode::kUnavailable);
    CHECK(not_xml.status().message() == "STS AssumeRoleWithWebIdentity failed: HTTP 502");
    // A proxy's 403 page is not the role denying us.
    auto proxy = ParseAssumeRoleWithWebIdentityResponse(403, "<html>Forbidden</html>");
    CHECK(proxy.status().code() == StatusCode::kFailedPrecondition);
    CHECK(proxy.status().message() == "STS AssumeRoleWithWebIdentity failed: HTTP 403");
  }
  SECTION("radosgw's S3-style error document") {
    auto result = ParseAssumeRoleWithWebIdentityResponse(
        403, "<Error><Code>AccessDenied</Code><Message>denied</Message><RequestId>tx1</RequestId></Error>");
    CHECK(result.status().code() == StatusCode::kPermissionDenied);
    CHECK(result.status().message() == "STS AssumeRoleWithWebIdentity failed: HTTP 403 AccessDenied: denied");
  }
  SECTION("an error document with HTTP 200 is an internal error") {
    auto result = ParseAssumeRoleWithWebIdentityResponse(200, StsError("AccessDenied", "it failed"));
    CHECK(result.status().code() == StatusCode::kInternal);
    CHECK(result.status().message() == "STS AssumeRoleWithWebIdentity failed: HTTP 200 AccessDenied: it failed");
  }
  SECTION("a long STS message is cut to 512 characters") {
    auto result = ParseAssumeRoleWithWebIdentityResponse(400, StsError("InvalidIdentityToken", std::string(2000, 'm')));
    CHECK(result.status().message() ==
          "STS AssumeRoleWithWebIdentity failed: HTTP 400 InvalidIdentityToken: " + std::string(512, 'm'));
  }
  SECTION("pretty-printed values are trimmed; the account falls back to the role ARN") {
    std::string body = kWebIdentitySuccess;
    const std::string user_start = "<AssumedRoleUser>";
    const std::string user_end = "</AssumedRoleUser>";
    body.erase(body.find(user_start), body.find(user_end) + user_end.size() - body.find(user_start));
    body.replace(body.find("ASIAEXAMPLEWEBIDENTITY"), 22, "\n        ASIAEXAMPLEWEBIDENTITY\n      ");
    auto credentials = ParseAssumeRoleWithWebIdentityResponse(200, body, "arn:aws:iam::444455556666:role/agent-role");
    REQUIRE(credentials.ok());
    CHECK(credentials->access_key_id == "ASIAEXAMPLEWEBIDENTITY");
    CHECK(credentials->account_id == "444455556666");
    CHECK(ParseAssumeRoleWithWebIdentityResponse(200, body)->account_id.empty());
  }
  SECTION("malformed success documents") {
    std::string no_secret = kWebIdentitySuccess;
    const size_t from = no_secret.find("<SecretAccessKey>");
    const std::string end_tag = "</SecretAccessKey>";
    no_secret.erase(from, no_secret.find(end_tag) + end_tag.size() - from);
    for (const std::string& body : {std::string("not xml"), std::string("<Other/>"), no_secret,
                                    std::string("<AssumeRoleWithWebIdentityResponse/>")}) {
      INFO(body);
      auto result = ParseAssumeRoleWithWebIdentityResponse(200, body);
      REQUIRE_FALSE(result.ok());
      CHECK(result.status().code() == StatusCode::kInternal);
      CheckNoSecrets(result.status().message());
    }
    std::string bad_expiration = kWebIdentitySuccess;
    bad_expiration.replace(bad_expiration.find("2023-11-14T23"), 13, "tomorrow noon");
    auto result = ParseAssumeRoleWithWebIdentityResponse(200, bad_expiration);
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().message().starts_with("STS AssumeRoleWithWebIdentity: Expiration: "));
  }
}

TEST_CASE("WebIdentityCredentialsProvider sends an unsigned AssumeRoleWithWebIdentity") {
  TempDir dir;
  const std::string token_file = dir.Write("token", kWebToken);
  ManualClock clock;
  FakeHttpClient http([](const HttpRequest&) -> StatusOr<HttpResponse> { return Response(200, kWebIdentitySuccess); });
  std::map<std::string, std::string> vars = {{"AWS_WEB_IDENTITY_TOKEN_FILE", token_file},
                                             {"AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/agent-role"},
                                             {"AWS_REGION", "eu-west-1"}};

  SECTION("request format") {
    vars["AWS_ROLE_SESSION_NAME"] = "agent-session";
    podidentity::WebIdentityCredentialsProvider provider(http, clock, MapEnv(vars));
    auto credentials = provider.GetCredentials();
    REQUIRE(credentials.ok());
    CHECK(credentials->access_key_id == "ASIAEXAMPLEWEBIDENTITY");
    const auto requests = http.requests();
    REQUIRE(requests.size() == 1);
    const HttpRequest& request = requests[0];
    CHECK(request.method == "POST");
    CHECK(request.url == "https://sts.eu-west-1.amazonaws.com/");
    CHECK(Header(request, "Content-Type") == "application/x-www-form-urlencoded; charset=utf-8");
    CHECK(Header(request, "Authorization") == "<absent>");
    CHECK(Header(request, "X-Amz-Security-Token") == "<absent>");
    CHECK(request.body ==
          "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
          "&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fagent-role&RoleSessionName=agent-session"
          "&WebIdentityToken=" + std::string(kWebToken));
  }
  SECTION("default session name from the clock") {
    podidentity::WebIdentityCredentialsProvider provider(http, clock, MapEnv(vars));
    REQUIRE(provider.GetCredentials().ok());
    CHECK(http.requests()[0].body.find("&RoleSessionName=pod-identity-agent-1700000000&") != std::string::npos);
  }
  SECTION("the token file is read on every call, trailing newline trimmed") {
    podidentity::WebIdentityCredentialsProvider provider(http, clock, MapEnv(vars));
    REQUIRE(provider.GetCredentials().ok());
    dir.Write("token", "rotated.token.value\n");
    REQUIRE(provider.GetCredentials().ok());
    const auto requests = http.requests();
    REQUIRE(requests.size() == 2);
    CHECK(requests[0].body.ends_with("&WebIdentityToken=" + std::string(kWebToken)));
    CHECK(requests[1].body.ends_with("&WebIdentityToken=rotated.token.value"));
  }
  SECTION("endpoints") {
    SECTION("override") {
      podidentity::WebIdentityOptions options;
      options.sts_endpoint = "http://127.0.0.1:8080/";
      podidentity::WebIdentityCredentialsProvider provider(http, clock, MapEnv(vars), options);
      REQUIRE(provider.GetCredentials().ok());
      CHECK(http.requests()[0].url == "http://127.0.0.1:8080/");
    }
    SECTION("option region wins over the environment") {
      podidentity::WebIdentityOptions options;
      options.region = "us-west-2";
      podidentity::WebIdentityCredentialsProvider provider(http, clock, MapEnv(vars), options);
      REQUIRE(provider.GetCredentials().ok());
      CHECK(http.requests()[0].url == "https://sts.us-west-2.amazonaws.com/");
    }
    SECTION("AWS_DEFAULT_REGION, China") {
      vars.erase("AWS_REGION");
      vars["AWS_DEFAULT_REGION"] = "cn-north-1";
      podidentity::WebIdentityCredentialsProvider provider(http, clock, MapEnv(vars));
      REQUIRE(provider.GetCredentials().ok());
      CHECK(http.requests()[0].url == "https://sts.cn-north-1.amazonaws.com.cn/");
    }
    SECTION("no region: global endpoint") {
      vars.erase("AWS_REGION");
      podidentity::WebIdentityCredentialsProvider provider(http, clock, MapEnv(vars));
      REQUIRE(provider.GetCredentials().ok());
      CHECK(http.requests()[0].url == "https://sts.amazonaws.com/");
    }
  }
  SECTION("not configured, half configured, bad session name") {
    podidentity::WebIdentityCredentialsProvider none(http, clock, MapEnv({}));
    CHECK(none.GetCredentials().status().code() == StatusCode::kNotFound);
    podidentity::WebIdentityCredentialsProvider half(http, clock, MapEnv({{"AWS_ROLE_ARN", "arn:aws:iam::1:role/r"}}));
    CHECK(half.GetCredentials().status().code() == StatusCode::kInvalidArgument);
    vars["AWS_ROLE_SESSION_NAME"] = "has space";
    podidentity::WebIdentityCredentialsProvider bad_name(http, clock, MapEnv(vars));
    CHECK(bad_name.GetCredentials().status().code() == StatusCode::kInvalidArgument);
    CHECK(http.requests().empty());
  }
  SECTION("token file missing or empty") {
    vars["AWS_WEB_IDENTITY_TOKEN_FILE"] = dir.Path("absent");
    podidentity::WebIdentityCredentialsProvider missing(http, clock, MapEnv(vars));
    auto a = missing.GetCredentials();
    CHECK(a.status().code() == StatusCode::kUnavailable);
    CHECK(a.status().message() == "web identity token file: " + dir.Path("absent") + " does not exist");
    vars["AWS_WEB_IDENTITY_TOKEN_FILE"] = dir.Write("empty", "\n");
    podidentity::WebIdentityCredentialsProvider empty(http, clock, MapEnv(vars));
    CHECK(empty.GetCredentials().status().code() == StatusCode::kUnavailable);
    CHECK(http.requests().empty());
  }
  SECTION("STS errors and transport failures keep the token out of the message") {
    FakeHttpClient denied([](const HttpRequest&) -> StatusOr<HttpResponse> {
      return Response(403, StsError("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"));
    });
    podidentity::WebIdentityCredentialsProvider provider(denied, clock, MapEnv(vars));
    auto result = provider.GetCredentials();
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == StatusCode::kPermissionDenied);
    CheckNoSecrets(result.status().message());

    FakeHttpClient down([](const HttpRequest&) -> StatusOr<HttpResponse> {
      return podidentity::UnavailableError("connection refused");
    });
    podidentity::WebIdentityCredentialsProvider unreachable(down, clock, MapEnv(vars));
    auto transport = unreachable.GetCredentials();
    REQUIRE_FALSE(transport.ok());
    CHECK(transport.status().code() == StatusCode::kUnavailable);
    CHECK(transport.status().message() ==
          "STS AssumeRoleWithWebIdentity at https://sts.eu-west-1.amazonaws.com: connection refused");
  }
}

// ---------------------------------------------------------------------------------------

namespace {

// An IMDS double: answers the IMDSv2 flow and records what it saw.
struct FakeImds {
  std::string token = "imds-session-token";
  int token_status = 200;
  int roles_status = 200;
  std::string roles_body = "agent-instance-role\n";
  int credentials_status = 200;
  std::string credentials_body = std::string(R"({"Code":"Success","LastUpdated":"2023-11-14T22:00:00Z","Type":"AWS-HMAC",)") +
                                 R"("AccessKeyId":"ASIAIMDS","SecretAccessKey":")" + kSecret + R"(","Token":")" +
                                 kSessionToken + R"(","Expiration":"2023-11-15T04:13:20Z"})";
  bool reachable = true;

  FakeHttpClient::Handler Handler() {
    return [this](const HttpRequest& request) -> StatusOr<HttpResponse> {
      if (!reachable) return podidentity::DeadlineExceededError("connect timed out");
      const std::string path = request.url.substr(request.url.find('/', std::string("http://").size()));
      if (path == "/latest/api/token") {
        if (request.method != "PUT") return Response(405, "");
        return Response(token_status, token);
      }
      if (request.method != "GET" || Header(request, "X-aws-ec2-metadata-token") != token) return Response(401, "");
      if (path == "/latest/meta-data/iam/security-credentials/") return Response(roles_status, roles_body);
      if (path == "/latest/meta-data/iam/security-credentials/agent-instance-role") {
        return Response(credentials_status, credentials_body);
      }
      return Response(404, "");
    };
  }
};

}  // namespace

TEST_CASE("ImdsCredentialsProvider: the IMDSv2 token flow") {
  FakeImds imds;
  FakeHttpClient http(imds.Handler());
  podidentity::ImdsCredentialsProvider provider(http, MapEnv({}));
  auto credentials = provider.GetCredentials();
  REQUIRE(credentials.ok());
  CHECK(credentials->access_key_id == "ASIAIMDS");
  CHECK(credentials->secret_access_key == kSecret);
  CHECK(credentials->session_token == kSessionToken);
  CHECK(credentials->expiration == std::chrono::system_clock::time_point(std::chrono::seconds(1'700'021'600)));

  const auto requests = http.requests();
  REQUIRE(requests.size() == 3);
  CHECK(requests[0].method == "PUT");
  CHECK(requests[0].url == "http://169.254.169.254/latest/api/token");
  CHECK(Header(requests[0], "X-aws-ec2-metadata-token-ttl-seconds") == "21600");
  CHECK(requests[1].method == "GET");
  CHECK(requests[1].url == "http://169.254.169.254/latest/meta-data/iam/security-credentials/");
  CHECK(Header(requests[1], "X-aws-ec2-metadata-token") == "imds-session-token");
  CHECK(requests[2].url == "http://169.254.169.254/latest/meta-data/iam/security-credentials/agent-instance-role");
  CHECK(Header(requests[2], "X-aws-ec2-metadata-token") == "imds-session-token");
  for (const HttpRequest& request : requests) CHECK(request.timeout == 1000ms);
}

TEST_CASE("ImdsCredentialsProvider: endpoint override and disabling") {
  FakeImds imds;
  FakeHttpClient http(imds.Handler());
  SECTION("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
    podidentity::ImdsCredentialsProvider provider(http, MapEnv({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]/"}}));
    REQUIRE(provider.GetCredentials().ok());
    CHECK(http.requests()[0].url == "http://[fd00:ec2::254]/latest/api/token");
  }
  SECTION("option wins over the environment") {
    podidentity::ImdsOptions options;
    options.endpoint = "http://127.0.0.1:1338";
    podidentity::ImdsCredentialsProvider provider(
        http, MapEnv({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]"}}), options);
    REQUIRE(provider.GetCredentials().ok());
    CHECK(http.requests()[0].url == "http://127.0.0.1:1338/latest/api/token");
  }
  SECTION("AWS_EC2_METADATA_DISABLED=true sends nothing") {
    const std::string value = GENERATE("true", "TRUE", " True ");
    podidentity::ImdsCredentialsProvider provider(http, MapEnv({{"AWS_EC2_METADATA_DISABLED", value}}));
    auto result = provider.GetCredentials();
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == StatusCode::kNotFound);
    CHECK(http.requests().empty());
  }
  SECTION("AWS_EC2_METADATA_DISABLED=false is not disabled") {
    podidentity::ImdsCredentialsProvider provider(http, MapEnv({{"AWS_EC2_METADATA_DISABLED", "false"}}));
    CHECK(provider.GetCredentials().ok());
  }
}

TEST_CASE("ImdsCredentialsProvider: failures") {
  FakeImds imds;
  FakeHttpClient http(imds.Handler());
  podidentity::ImdsCredentialsProvider provider(http, MapEnv({}));
  StatusCode expected = StatusCode::kOk;
  std::string message;
  SECTION("unreachable") {
    imds.reachable = false;
    expected = StatusCode::kUnavailable;
    message = "IMDS at http://169.254.169.254 not reachable: connect timed out";
  }
  SECTION("token refused") {
    imds.token_status = 403;
    expected = StatusCode::kUnavailable;
    message = "IMDSv2 token request answered HTTP 403";
  }
  SECTION("no role") {
    imds.roles_status = 404;
    expected = StatusCode::kNotFound;
    message = "no IAM role attached to this instance";
  }
  SECTION("malformed role name") {
    imds.roles_body = "../../etc";
    expected = StatusCode::kInternal;
    message = "IMDS returned a malformed role name";
  }
  SECTION("Code is not Success") {
    imds.credentials_body = R"({"Code":"AssumeRoleUnauthorizedAccess","Message":"x"})";
    expected = StatusCode::kUnavailable;
    message = "IMDS credentials for role agent-instance-role have Code 'AssumeRoleUnauthorizedAccess'";
  }
  SECTION("document is not JSON (and holds a secret that must not be echoed)") {
    imds.credentials_body = std::string("{\"SecretAccessKey\":\"") + kSecret + "\",";
    expected = StatusCode::kInternal;
    message = "IMDS credentials document is not valid JSON";
  }
  SECTION("missing field") {
    imds.credentials_body = R"({"Code":"Success","AccessKeyId":"ASIA","Token":"t","Expiration":"2023-11-15T04:13:20Z"})";
    expected = StatusCode::kInternal;
    message = "IMDS credentials document has no SecretAccessKey";
  }
  SECTION("bad expiration") {
    imds.credentials_body = std::string(R"({"Code":"Success","AccessKeyId":"ASIA","SecretAccessKey":")") + kSecret +
                            R"(","Token":"t","Expiration":"soon"})";
    expected = StatusCode::kInternal;
    message = "IMDS credentials document: Expiration: invalid ISO 8601 time 'soon'";
  }
  auto result = provider.GetCredentials();
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == expected);
  CHECK(result.status().message() == message);
  CheckNoSecrets(result.status().message());
}

// ---------------------------------------------------------------------------------------

TEST_CASE("ChainCredentialsProvider: first that works wins and is remembered") {
  auto first = std::make_unique<ScriptedProvider>([] { return podidentity::NotFoundError("not set"); });
  auto second = std::make_unique<ScriptedProvider>([] { return Creds("SECOND"); });
  auto third = std::make_unique<ScriptedProvider>([] { return Creds("THIRD"); });
  ScriptedProvider* first_ptr = first.get();
  ScriptedProvider* second_ptr = second.get();
  ScriptedProvider* third_ptr = third.get();
  std::vector<ChainCredentialsProvider::Link> links;
  links.push_back({"first", std::move(first)});
  links.push_back({"second", std::move(second)});
  links.push_back({"third", std::move(third)});
  ChainCredentialsProvider chain(std::move(links));

  auto credentials = chain.GetCredentials();
  REQUIRE(credentials.ok());
  CHECK(credentials->access_key_id == "SECOND");
  CHECK(first_ptr->calls == 1);
  CHECK(second_ptr->calls == 1);
  CHECK(third_ptr->calls == 0);

  // Remembered: the first provider is not asked again.
  REQUIRE(chain.GetCredentials().ok());
  CHECK(first_ptr->calls == 1);
  CHECK(second_ptr->calls == 2);
  CHECK(third_ptr->calls == 0);
}

TEST_CASE("ChainCredentialsProvider: the winner's later errors are returned, not another identity") {
  std::atomic<bool> fail{false};
  auto winner = std::make_unique<ScriptedProvider>([&fail]() -> StatusOr<AwsCredentials> {
    if (fail) return podidentity::UnavailableError("IMDS down");
    return Creds("WINNER");
  });
  auto backup = std::make_unique<ScriptedProvider>([] { return Creds("BACKUP"); });
  std::vector<ChainCredentialsProvider::Link> links;
  links.push_back({"imds", std::move(winner)});
  links.push_back({"backup", std::move(backup)});
  ChainCredentialsProvider chain(std::move(links));
  REQUIRE(chain.GetCredentials()->access_key_id == "WINNER");
  fail = true;
  auto result = chain.GetCredentials();
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == StatusCode::kUnavailable);
  CHECK(result.status().message() == "imds: IMDS down");
}

TEST_CASE("ChainCredentialsProvider: the error lists every provider's reason") {
  SECTION("nothing configured") {
    std::vector<ChainCredentialsProvider::Link> links;
    links.push_back({"environment", std::make_unique<ScriptedProvider>([] { return podidentity::NotFoundError("unset"); })});
    links.push_back({"file", std::make_unique<ScriptedProvider>([] { return podidentity::NotFoundError("no file"); })});
    ChainCredentialsProvider chain(std::move(links));
    auto result = chain.GetCredentials();
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == StatusCode::kFailedPrecondition);
    CHECK(result.status().message() == "no AWS credentials found (environment: unset; file: no file)");
  }
  SECTION("something configured but failing") {
    std::vector<ChainCredentialsProvider::Link> links;
    links.push_back({"environment", std::make_unique<ScriptedProvider>([] { return podidentity::NotFoundError("unset"); })});
    links.push_back({"imds", std::make_unique<ScriptedProvider>([] { return podidentity::UnavailableError("timeout"); })});
    links.push_back({"empty", std::make_unique<ScriptedProvider>([] { return AwsCredentials{}; })});
    ChainCredentialsProvider chain(std::move(links));
    auto result = chain.GetCredentials();
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == StatusCode::kUnavailable);
    CHECK(result.status().message() ==
          "no AWS credentials found (environment: unset; imds: timeout; empty: returned empty credentials)");
  }
}

// ---------------------------------------------------------------------------------------

TEST_CASE("RefreshingCredentialsProvider renews 5 min before expiry") {
  ManualClock clock;
  int generation = 0;
  auto inner = std::make_unique<ScriptedProvider>([&] { return Creds("GEN" + std::to_string(++generation), clock.Now() + 1h); });
  ScriptedProvider* inner_ptr = inner.get();
  podidentity::RefreshingCredentialsProvider provider(std::move(inner), clock);

  REQUIRE(provider.GetCredentials()->access_key_id == "GEN1");
  clock.Advance(55min - 1s);
  CHECK(provider.GetCredentials()->access_key_id == "GEN1");
  CHECK(inner_ptr->calls == 1);
  clock.Advance(1s);  // exactly 5 min before expiry
  CHECK(provider.GetCredentials()->access_key_id == "GEN2");
  CHECK(inner_ptr->calls == 2);
  CHECK(provider.GetCredentials()->access_key_id == "GEN2");
  CHECK(inner_ptr->calls == 2);
}

TEST_CASE("RefreshingCredentialsProvider keeps credentials without expiration") {
  ManualClock clock;
  auto inner = std::make_unique<ScriptedProvider>([] { return Creds("STATIC"); });
  ScriptedProvider* inner_ptr = inner.get();
  podidentity::RefreshingCredentialsProvider provider(std::move(inner), clock);
  REQUIRE(provider.GetCredentials().ok());
  clock.Advance(24h * 365);
  REQUIRE(provider.GetCredentials()->access_key_id == "STATIC");
  CHECK(inner_ptr->calls == 1);
}

TEST_CASE("RefreshingCredentialsProvider serves unexpired credentials on failure, never expired ones") {
  ManualClock clock;
  const auto expiration = clock.Now() + 1h;
  std::atomic<bool> fail{false};
  auto inner = std::make_unique<ScriptedProvider>([&]() -> StatusOr<AwsCredentials> {
    if (fail) return podidentity::UnavailableError("sts down");
    return Creds("FIRST", expiration);
  });
  ScriptedProvider* inner_ptr = inner.get();
  podidentity::RefreshingCredentialsProvider provider(std::move(inner), clock);  // retry_interval 10 s
  REQUIRE(provider.GetCredentials().ok());

  fail = true;
  clock.Advance(56min);
  CHECK(provider.GetCredentials()->access_key_id == "FIRST");  // renewal failed, still valid
  CHECK(inner_ptr->calls == 2);
  clock.Advance(9s);
  CHECK(provider.GetCredentials()->access_key_id == "FIRST");  // backing off: no call
  CHECK(inner_ptr->calls == 2);
  clock.Advance(1s);
  CHECK(provider.GetCredentials()->access_key_id == "FIRST");
  CHECK(inner_ptr->calls == 3);

  clock.Set(expiration);  // expired: never returned
  auto expired = provider.GetCredentials();
  REQUIRE_FALSE(expired.ok());
  CHECK(expired.status().code() == StatusCode::kUnavailable);
  CHECK(inner_ptr->calls == 4);
}

TEST_CASE("RefreshingCredentialsProvider rejects already expired credentials") {
  ManualClock clock;
  auto inner = std::make_unique<ScriptedProvider>([&] { return Creds("OLD", clock.Now()); });
  podidentity::RefreshingCredentialsProvider provider(std::move(inner), clock);
  auto result = provider.GetCredentials();
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == StatusCode::kInternal);
}

TEST_CASE("RefreshingCredentialsProvider: one inner call for concurrent cold callers") {
  constexpr int kCallers = 16;
  ManualClock clock;
  Signal started, release;
  auto inner = std::make_unique<ScriptedProvider>([&] {
    started.Notify();
    release.WaitFor(1);
    return Creds("ONCE", clock.Now() + 1h);
  });
  ScriptedProvider* inner_ptr = inner.get();
  podidentity::RefreshingCredentialsProvider provider(std::move(inner), clock);

  auto leader = std::async(std::launch::async, [&] { return provider.GetCredentials(); });
  const bool leader_started = started.WaitFor(1);
  std::latch launched(kCallers);
  std::vector<std::future<StatusOr<AwsCredentials>>> others;
  for (int i = 0; i < kCallers; ++i) {
    others.push_back(std::async(std::launch::async, [&] {
      launched.count_down();
      return provider.GetCredentials();
    }));
  }
  launched.wait();
  release.Notify();
  REQUIRE(leader_started);
  REQUIRE(leader.get()->access_key_id == "ONCE");
  for (auto& other : others) {
    auto result = other.get();
    REQUIRE(result.ok());
    CHECK(result->access_key_id == "ONCE");
  }
  CHECK(inner_ptr->calls == 1);
}

TEST_CASE("RefreshingCredentialsProvider: a renewal in flight does not block callers") {
  ManualClock clock;
  Signal renewal_started, release;
  std::atomic<int> generation{0};
  auto inner = std::make_unique<ScriptedProvider>([&] {
    const int current = ++generation;
    if (current == 2) {
      renewal_started.Notify();
      release.WaitFor(1);
    }
    return Creds("GEN" + std::to_string(current), clock.Now() + 1h);
  });
  podidentity::RefreshingCredentialsProvider provider(std::move(inner), clock);
  REQUIRE(provider.GetCredentials()->access_key_id == "GEN1");
  clock.Advance(56min);
  auto renewing = std::async(std::launch::async, [&] { return provider.GetCredentials(); });
  const bool started = renewal_started.WaitFor(1);
  auto during = std::async(std::launch::async, [&] { return provider.GetCredentials(); });
  const bool returned_while_blocked = during.wait_for(10s) == std::future_status::ready;
  release.Notify();
  REQUIRE(started);
  REQUIRE(returned_while_blocked);
  CHECK(during.get()->access_key_id == "GEN1");
  CHECK(renewing.get()->access_key_id == "GEN2");
  CHECK(provider.GetCredentials()->access_key_id == "GEN2");
}

// ---------------------------------------------------------------------------------------

TEST_CASE("MakeDefaultCredentialsChain") {
  ManualClock clock;
  TempDir dir;
  SECTION("environment first") {
    FakeHttpClient http([](const HttpRequest&) -> StatusOr<HttpResponse> { return Response(500, ""); });
    auto provider = podidentity::MakeDefaultCredentialsChain(
        http, clock,
        MapEnv({{"AWS_ACCESS_KEY_ID", "AKIAENV"}, {"AWS_SECRET_ACCESS_KEY", kSecret}, {"HOME", dir.path().string()}}));
    REQUIRE(provider->GetCredentials()->access_key_id == "AKIAENV");
    CHECK(http.requests().empty());
  }
  SECTION("web identity before IMDS, refreshed before expiry") {
    const std::string token_file = dir.Write("token", kWebToken);
    FakeHttpClient http([](const HttpRequest&) -> StatusOr<HttpResponse> { return Response(200, kWebIdentitySuccess); });
    // The canned response expires at 1'700'003'600 (+0.12 s): one hour after the clock's start.
    auto provider = podidentity::MakeDefaultCredentialsChain(
        http, clock,
        MapEnv({{"AWS_WEB_IDENTITY_TOKEN_FILE", token_file},
                {"AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/agent-role"},
                {"HOME", dir.path().string()}}));
    REQUIRE(provider->GetCredentials()->access_key_id == "ASIAEXAMPLEWEBIDENTITY");
    REQUIRE(provider->GetCredentials().ok());
    CHECK(http.requests().size() == 1);
    clock.Advance(55min);  // 5 min and 0.12 s before expiry: not yet
    REQUIRE(provider->GetCredentials().ok());
    CHECK(http.requests().size() == 1);
    clock.Advance(1s);
    REQUIRE(provider->GetCredentials().ok());
    CHECK(http.requests().size() == 2);
  }
  SECTION("IMDS last") {
    FakeImds imds;
    FakeHttpClient http(imds.Handler());
    auto provider = podidentity::MakeDefaultCredentialsChain(http, clock, MapEnv({{"HOME", dir.path().string()}}));
    REQUIRE(provider->GetCredentials()->access_key_id == "ASIAIMDS");
  }
  SECTION("nothing works: every source is named, no secret leaks") {
    const std::string token_file = dir.Write("token", kWebToken);
    FakeHttpClient http([](const HttpRequest& request) -> StatusOr<HttpResponse> {
      if (request.url.starts_with("https://sts.")) return Response(400, StsError("InvalidIdentityToken", "bad token"));
      return podidentity::DeadlineExceededError("timed out");
    });
    auto provider = podidentity::MakeDefaultCredentialsChain(
        http, clock,
        MapEnv({{"AWS_SECRET_ACCESS_KEY", kSecret},
                {"AWS_WEB_IDENTITY_TOKEN_FILE", token_file},
                {"AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/agent-role"},
                {"HOME", dir.path().string()}}));
    auto result = provider->GetCredentials();
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == StatusCode::kUnavailable);
    CHECK(result.status().message() ==
          "no AWS credentials found (environment: AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; "
          "shared credentials file: " + dir.Path(".aws/credentials") + " does not exist; "
          "web identity: STS AssumeRoleWithWebIdentity failed: HTTP 400 InvalidIdentityToken: bad token; "
          "EC2 instance metadata: IMDS at http://169.254.169.254 not reachable: timed out)");
    CheckNoSecrets(result.status().message());
  }
}
