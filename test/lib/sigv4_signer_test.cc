// SigV4: each pure step, then the whole official aws-sig-v4-test-suite (table-driven by
// directory listing; see testdata/sigv4/README.md for the source and the suite's quirks).
#include "podidentity/sigv4_signer.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace pi = podidentity;
namespace sigv4 = podidentity::sigv4;
namespace fs = std::filesystem;

namespace {

const std::string kSuiteDir = std::string(TESTDATA_DIR) + "/sigv4/aws-sig-v4-test-suite";
constexpr const char* kAccessKey = "AKIDEXAMPLE";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

std::chrono::system_clock::time_point SuiteTime() {
  using namespace std::chrono;
  return sys_days(year(2015) / August / day(30)) + hours(12) + minutes(36);
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Chomp(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

struct SuiteRequest {
  std::string method;
  std::string path;
  std::string query;
  pi::HttpHeaders headers;
  std::string body;
};

// Reads a .req file: request line, headers (continuation lines are unfolded into the
// previous value), blank line, body.
SuiteRequest ParseReq(const std::string& text) {
  SuiteRequest out;
  std::vector<std::string> lines;
  size_t pos = 0;
  size_t body_start = std::string::npos;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() && !lines.empty()) {
      body_start = end + 1;
      break;
    }
    lines.push_back(line);
    pos = end + 1;
  }
  REQUIRE(!lines.empty());
  const std::string& request_line = lines[0];
  const size_t first_space = request_line.find(' ');
  const size_t version = request_line.rfind(" HTTP/");
  REQUIRE(first_space != std::string::npos);
  REQUIRE(version != std::string::npos);
  out.method = request_line.substr(0, first_space);
  const std::string target = request_line.substr(first_space + 1, version - first_space - 1);
  const size_t question = target.find('?');
  out.path = target.substr(0, question);
  if (question != std::string::npos) out.query = target.substr(question + 1);
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') {
      REQUIRE(!out.headers.empty());
      out.headers.back().second += line;  // obs-fold: the canonical form collapses the spaces
      continue;
    }
    const size_t colon = line.find(':');
    REQUIRE(colon != std::string::npos);
    out.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  if (body_start != std::string::npos && body_start <= text.size()) out.body = text.substr(body_start);
  return out;
}

// The suite's own inconsistencies (README): only the canonical request is checked.
const std::set<std::string> kCreqOnly = {"post-x-www-form-urlencoded", "post-x-www-form-urlencoded-parameters"};
const std::string kSuiteSessionToken = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";

}  // namespace

TEST_CASE("UriEncode keeps only unreserved characters", "[sigv4]") {
  CHECK(sigv4::UriEncode("AZaz09-._~") == "AZaz09-._~");
  CHECK(sigv4::UriEncode("a b+c/d=e&f*") == "a%20b%2Bc%2Fd%3De%26f%2A");
  CHECK(sigv4::UriEncode("/a b/", /*keep_slash=*/true) == "/a%20b/");
  CHECK(sigv4::UriEncode("\xe1\x88\xb4") == "%E1%88%B4");
  CHECK(sigv4::UriEncode("%20") == "%2520");
}

TEST_CASE("PercentDecode decodes escapes and keeps malformed ones", "[sigv4]") {
  CHECK(sigv4::PercentDecode("a%20b%2fc") == "a b/c");
  CHECK(sigv4::PercentDecode("a+b") == "a+b");
  CHECK(sigv4::PercentDecode("100%") == "100%");
  CHECK(sigv4::PercentDecode("%zz%4") == "%zz%4");
}

TEST_CASE("NormalizePath removes dot segments and duplicate slashes", "[sigv4]") {
  CHECK(sigv4::NormalizePath("") == "/");
  CHECK(sigv4::NormalizePath("/") == "/");
  CHECK(sigv4::NormalizePath("//") == "/");
  CHECK(sigv4::NormalizePath("/./") == "/");
  CHECK(sigv4::NormalizePath("/./example") == "/example");
  CHECK(sigv4::NormalizePath("//example//") == "/example/");
  CHECK(sigv4::NormalizePath("/example/..") == "/");
  CHECK(sigv4::NormalizePath("/a/b/../c") == "/a/c");
  CHECK(sigv4::NormalizePath("/a/b/..") == "/a/");
  CHECK(sigv4::NormalizePath("/../../a") == "/a");
  CHECK(sigv4::CanonicalUri("/a b/%41", /*normalize=*/true) == "/a%20b/%2541");
  CHECK(sigv4::CanonicalUri("//a//", /*normalize=*/false) == "//a//");
}

TEST_CASE("CanonicalQueryString sorts by encoded name then value", "[sigv4]") {
  CHECK(sigv4::CanonicalQueryString("") == "");
  CHECK(sigv4::CanonicalQueryString("b=2&a=1&a=0") == "a=0&a=1&b=2");
  CHECK(sigv4::CanonicalQueryString("flag") == "flag=");
  CHECK(sigv4::CanonicalQueryString("x=a+b&y=a%20b&z=%7e") == "x=a%2Bb&y=a%20b&z=~");
  // Upper case sorts before lower case (byte order of the encoded names).
  CHECK(sigv4::CanonicalQueryString("a=1&B=2") == "B=2&a=1");
}

TEST_CASE("CanonicalizeHeaders lower-cases, trims, collapses and joins repeats", "[sigv4]") {
  const sigv4::CanonicalHeaders h =
      sigv4::CanonicalizeHeaders({{"X-B", "  two   words "}, {"host", "h"}, {"X-b", "second"}, {"A", "\t1\t"}});
  CHECK(h.block == "a:1\nhost:h\nx-b:two words,second\n");
  CHECK(h.signed_headers == "a;host;x-b");
}

TEST_CASE("SigningKey matches AWS's documented example", "[sigv4]") {
  // docs.aws.amazon.com, "Create a signature" example (IAM, 20150830, us-east-1).
  CHECK(sigv4::HexEncode(sigv4::SigningKey(kSecret, "20150830", "us-east-1", "iam")) ==
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

TEST_CASE("AmzDate and CredentialScope format UTC", "[sigv4]") {
  CHECK(sigv4::AmzDate(SuiteTime()) == "20150830T123600Z");
  CHECK(sigv4::DateStamp(SuiteTime()) == "20150830");
  CHECK(sigv4::CredentialScope("20150830", "us-east-1", "sts") == "20150830/us-east-1/sts/aws4_request");
  CHECK(sigv4::Sha256Hex("") == sigv4::kEmptyPayloadSha256);
}

TEST_CASE("aws-sig-v4-test-suite, step by step and through Sign()", "[sigv4][suite]") {
  std::vector<fs::path> cases;
  for (const auto& entry : fs::recursive_directory_iterator(kSuiteDir)) {
    if (entry.path().extension() == ".req") cases.push_back(entry.path());
  }
  std::sort(cases.begin(), cases.end());
  REQUIRE(cases.size() == 33);

  for (const fs::path& req_path : cases) {
    const std::string name = req_path.stem().string();
    const fs::path dir = req_path.parent_path();
    DYNAMIC_SECTION(name) {
      SuiteRequest req = ParseReq(ReadFile(req_path));
      const std::string expected_creq = Chomp(ReadFile(dir / (name + ".creq")));
      const std::string expected_sts = Chomp(ReadFile(dir / (name + ".sts")));
      const std::string expected_authz = Chomp(ReadFile(dir / (name + ".authz")));
      pi::AwsCredentials credentials{kAccessKey, kSecret, "", std::nullopt, ""};
      if (name == "get-vanilla-with-session-token") {
        credentials.session_token = kSuiteSessionToken;
        req.headers.emplace_back("X-Amz-Security-Token", kSuiteSessionToken);
      }
      for (const auto& header : req.headers) {
        // post-sts-header-before carries the token in the request: Sign() adds it from the credentials.
        if (header.first == "X-Amz-Security-Token") credentials.session_token = header.second;
      }

      // Step 1: canonical request.
      const std::string creq =
          sigv4::CanonicalRequest(req.method, req.path, req.query, req.headers, sigv4::Sha256Hex(req.body));
      CHECK(creq == expected_creq);
      if (kCreqOnly.contains(name)) continue;

      // Step 2: string to sign.
      const std::string scope = sigv4::CredentialScope("20150830", "us-east-1", "service");
      const std::string sts = sigv4::StringToSign("20150830T123600Z", scope, creq);
      CHECK(sts == expected_sts);

      // Steps 3 and 4: signing key, signature, Authorization header.
      const std::string key = sigv4::SigningKey(kSecret, "20150830", "us-east-1", "service");
      const std::string authz = sigv4::AuthorizationHeader(
          kAccessKey, scope, sigv4::CanonicalizeHeaders(req.headers).signed_headers, sigv4::Signature(key, sts));
      CHECK(authz == expected_authz);

      // The same through Sign() on an HttpRequest (it sets X-Amz-Date and the token itself).
      pi::HttpRequest http;
      http.method = req.method;
      http.url = "https://example.amazonaws.com" + req.path + (req.query.empty() ? "" : "?" + req.query);
      for (const auto& header : req.headers) {
        if (header.first != "X-Amz-Security-Token") http.headers.push_back(header);
      }
      http.body = req.body;
      sigv4::SigningTrace trace;
      REQUIRE(sigv4::Sign(http, credentials, "us-east-1", "service", SuiteTime(), {}, &trace).ok());
      CHECK(trace.canonical_request == expected_creq);
      CHECK(trace.string_to_sign == expected_sts);
      CHECK(http.headers.back().first == "Authorization");
      CHECK(http.headers.back().second == expected_authz);
    }
  }
}

TEST_CASE("Sign adds Host, X-Amz-Date and the session token, and signs them", "[sigv4]") {
  pi::HttpRequest request;
  request.method = "POST";
  request.url = "https://sts.us-east-1.amazonaws.com/";
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                     {"User-Agent", "pod-identity"},
                     {"x-amz-date", "stale"}};
  request.body = "Action=AssumeRole";
  const pi::AwsCredentials credentials{"AKIDSESSION", kSecret, "the-session-token", std::nullopt, ""};
  REQUIRE(sigv4::Sign(request, credentials, "us-east-1", "sts", SuiteTime()).ok());

  auto header = [&](std::string_view name) {
    std::vector<std::string> values;
    for (const auto& [k, v] : request.headers) {
      std::string lower = k;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower == name) values.push_back(v);
    }
    return values;
  };
  CHECK(header("host") == std::vector<std::string>{"sts.us-east-1.amazonaws.com"});
  CHECK(header("x-amz-date") == std::vector<std::string>{"20150830T123600Z"});
  CHECK(header("x-amz-security-token") == std::vector<std::string>{"the-session-token"});
  CHECK(header("x-amz-content-sha256").empty());
  const auto authz = header("authorization");
  REQUIRE(authz.size() == 1);
  CHECK(authz[0].starts_with("AWS4-HMAC-SHA256 Credential=AKIDSESSION/20150830/us-east-1/sts/aws4_request, "
                             "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="));
  CHECK(authz[0].size() == std::string_view("AWS4-HMAC-SHA256 Credential=AKIDSESSION/20150830/us-east-1/sts/"
                                            "aws4_request, SignedHeaders=content-type;host;x-amz-date;"
                                            "x-amz-security-token, Signature=")
                                   .size() +
                               64);
  CHECK(authz[0].find(kSecret) == std::string::npos);

  // Signing again replaces the Authorization header instead of adding a second one.
  REQUIRE(sigv4::Sign(request, credentials, "us-east-1", "sts", SuiteTime()).ok());
  CHECK(header("authorization").size() == 1);
  CHECK(header("host").size() == 1);
}

TEST_CASE("Sign: Host for non-default ports and IPv6 literals, optional content hash", "[sigv4]") {
  const pi::AwsCredentials credentials{kAccessKey, kSecret, "", std::nullopt, ""};
  pi::HttpRequest v6;
  v6.url = "http://[::1]:8080/x?b=1&a=2";
  sigv4::SignOptions options;
  options.add_content_sha256 = true;
  sigv4::SigningTrace trace;
  REQUIRE(sigv4::Sign(v6, credentials, "us-east-1", "s3", SuiteTime(), options, &trace).ok());
  CHECK(trace.canonical_request.find("\n/x\na=2&b=1\n") != std::string::npos);
  CHECK(trace.canonical_request.find("host:[::1]:8080\n") != std::string::npos);
  CHECK(trace.canonical_request.find("x-amz-content-sha256:" + std::string(sigv4::kEmptyPayloadSha256)) !=
        std::string::npos);

  pi::HttpRequest plain;
  plain.url = "https://example.com:443/";
  REQUIRE(sigv4::Sign(plain, credentials, "us-east-1", "service", SuiteTime(), {}, &trace).ok());
  CHECK(trace.canonical_request.find("host:example.com\n") != std::string::npos);
  CHECK(trace.canonical_request.find("x-amz-security-token") == std::string::npos);
}

TEST_CASE("Sign rejects empty credentials and bad URLs without leaking secrets", "[sigv4]") {
  pi::HttpRequest request;
  request.url = "https://example.com/";
  pi::Status s = sigv4::Sign(request, pi::AwsCredentials{"AKID", "", "", std::nullopt, ""}, "us-east-1", "sts",
                             SuiteTime());
  CHECK(s.code() == pi::StatusCode::kInvalidArgument);
  request.url = "ftp://example.com/";
  s = sigv4::Sign(request, pi::AwsCredentials{"AKID", kSecret, "", std::nullopt, ""}, "us-east-1", "sts", SuiteTime());
  CHECK(s.code() == pi::StatusCode::kInvalidArgument);
  CHECK(s.message().find(kSecret) == std::string::npos);
}
