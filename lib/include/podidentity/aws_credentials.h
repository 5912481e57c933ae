// The agent's own AWS credentials (the identity that calls STS / EKS Auth): a provider
// interface and the default chain (environment, shared credentials file + profile, web
// identity token file, EC2 IMDSv2), first that works wins, refreshed before expiry.
// Providers read configuration through an injected EnvLookup and talk to AWS through
// the HttpClient interface, so every one of them is testable without the process
// environment or a network. No error message ever contains a secret or a token.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "podidentity/aws_types.h"
#include "podidentity/clock.h"
#include "podidentity/http_client.h"
#include "podidentity/status.h"

namespace podidentity {

// Thread-safety: implementations are thread-safe.
//
// Error convention used by the chain: kNotFound means "this source is not configured
// here" (e.g. the variables are unset), so the chain moves on quietly; any other code
// means the source is configured but failed.
class AwsCredentialsProvider {
 public:
  virtual ~AwsCredentialsProvider() = default;
  virtual StatusOr<AwsCredentials> GetCredentials() = 0;
};

// Always the same credentials (tests, and the building block of the chain).
class StaticCredentialsProvider final : public AwsCredentialsProvider {
 public:
  explicit StaticCredentialsProvider(AwsCredentials credentials) : credentials_(std::move(credentials)) {}
  StatusOr<AwsCredentials> GetCredentials() override { return credentials_; }

 private:
  const AwsCredentials credentials_;
};

// Reads an environment variable: nullopt when unset. The process environment in
// production (ProcessEnvironment()), a map in tests.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
// std::getenv. Thread-safe as long as nothing calls setenv/putenv concurrently.
EnvLookup ProcessEnvironment();

// AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ optional AWS_SESSION_TOKEN), read on
// every call. Not configured (kNotFound) when either of the first two is unset or
// empty. The credentials have no expiration. Thread-safe (immutable).
class EnvironmentCredentialsProvider final : public AwsCredentialsProvider {
 public:
  explicit EnvironmentCredentialsProvider(EnvLookup env) : env_(std::move(env)) {}
  StatusOr<AwsCredentials> GetCredentials() override;

 private:
  const EnvLookup env_;
};

// One profile of an AWS shared credentials file (INI):
//  - "[name]" starts a profile (whitespace inside the brackets is trimmed; a repeated
//    section continues the same profile, later keys win);
//  - "key = value" sets a property; keys are case-insensitive, whitespace around key
//    and value is trimmed;
//  - lines starting with '#' or ';' are comments, and so is the rest of a line from a
//    '#' or ';' that follows whitespace (an inline comment);
//  - indented lines following a property with an empty value are that property's
//    sub-properties (e.g. "s3 =\n  max_concurrent_requests = 10") and are ignored.
// Reads aws_access_key_id, aws_secret_access_key and aws_session_token. Errors name the
// line number, never the line's content.
struct SharedCredentialsProfile {
  bool found = false;  // the profile's section exists
  AwsCredentials credentials;
};
StatusOr<SharedCredentialsProfile> ParseSharedCredentials(std::string_view text, std::string_view profile,
                                                          std::string_view source_name);

// The shared credentials file: AWS_SHARED_CREDENTIALS_FILE, else $HOME/.aws/credentials;
// profile AWS_PROFILE, else "default". Read on every call. Not configured (kNotFound)
// when the file or the profile does not exist; kInvalidArgument when the file is
// malformed or the profile lacks a key. Thread-safe (immutable).
class SharedFileCredentialsProvider final : public AwsCredentialsProvider {
 public:
  explicit SharedFileCredentialsProvider(EnvLookup env) : env_(std::move(env)) {}
  StatusOr<AwsCredentials> GetCredentials() override;

 private:
  const EnvLookup env_;
};

struct WebIdentityOptions {
  // STS endpoint (scheme://host[:port]); empty: https://sts.<region>.amazonaws.com
  // (".amazonaws.com.cn" for cn-* regions), or https://sts.amazonaws.com without a region.
  std::string sts_endpoint;
  // Empty: AWS_REGION, else AWS_DEFAULT_REGION.
  std::string region;
  std::chrono::milliseconds timeout{10000};
};

// AssumeRoleWithWebIdentity with AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (+ optional
// AWS_ROLE_SESSION_NAME, default "pod-identity-agent-<unix seconds>"). The request is an
// unsigned form POST (the token is the proof); the token file is read on every call
// because Kubernetes rotates it. Not configured (kNotFound) when either variable is
// unset. STS errors map to codes as StsErrorToStatus (sts_client.h) documents, e.g.
// AccessDenied -> kPermissionDenied, InvalidIdentityToken / ExpiredTokenException /
// IDPRejectedClaim -> kUnauthenticated, throttling -> kResourceExhausted, 5xx ->
// kUnavailable; transport failures -> kUnavailable (kDeadlineExceeded on a timeout).
// Thread-safety: thread-safe (immutable; the HttpClient is thread-safe).
class WebIdentityCredentialsProvider final : public AwsCredentialsProvider {
 public:
  WebIdentityCredentialsProvider(HttpClient& http, const Clock& clock, EnvLookup env, WebIdentityOptions options = {});
  StatusOr<AwsCredentials> GetCredentials() override;

 private:
  HttpClient& http_;
  const Clock& clock_;
  const EnvLookup env_;
  const WebIdentityOptions options_;
};

// The pure part of the web identity call, exposed for tests (the form body is
// EncodeAssumeRoleWithWebIdentityForm in sts_client.h). Parses STS's answer with the
// sts_client parsers:
//  - an error (HTTP status not 200, or an error document even with 200):
//    "STS AssumeRoleWithWebIdentity failed: HTTP <status>[ <Code>[: <Message>]]", the
//    message cut to 512 characters; the code is StsErrorToStatus's, kInternal for a 200;
//  - success: ParseAssumeRoleResponse's credentials (account id from the assumed-role
//    ARN, else from `role_arn`); a malformed document is kInternal, prefixed
//    "STS AssumeRoleWithWebIdentity: ".
// No message quotes a credential or the token.
StatusOr<AwsCredentials> ParseAssumeRoleWithWebIdentityResponse(int http_status, std::string_view body,
                                                                std::string_view role_arn = {});

struct ImdsOptions {
  // Empty: AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254.
  std::string endpoint;
  // Each IMDS call; short because off EC2 nothing answers and the chain must move on.
  std::chrono::milliseconds timeout{1000};
};

// EC2 instance profile credentials over IMDSv2: PUT /latest/api/token (TTL 21600 s),
// then GET /latest/meta-data/iam/security-credentials/ for the role name and
// GET .../<role> for the credentials, both with X-aws-ec2-metadata-token. No IMDSv1
// fallback. Not configured (kNotFound) when AWS_EC2_METADATA_DISABLED=true or the
// instance has no role; IMDS unreachable -> kUnavailable.
// Thread-safety: thread-safe (immutable; the HttpClient is thread-safe).
class ImdsCredentialsProvider final : public AwsCredentialsProvider {
 public:
  ImdsCredentialsProvider(HttpClient& http, EnvLookup env, ImdsOptions options = {});
  StatusOr<AwsCredentials> GetCredentials() override;

 private:
  HttpClient& http_;
  const EnvLookup env_;
  const ImdsOptions options_;
};

// Tries providers in order; the first that returns credentials wins and is remembered:
// later calls go straight to it (and return its errors rather than silently switching
// to a different identity). When none works, the error lists each provider's name and
// reason; its code is kFailedPrecondition when no provider is configured at all
// (every reason kNotFound), else kUnavailable.
// Thread-safety: thread-safe; mu_ guards winner_.
class ChainCredentialsProvider final : public AwsCredentialsProvider {
 public:
  struct Link {
    std::string name;  // used in error messages, e.g. "environment"
    std::unique_ptr<AwsCredentialsProvider> provider;
  };
  explicit ChainCredentialsProvider(std::vector<Link> links) : links_(std::move(links)) {}
  StatusOr<AwsCredentials> GetCredentials() override;

 private:
  const std::vector<Link> links_;
  std::mutex mu_;
  std::optional<size_t> winner_;  // guarded by mu_
};

struct RefreshingCredentialsOptions {
  // Credentials are renewed this long before they expire.
  std::chrono::seconds refresh_before{5 * 60};
  // After a renewal attempt, the next one waits this long while the cached credentials
  // are still valid, so a failing source (or one handing out short-lived credentials)
  // is not called on every request.
  std::chrono::seconds retry_interval{10};
};

// Caches another provider's credentials. Credentials without an expiration are kept
// forever; others are renewed from refresh_before ahead of their expiration. One call
// to the inner provider at a time (single flight): while a renewal is in flight, other
// callers get the cached credentials if they have not expired yet, else they wait for
// that call's result. A failed renewal keeps serving unexpired credentials (and backs
// off retry_interval); expired credentials are never returned.
// Thread-safety: thread-safe; mu_ guards cached_, next_attempt_at_ and flight_.
class RefreshingCredentialsProvider final : public AwsCredentialsProvider {
 public:
  RefreshingCredentialsProvider(std::unique_ptr<AwsCredentialsProvider> inner, const Clock& clock,
                                RefreshingCredentialsOptions options = {});
  StatusOr<AwsCredentials> GetCredentials() override;

 private:
  struct Flight {
    bool done = false;
    std::optional<StatusOr<AwsCredentials>> result;
  };

  const std::unique_ptr<AwsCredentialsProvider> inner_;
  const Clock& clock_;
  const RefreshingCredentialsOptions options_;
  std::mutex mu_;
  std::condition_variable flight_done_;
  std::optional<AwsCredentials> cached_;                      // guarded by mu_
  std::chrono::system_clock::time_point next_attempt_at_{};  // guarded by mu_
  std::shared_ptr<Flight> flight_;                            // guarded by mu_; non-null while fetching
};

struct DefaultChainOptions {
  WebIdentityOptions web_identity;
  ImdsOptions imds;
  RefreshingCredentialsOptions refresh;
};

// Refreshing(Chain(environment, shared file, web identity, IMDSv2)): the order the AWS
// SDKs use. Nothing is read until the first GetCredentials(). `http`, `clock` and
// whatever `env` refers to must outlive the provider.
std::unique_ptr<AwsCredentialsProvider> MakeDefaultCredentialsChain(HttpClient& http, const Clock& clock,
                                                                    EnvLookup env,
                                                                    DefaultChainOptions options = {});

}  // namespace podidentity
