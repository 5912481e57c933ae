// StsClient: request building (form body, signature headers), XML parsing (AWS and
// radosgw), error mapping, the EKS Pod Identity parameters and the target-role second hop.
#include "podidentity/sts_client.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "fake_http_client.h"
#include "podidentity/sigv4_signer.h"

namespace pi = podidentity;
using pi::testing::FakeHttpClient;

namespace {

constexpr const char* kAgentSecret = "AgentSecretKeyDoNotLeak0000000000000000000";
constexpr const char* kAgentToken = "AgentSessionTokenDoNotLeak";

std::string ReadSts(const std::string& name) {
  std::ifstream in(std::string(TESTDATA_DIR) + "/sts/" + name, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A form body as a multimap of decoded names to decoded values.
std::multimap<std::string, std::string> DecodeForm(const std::string& body) {
  std::multimap<std::string, std::string> out;
  size_t pos = 0;
  while (pos <= body.size() && !body.empty()) {
    size_t end = body.find('&', pos);
    if (end == std::string::npos) end = body.size();
    const std::string pair = body.substr(pos, end - pos);
    const size_t eq = pair.find('=');
    REQUIRE(eq != std::string::npos);
    out.emplace(pi::sigv4::PercentDecode(pair.substr(0, eq)), pi::sigv4::PercentDecode(pair.substr(eq + 1)));
    pos = end + 1;
  }
  return out;
}

std::string One(const std::multimap<std::string, std::string>& form, const std::string& name) {
  REQUIRE(form.count(name) == 1);
  return form.find(name)->second;
}

std::string HeaderOf(const pi::HttpRequest& request, std::string_view name) {
  pi::HttpResponse as_response;
  as_response.headers = request.headers;
  return as_response.Header(name);
}

pi::HttpResponse Xml(int status, std::string body) {
  pi::HttpResponse response;
  response.status = status;
  response.headers = {{"Content-Type", "text/xml"}, {"x-amzn-RequestId", "req-1"}};
  response.body = std::move(body);
  return response;
}

pi::AwsCredentials AgentCredentials() {
  return pi::AwsCredentials{"AKIDAGENT", kAgentSecret, kAgentToken, std::nullopt, ""};
}

pi::PodIdentity Pod() { return pi::PodIdentity{"team-a", "app-sa", "app-7d9f8-xk2lp", "1f2e3d4c-0000-4000-8000-abcdefabcdef"}; }

pi::Association BasicAssociation() {
  pi::Association a;
  a.namespace_name = "team-a";
  a.service_account = "app-sa";
  a.role_arn = "arn:aws:iam::123456789012:role/demo";
  return a;
}

pi::ClusterInfo Cluster() { return pi::ClusterInfo{"demo", "arn:aws:eks:us-west-2:123456789012:cluster/demo"}; }

struct Fixture {
  pi::ManualClock clock{std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000))};
  pi::FixedRandom random{0.5};
  pi::StaticCredentialsProvider agent{AgentCredentials()};
  std::function<pi::StatusOr<pi::HttpResponse>(const pi::HttpRequest&)> answer = [](const pi::HttpRequest&) {
    return pi::StatusOr<pi::HttpResponse>(Xml(200, ReadSts("assume_role_aws.xml")));
  };
  FakeHttpClient http{[this](const pi::HttpRequest& r) { return answer(r); }};

  pi::StsClient Client(std::string region = "us-west-2", std::string endpoint = "") {
    pi::StsOptions options;
    options.region = std::move(region);
    options.endpoint = std::move(endpoint);
    options.clock = &clock;
    options.random = &random;
    return pi::StsClient(http, agent, options);
  }
};

}  // namespace

TEST_CASE("AssumeRoleForPod sends a signed Query-protocol AssumeRole with the six session tags", "[sts]") {
  Fixture f;
  pi::StsClient client = f.Client();
  pi::StsCallInfo info;
  pi::StatusOr<pi::AwsCredentials> credentials = client.AssumeRoleForPod(Pod(), BasicAssociation(), Cluster(), &info);
  REQUIRE(credentials.ok());
  CHECK(info.http_status == 200);
  CHECK(info.request_id == "req-1");

  const auto requests = f.http.requests();
  REQUIRE(requests.size() == 1);
  const pi::HttpRequest& request = requests[0];
  CHECK(request.method == "POST");
  CHECK(request.url == "https://sts.us-west-2.amazonaws.com");
  CHECK(HeaderOf(request, "Content-Type") == "application/x-www-form-urlencoded; charset=utf-8");
  CHECK(HeaderOf(request, "Host") == "sts.us-west-2.amazonaws.com");
  CHECK(HeaderOf(request, "X-Amz-Date") == "20231114T221320Z");
  CHECK(HeaderOf(request, "X-Amz-Security-Token") == kAgentToken);
  CHECK(HeaderOf(request, "x-amz-content-sha256").empty());
  const std::regex authz(
      "AWS4-HMAC-SHA256 Credential=AKIDAGENT/20231114/us-west-2/sts/aws4_request, "
      "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}");
  CHECK(std::regex_match(HeaderOf(request, "Authorization"), authz));

  // The signature is the one our signer computes for this exact request (the signer
  // itself is checked against AWS's suite in sigv4_signer_test.cc).
  pi::HttpRequest resigned = request;
  REQUIRE(pi::sigv4::Sign(resigned, AgentCredentials(), "us-west-2", "sts", f.clock.Now()).ok());
  CHECK(HeaderOf(resigned, "Authorization") == HeaderOf(request, "Authorization"));

  const auto form = DecodeForm(request.body);
  CHECK(One(form, "Action") == "AssumeRole");
  CHECK(One(form, "Version") == "2011-06-15");
  CHECK(One(form, "RoleArn") == "arn:aws:iam::123456789012:role/demo");
  const std::string session = One(form, "RoleSessionName");
  CHECK(session.starts_with("eks-demo-app-7d9f8-xk2lp-"));
  CHECK(session.size() <= 64);
  CHECK(form.count("Policy") == 0);
  CHECK(form.count("DurationSeconds") == 0);
  CHECK(form.count("ExternalId") == 0);
  const std::vector<std::pair<std::string, std::string>> expected_tags = {
      {"eks-cluster-arn", "arn:aws:eks:us-west-2:123456789012:cluster/demo"},
      {"eks-cluster-name", "demo"},
      {"kubernetes-namespace", "team-a"},
      {"kubernetes-service-account", "app-sa"},
      {"kubernetes-pod-name", "app-7d9f8-xk2lp"},
      {"kubernetes-pod-uid", "1f2e3d4c-0000-4000-8000-abcdefabcdef"}};
  for (size_t i = 0; i < expected_tags.size(); ++i) {
    const std::string n = std::to_string(i + 1);
    CHECK(One(form, "Tags.member." + n + ".Key") == expected_tags[i].first);
    CHECK(One(form, "Tags.member." + n + ".Value") == expected_tags[i].second);
    CHECK(One(form, "TransitiveTagKeys.member." + n) == expected_tags[i].first);
  }
  CHECK(form.count("Tags.member.7.Key") == 0);
  CHECK(form.count("TransitiveTagKeys.member.7") == 0);
  // Every parameter is accounted for.
  CHECK(form.size() == 4 + 3 * expected_tags.size());
}

TEST_CASE("Session tags: eks-cluster-arn only when configured, none when disabled; policy sent", "[sts]") {
  pi::FixedRandom random(0.25);
  pi::Association association = BasicAssociation();
  pi::PodSessionRequest without_arn = pi::BuildPodSessionRequest(Pod(), association, {"demo", ""}, random);
  REQUIRE(without_arn.first.tags.size() == 5);
  CHECK(without_arn.first.tags[0] == pi::StsTag{"eks-cluster-name", "demo"});
  CHECK(without_arn.first.transitive_tag_keys.size() == 5);
  CHECK_FALSE(without_arn.second.has_value());

  association.disable_session_tags = true;
  association.policy = R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:List*","Resource":"*"}]})";
  association.tags = {{"team", "a"}};  // the association's resource tags are never session tags
  Fixture f;
  pi::StsClient client = f.Client();
  REQUIRE(client.AssumeRoleForPod(Pod(), association, Cluster()).ok());
  const auto form = DecodeForm(f.http.requests().at(0).body);
  CHECK(One(form, "Policy") == *association.policy);
  for (const auto& [name, value] : form) {
    CHECK_FALSE(name.starts_with("Tags."));
    CHECK_FALSE(name.starts_with("TransitiveTagKeys."));
  }
  CHECK(form.size() == 5);  // Action, Version, RoleArn, RoleSessionName, Policy
}

TEST_CASE("Role session names keep STS's charset and 64-character limit", "[sts]") {
  CHECK(pi::MakeRoleSessionName("demo", "web-0", "abc") == "eks-demo-web-0-abc");
  CHECK(pi::MakeRoleSessionName("my_cluster.1", "p@d+x=y,z", "s") == "eks-my_cluster.1-p@d+x=y,z-s");
  CHECK(pi::MakeRoleSessionName("clu ster", "pod/name:1", "ü") == "eks-clu-ster-pod-name-1---");
  const std::string long_name =
      pi::MakeRoleSessionName(std::string(100, 'c'), std::string(253, 'p'), "0123-4567");
  CHECK(long_name.size() == 64);
  CHECK(long_name == "eks-" + std::string(60, 'c'));
  const std::regex allowed("[\\w+=,.@-]{2,64}");
  pi::SystemRandom random;
  for (int i = 0; i < 20; ++i) {
    const std::string name = pi::MakeRoleSessionName("cluster-" + std::to_string(i), "pod-\t\n" + std::to_string(i),
                                                     pi::RandomUuid(random));
    CHECK(std::regex_match(name, allowed));
  }
}

TEST_CASE("RandomUuid is a version-4 UUID and deterministic with FixedRandom", "[sts]") {
  pi::FixedRandom fixed(0.5);
  const std::string a = pi::RandomUuid(fixed);
  CHECK(std::regex_match(a, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")));
  pi::FixedRandom again(0.5);
  CHECK(pi::RandomUuid(again) == a);
}

TEST_CASE("A target role is assumed with the first hop's credentials", "[sts]") {
  Fixture f;
  int call = 0;
  f.answer = [&call](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    ++call;
    if (call == 1) return Xml(200, ReadSts("assume_role_aws.xml"));  // ASIAIOSFODNN7EXAMPLE
    return Xml(200, ReadSts("assume_role_radosgw.xml"));            // RGWTEMPACCESSKEY0001
  };
  pi::Association association = BasicAssociation();
  association.target_role_arn = "arn:aws:iam::111122223333:role/cross-account";
  association.disable_session_tags = false;
  association.policy = R"({"Version":"2012-10-17"})";
  pi::StsClient client = f.Client();
  pi::StatusOr<pi::AwsCredentials> credentials = client.AssumeRoleForPod(Pod(), association, Cluster());
  REQUIRE(credentials.ok());
  CHECK(credentials->access_key_id == "RGWTEMPACCESSKEY0001");
  CHECK(credentials->account_id == "111122223333");

  const auto requests = f.http.requests();
  REQUIRE(requests.size() == 2);
  CHECK(HeaderOf(requests[0], "Authorization").find("Credential=AKIDAGENT/") != std::string::npos);
  CHECK(HeaderOf(requests[0], "X-Amz-Security-Token") == kAgentToken);
  // The second request is signed by the first hop's session.
  CHECK(HeaderOf(requests[1], "Authorization").find("Credential=ASIAIOSFODNN7EXAMPLE/20231114/us-west-2/sts/") !=
        std::string::npos);
  CHECK(HeaderOf(requests[1], "X-Amz-Security-Token").starts_with("AQoDYXdzEPT//////////wEXAMPLE"));
  pi::HttpRequest resigned = requests[1];
  pi::AwsCredentials first_hop{"ASIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                               HeaderOf(requests[1], "X-Amz-Security-Token"), std::nullopt, ""};
  REQUIRE(pi::sigv4::Sign(resigned, first_hop, "us-west-2", "sts", f.clock.Now()).ok());
  CHECK(HeaderOf(resigned, "Authorization") == HeaderOf(requests[1], "Authorization"));

  const auto first = DecodeForm(requests[0].body);
  const auto second = DecodeForm(requests[1].body);
  CHECK(One(first, "RoleArn") == "arn:aws:iam::123456789012:role/demo");
  CHECK(One(second, "RoleArn") == "arn:aws:iam::111122223333:role/cross-account");
  CHECK(One(second, "RoleSessionName") == One(first, "RoleSessionName"));
  CHECK(first.count("Tags.member.1.Key") == 1);
  CHECK(second.count("Tags.member.1.Key") == 0);  // transitive tags carry over by themselves
  CHECK(first.count("Policy") == 0);              // the policy limits the final session
  CHECK(One(second, "Policy") == *association.policy);
}

TEST_CASE("A failed first hop stops before the target role", "[sts]") {
  Fixture f;
  f.answer = [](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    return Xml(403, ReadSts("error_access_denied.xml"));
  };
  pi::Association association = BasicAssociation();
  association.target_role_arn = "arn:aws:iam::111122223333:role/cross-account";
  pi::StsClient client = f.Client();
  pi::StsCallInfo info;
  pi::StatusOr<pi::AwsCredentials> credentials = client.AssumeRoleForPod(Pod(), association, Cluster(), &info);
  REQUIRE_FALSE(credentials.ok());
  CHECK(credentials.status().code() == pi::StatusCode::kPermissionDenied);
  CHECK(info.error_code == "AccessDenied");
  CHECK(f.http.requests().size() == 1);
}

TEST_CASE("A failed second hop names the target role and leaks no first-hop secret", "[sts]") {
  Fixture f;
  int call = 0;
  f.answer = [&call](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    if (++call == 1) return Xml(200, ReadSts("assume_role_aws.xml"));
    return Xml(403, ReadSts("error_access_denied.xml"));
  };
  pi::Association association = BasicAssociation();
  association.target_role_arn = "arn:aws:iam::111122223333:role/cross-account";
  pi::StsClient client = f.Client();
  pi::StsCallInfo info;
  pi::StatusOr<pi::AwsCredentials> result = client.AssumeRoleForPod(Pod(), association, Cluster(), &info);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == pi::StatusCode::kPermissionDenied);
  CHECK(info.error_code == "AccessDenied");
  CHECK(result.status().message().find("arn:aws:iam::111122223333:role/cross-account") != std::string::npos);
  CHECK(result.status().message().find("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY") == std::string::npos);
  CHECK(result.status().message().find("AQoDYXdzEPT") == std::string::npos);
  CHECK(result.status().message().find(kAgentSecret) == std::string::npos);
}

TEST_CASE("Success documents from AWS and radosgw parse", "[sts]") {
  pi::StatusOr<pi::AssumeRoleResult> aws =
      pi::ParseAssumeRoleResponse(ReadSts("assume_role_aws.xml"), "arn:aws:iam::123456789012:role/demo");
  REQUIRE(aws.ok());
  CHECK(aws->credentials.access_key_id == "ASIAIOSFODNN7EXAMPLE");
  CHECK(aws->credentials.secret_access_key == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
  CHECK(aws->credentials.session_token.size() > 100);
  REQUIRE(aws->credentials.expiration.has_value());
  CHECK(*aws->credentials.expiration == std::chrono::system_clock::time_point(std::chrono::seconds(1573306481)));
  CHECK(aws->credentials.account_id == "123456789012");
  CHECK(aws->assumed_role_arn == "arn:aws:sts::123456789012:assumed-role/demo/eks-demo-app-0123");
  CHECK(aws->assumed_role_id == "AROA123EXAMPLE123:eks-demo-app-0123");

  pi::StatusOr<pi::AssumeRoleResult> rgw =
      pi::ParseAssumeRoleResponse(ReadSts("assume_role_radosgw.xml"), "arn:aws:iam::111122223333:role/S3Access");
  REQUIRE(rgw.ok());
  CHECK(rgw->credentials.access_key_id == "RGWTEMPACCESSKEY0001");
  using namespace std::chrono;
  const auto expected = sys_days(year(2024) / May / day(20)) + hours(10) + minutes(15) + seconds(30) +
                        duration_cast<system_clock::duration>(nanoseconds(123456789));
  CHECK(*rgw->credentials.expiration == expected);
  CHECK(rgw->credentials.account_id == "111122223333");

  pi::StatusOr<pi::AssumeRoleResult> web = pi::ParseAssumeRoleResponse(ReadSts("assume_role_with_web_identity.xml"), "");
  REQUIRE(web.ok());
  CHECK(web->credentials.access_key_id == "ASIAWEBIDENTITYEXAMPLE");
  CHECK(web->credentials.account_id == "210987654321");
}

TEST_CASE("Account id falls back to the role ARN", "[sts]") {
  const std::string body =
      "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>S"
      "</SecretAccessKey><SessionToken>T</SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration>"
      "</Credentials></AssumeRoleResult></AssumeRoleResponse>";
  pi::StatusOr<pi::AssumeRoleResult> result = pi::ParseAssumeRoleResponse(body, "arn:aws:iam::999988887777:role/x");
  REQUIRE(result.ok());
  CHECK(result->credentials.account_id == "999988887777");
}

TEST_CASE("Malformed success documents are errors that never echo the secret", "[sts]") {
  const char* cases[] = {
      "not xml at all",
      "<Other/>",
      "<AssumeRoleResponse><AssumeRoleResult/></AssumeRoleResponse>",
      "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>LEAKME"
      "</SecretAccessKey><SessionToken>T</SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>",
      "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>LEAKME"
      "</SecretAccessKey><SessionToken>T</SessionToken><Expiration>tomorrow</Expiration></Credentials>"
      "</AssumeRoleResult></AssumeRoleResponse>",
  };
  for (const char* body : cases) {
    pi::StatusOr<pi::AssumeRoleResult> result = pi::ParseAssumeRoleResponse(body, "");
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == pi::StatusCode::kInternal);
    CHECK(result.status().message().find("LEAKME") == std::string::npos);
  }
}

TEST_CASE("ParseIso8601 handles fractions and offsets", "[sts]") {
  using namespace std::chrono;
  const auto base = system_clock::time_point(seconds(1573306481));  // 2019-11-09T13:34:41Z
  CHECK(*pi::ParseIso8601("2019-11-09T13:34:41Z") == base);
  CHECK(*pi::ParseIso8601("2019-11-09t13:34:41z") == base);  // RFC 3339 allows lower case
  CHECK(*pi::ParseIso8601("2019-11-09T13:34:41.5Z") == base + milliseconds(500));
  CHECK(*pi::ParseIso8601("2019-11-09T14:34:41+01:00") == base);
  CHECK(*pi::ParseIso8601("2019-11-09T12:04:41-01:30") == base);
  CHECK(*pi::ParseIso8601("2019-11-09T13:34:41.1234567891234Z") ==
        base + duration_cast<system_clock::duration>(nanoseconds(123456789)));
  for (const char* bad : {"", "2019-11-09", "2019-11-09T13:34:41", "2019-13-09T13:34:41Z", "2019-02-30T00:00:00Z",
                          "2019-11-09T13:34:41.Z", "2019-11-09T13:34:41Zjunk", "2019-11-09 13:34:41Z"}) {
    INFO(bad);
    CHECK_FALSE(pi::ParseIso8601(bad).ok());
  }
}

// The cases the agent's credential chain relied on (IMDS JSON, web identity XML) when it
// had its own parser.
TEST_CASE("ParseIso8601 reads the timestamps of the agent's credential sources", "[sts]") {
  using namespace std::chrono;
  const auto base = system_clock::time_point(seconds(1'700'000'000));  // 2023-11-14T22:13:20Z
  CHECK(*pi::ParseIso8601("2023-11-14T22:13:20Z") == base);
  CHECK(*pi::ParseIso8601("2023-11-14T22:13:20.5Z") == base + milliseconds(500));
  CHECK(*pi::ParseIso8601("2023-11-14T22:13:20.123456789Z") ==
        base + duration_cast<system_clock::duration>(nanoseconds(123456789)));
  CHECK(*pi::ParseIso8601("2023-11-14T22:13:20+00:00") == base);
  CHECK(*pi::ParseIso8601("2023-11-14T22:13:20-00:00") == base);
  CHECK(*pi::ParseIso8601("2023-11-15T00:13:20+02:00") == base);
  CHECK(*pi::ParseIso8601("2023-11-14T20:13:20-02:00") == base);
  CHECK(*pi::ParseIso8601("2023-11-14T22:13:20+23:59") == base - hours(23) - minutes(59));
  CHECK(*pi::ParseIso8601("2000-02-29T00:00:00Z") == system_clock::time_point(seconds(951782400)));
  CHECK(*pi::ParseIso8601("2016-12-31T23:59:60Z") == system_clock::time_point(seconds(1483228800)));  // leap second
  for (const char* bad : {"", "2023-11-14", "2023-11-14T22:13:20", "2023-11-14 22:13:20Z", "2023-13-14T22:13:20Z",
                          "2023-11-14T22:13:20.Z", "2023-11-14T22:13:20+0200", "1700000000",
                          // Impossible dates and offsets (the chain's old parser let these through).
                          "2023-02-30T00:00:00Z", "2023-04-31T00:00:00Z", "2023-11-14T22:13:20+24:00",
                          "2023-11-14T22:13:20+00:60", "2023-11-14T24:00:00Z", "2023-11-14T22:60:00Z",
                          "2023-11-14T22:13:20+02", "2023-11-14T22:13:20+02:00 "}) {
    INFO(bad);
    CHECK_FALSE(pi::ParseIso8601(bad).ok());
  }
}

TEST_CASE("ParseIso8601 errors quote a bounded part of the input", "[sts]") {
  pi::StatusOr<std::chrono::system_clock::time_point> bad = pi::ParseIso8601("soon");
  CHECK(bad.status().code() == pi::StatusCode::kInvalidArgument);
  CHECK(bad.status().message() == "invalid ISO 8601 time 'soon'");
  const std::string long_text(1000, 'x');
  CHECK(pi::ParseIso8601(long_text).status().message() == "invalid ISO 8601 time '" + std::string(64, 'x') + "'");
}

TEST_CASE("AccountIdFromArn takes exactly 12 digits from the fifth field", "[sts]") {
  CHECK(pi::AccountIdFromArn("arn:aws:sts::111122223333:assumed-role/agent-role/session") == "111122223333");
  CHECK(pi::AccountIdFromArn("arn:aws-cn:iam::123456789012:role/x") == "123456789012");
  CHECK(pi::AccountIdFromArn("arn:aws:eks:us-west-2:123456789012:cluster/demo") == "123456789012");
  for (const char* bad : {"", "arn:aws:iam::12345:role/x", "arn:aws:iam::1234567890123:role/x",
                          "arn:aws:iam::12345678901a:role/x", "arn:aws:iam::123456789012",
                          "xrn:aws:iam::123456789012:role/x", "arn:aws:iam:123456789012:role/x"}) {
    INFO(bad);
    CHECK(pi::AccountIdFromArn(bad).empty());
  }
}

TEST_CASE("Pretty-printed success documents are trimmed", "[sts]") {
  const std::string body =
      "<AssumeRoleResponse>\n  <AssumeRoleResult>\n    <Credentials>\n"
      "      <AccessKeyId>\n        ASIAPRETTY\n      </AccessKeyId>\n"
      "      <SecretAccessKey> S </SecretAccessKey>\n      <SessionToken>\tT\r\n</SessionToken>\n"
      "      <Expiration>\n        2030-01-01T00:00:00Z\n      </Expiration>\n    </Credentials>\n"
      "    <AssumedRoleUser><Arn> arn:aws:sts::999988887777:assumed-role/x/s </Arn></AssumedRoleUser>\n"
      "  </AssumeRoleResult>\n</AssumeRoleResponse>\n";
  pi::StatusOr<pi::AssumeRoleResult> result = pi::ParseAssumeRoleResponse(body, "");
  REQUIRE(result.ok());
  CHECK(result->credentials.access_key_id == "ASIAPRETTY");
  CHECK(result->credentials.secret_access_key == "S");
  CHECK(result->credentials.session_token == "T");
  CHECK(result->assumed_role_arn == "arn:aws:sts::999988887777:assumed-role/x/s");
  CHECK(result->credentials.account_id == "999988887777");
}

TEST_CASE("STS errors map to Status codes and keep the STS code", "[sts]") {
  struct Case {
    int http_status;
    std::string body;
    pi::StatusCode code;
    std::string sts_code;
  };
  const std::vector<Case> cases = {
      {403, ReadSts("error_access_denied.xml"), pi::StatusCode::kPermissionDenied, "AccessDenied"},
      {403, ReadSts("error_radosgw_access_denied.xml"), pi::StatusCode::kPermissionDenied, "AccessDenied"},
      {400, ReadSts("error_throttling.xml"), pi::StatusCode::kResourceExhausted, "Throttling"},
      {403, ReadSts("error_signature.xml"), pi::StatusCode::kUnavailable, "SignatureDoesNotMatch"},
      {403, ReadSts("error_radosgw_skewed.xml"), pi::StatusCode::kUnavailable, "RequestTimeTooSkewed"},
      {400, ReadSts("error_malformed_policy.xml"), pi::StatusCode::kFailedPrecondition, "MalformedPolicyDocument"},
      {503, "<html>Service Unavailable</html>", pi::StatusCode::kUnavailable, ""},
      {500, "", pi::StatusCode::kUnavailable, ""},
      {429, "", pi::StatusCode::kResourceExhausted, ""},
      // A 403 without an STS document (a proxy) is not read as the role denying us.
      {403, "<html>Forbidden</html>", pi::StatusCode::kFailedPrecondition, ""},
      {400, "<ErrorResponse><Error><Code>SomethingNew</Code></Error></ErrorResponse>",
       pi::StatusCode::kFailedPrecondition, "SomethingNew"},
  };
  for (const Case& c : cases) {
    Fixture f;
    f.answer = [&c](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> { return Xml(c.http_status, c.body); };
    pi::StsClient client = f.Client();
    pi::StsCallInfo info;
    pi::StatusOr<pi::AwsCredentials> result = client.AssumeRoleForPod(Pod(), BasicAssociation(), Cluster(), &info);
    INFO(c.body);
    REQUIRE_FALSE(result.ok());
    CHECK(result.status().code() == c.code);
    CHECK(info.http_status == c.http_status);
    CHECK(info.error_code == c.sts_code);
    if (!c.sts_code.empty()) CHECK(result.status().message().find(c.sts_code) != std::string::npos);
    CHECK(result.status().message().find("arn:aws:iam::123456789012:role/demo") != std::string::npos);
    CHECK(result.status().message().find(kAgentSecret) == std::string::npos);
    CHECK(result.status().message().find(kAgentToken) == std::string::npos);
  }
  CHECK(pi::ParseStsError(ReadSts("error_access_denied.xml"))->type == "Sender");
  CHECK(pi::ParseStsError(ReadSts("error_radosgw_access_denied.xml"))->request_id ==
        "tx00000a1b2c3d4e5f60718-0066e8a1b2-1014-default");
  CHECK_FALSE(pi::ParseStsError("<html/>").has_value());
}

TEST_CASE("Transport errors and a failing agent credential chain", "[sts]") {
  Fixture f;
  f.answer = [](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    return pi::DeadlineExceededError("POST https://sts.us-west-2.amazonaws.com:443/: timed out after 5000 ms");
  };
  pi::StsClient client = f.Client();
  pi::StsCallInfo info;
  pi::StatusOr<pi::AwsCredentials> result = client.AssumeRoleForPod(Pod(), BasicAssociation(), Cluster(), &info);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == pi::StatusCode::kDeadlineExceeded);
  CHECK(info.http_status == 0);

  class FailingProvider final : public pi::AwsCredentialsProvider {
   public:
    pi::StatusOr<pi::AwsCredentials> GetCredentials() override {
      return pi::UnauthenticatedError("IMDS returned 401");
    }
  } failing;
  FakeHttpClient http([](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> { return Xml(200, ""); });
  pi::StsOptions options;
  options.region = "us-west-2";
  pi::StsClient broken(http, failing, options);
  result = broken.AssumeRoleForPod(Pod(), BasicAssociation(), Cluster());
  REQUIRE_FALSE(result.ok());
  // Not kUnauthenticated: that would read as "the pod's token was rejected".
  CHECK(result.status().code() == pi::StatusCode::kUnavailable);
  CHECK(http.requests().empty());
}

TEST_CASE("Endpoints: regional, China, override", "[sts]") {
  CHECK(pi::StsEndpointForRegion("eu-west-1") == "https://sts.eu-west-1.amazonaws.com");
  CHECK(pi::StsEndpointForRegion("cn-north-1") == "https://sts.cn-north-1.amazonaws.com.cn");
  CHECK(pi::StsEndpointForRegion("") == "https://sts.amazonaws.com");

  Fixture f;
  pi::StsClient client = f.Client("us-east-1", "http://127.0.0.1:8000/");
  REQUIRE(client.AssumeRoleForPod(Pod(), BasicAssociation(), Cluster()).ok());
  const pi::HttpRequest request = f.http.requests().at(0);
  CHECK(request.url == "http://127.0.0.1:8000/");
  CHECK(HeaderOf(request, "Host") == "127.0.0.1:8000");
  CHECK(HeaderOf(request, "Authorization").find("/us-east-1/sts/aws4_request") != std::string::npos);
}

TEST_CASE("DurationSeconds is sent when configured, capped at 1 h on a chained hop", "[sts]") {
  Fixture f;
  pi::StsOptions options;
  options.region = "us-west-2";
  options.clock = &f.clock;
  options.random = &f.random;
  options.duration_seconds = 7200;
  pi::StsClient client(f.http, f.agent, options);
  pi::Association association = BasicAssociation();
  association.target_role_arn = "arn:aws:iam::111122223333:role/cross-account";
  REQUIRE(client.AssumeRoleForPod(Pod(), association, Cluster()).ok());
  const auto requests = f.http.requests();
  REQUIRE(requests.size() == 2);
  CHECK(One(DecodeForm(requests[0].body), "DurationSeconds") == "7200");
  CHECK(One(DecodeForm(requests[1].body), "DurationSeconds") == "3600");
}

TEST_CASE("AssumeRoleWithWebIdentity is unsigned and never echoes the token", "[sts]") {
  Fixture f;
  f.answer = [](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    return Xml(200, ReadSts("assume_role_with_web_identity.xml"));
  };
  pi::StsClient client = f.Client();
  pi::AssumeRoleWithWebIdentityParams params{"arn:aws:iam::210987654321:role/agent", "agent-session",
                                             "eyJhbGciOiJSUzI1NiJ9.payload.sig", 900};
  pi::StatusOr<pi::AssumeRoleResult> result = client.AssumeRoleWithWebIdentity(params);
  REQUIRE(result.ok());
  CHECK(result->credentials.access_key_id == "ASIAWEBIDENTITYEXAMPLE");
  const pi::HttpRequest request = f.http.requests().at(0);
  CHECK(HeaderOf(request, "Authorization").empty());
  CHECK(HeaderOf(request, "X-Amz-Security-Token").empty());
  const auto form = DecodeForm(request.body);
  CHECK(One(form, "Action") == "AssumeRoleWithWebIdentity");
  CHECK(One(form, "WebIdentityToken") == "eyJhbGciOiJSUzI1NiJ9.payload.sig");
  CHECK(One(form, "DurationSeconds") == "900");

  f.answer = [](const pi::HttpRequest&) -> pi::StatusOr<pi::HttpResponse> {
    return Xml(400, "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                    "<Message>Incorrect token audience</Message></Error></ErrorResponse>");
  };
  result = client.AssumeRoleWithWebIdentity(params);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == pi::StatusCode::kUnauthenticated);
  CHECK(result.status().message().find("payload.sig") == std::string::npos);
}

TEST_CASE("The AssumeRoleWithWebIdentity form is the one STS expects", "[sts]") {
  CHECK(pi::EncodeAssumeRoleWithWebIdentityForm(
            {"arn:aws:iam::111122223333:role/a b", "s@1", "x.y_z-~+/=", std::nullopt}) ==
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
        "&RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fa%20b&RoleSessionName=s%401"
        "&WebIdentityToken=x.y_z-~%2B%2F%3D");
  CHECK(pi::EncodeAssumeRoleWithWebIdentityForm({"arn:aws:iam::1:role/r", "s", "t", 900}).ends_with(
      "&WebIdentityToken=t&DurationSeconds=900"));
}

TEST_CASE("The form encoding percent-encodes reserved characters", "[sts]") {
  pi::AssumeRoleParams params;
  params.role_arn = "arn:aws:iam::123456789012:role/path/name";
  params.role_session_name = "s";
  params.policy = R"({"a": "b&c=d+e"})";
  params.tags = {{"k", "v w"}};
  const std::string form = pi::EncodeAssumeRoleForm(params);
  CHECK(form ==
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpath%2Fname"
        "&RoleSessionName=s&Policy=%7B%22a%22%3A%20%22b%26c%3Dd%2Be%22%7D&Tags.member.1.Key=k"
        "&Tags.member.1.Value=v%20w");
}
