#include "wiring.h"

#include <chrono>

#include "agent_credentials.h"
#include "podidentity/aws_credentials.h"
#include "podidentity/eks_auth_client.h"
#include "podidentity/http_client.h"
#include "podidentity/jwt_verifier.h"
#include "podidentity/key_source.h"
#include "podidentity/log.h"
#include "podidentity/random.h"
#include "podidentity/sts_client.h"
#include "token_verifier.h"

namespace podidentity::agent {
namespace {

constexpr size_t kMaxTokenBytes = 6 * 1024;

// Names a broker failure for logs, metrics and the error body: "broker_" + the category,
// with the upstream's own code (e.g. "AccessDenied") kept in the message.
std::string BrokerReason(StatusCode code) {
  switch (code) {
    case StatusCode::kPermissionDenied: return "broker_access_denied";
    case StatusCode::kUnauthenticated: return "broker_invalid_token";
    case StatusCode::kResourceExhausted: return "broker_throttled";
    case StatusCode::kNotFound: return "broker_not_found";
    case StatusCode::kFailedPrecondition: return "broker_rejected";
    case StatusCode::kDeadlineExceeded: return "broker_timeout";
    case StatusCode::kUnavailable: return "broker_unavailable";
    default: return "broker_error";
  }
}

// STS AssumeRole with EKS Pod Identity's session name and tags. Thread-safe.
class StsBroker final : public CredentialBroker {
 public:
  StsBroker(HttpClient& http, AwsCredentialsProvider& credentials, StsOptions options, ClusterInfo cluster)
      : client_(http, credentials, std::move(options)), cluster_(std::move(cluster)) {}

  std::variant<AwsCredentials, ExchangeError> Fetch(const PodIdentity& pod, const Association* association,
                                                    std::string_view /*token*/) override {
    // The exchange never calls the STS broker without an association.
    if (association == nullptr) return ExchangeError{InternalError("no association"), "internal_error", 0};
    StsCallInfo info;
    StatusOr<AwsCredentials> credentials = client_.AssumeRoleForPod(pod, *association, cluster_, &info);
    if (!credentials.ok()) {
      return ExchangeError{credentials.status(), BrokerReason(credentials.status().code()), info.http_status};
    }
    return std::move(credentials).value();
  }
  std::string_view name() const override { return "sts"; }

 private:
  StsClient client_;
  const ClusterInfo cluster_;
};

// EKS Auth AssumeRoleForPodIdentity: EKS checks the token and picks the role. Thread-safe.
class EksAuthBroker final : public CredentialBroker {
 public:
  EksAuthBroker(HttpClient& http, AwsCredentialsProvider& credentials, EksAuthOptions options)
      : client_(http, credentials, std::move(options)) {}

  std::variant<AwsCredentials, ExchangeError> Fetch(const PodIdentity& /*pod*/, const Association* /*association*/,
                                                    std::string_view token) override {
    EksAuthCallInfo info;
    StatusOr<EksAuthResult> result = client_.AssumeRoleForPodIdentity(token, &info);
    if (!result.ok()) return ExchangeError{result.status(), BrokerReason(result.status().code()), info.http_status};
    return std::move(result).value().credentials;
  }
  std::string_view name() const override { return "eks-auth"; }

 private:
  EksAuthClient client_;
};

class AgentWiring final : public Wiring {
 public:
  PodTokenVerifier& verifier() override { return *pod_verifier_; }
  CredentialBroker& broker() override { return *broker_; }
  bool ready() const override { return jwks_ == nullptr || jwks_->Current() != nullptr; }
  void Stop() override {
    if (jwks_ != nullptr) jwks_->Stop();
  }

  // Owned collaborators, in construction order (destroyed in reverse).
  std::unique_ptr<HttpClient> api_http_;       // to the API server (its CA)
  std::unique_ptr<HttpClient> upstream_http_;  // to STS / EKS Auth (system CAs + --upstream-ca-file)
  std::unique_ptr<RefreshingJwksSource> jwks_;
  std::unique_ptr<ServiceAccountTokenVerifier> token_verifier_;
  std::unique_ptr<PodTokenVerifier> pod_verifier_;
  std::unique_ptr<AwsCredentialsProvider> credentials_;
  std::unique_ptr<CredentialBroker> broker_;
};

}  // namespace

StatusOr<std::unique_ptr<Wiring>> Wiring::Create(const AgentConfig& config, const Clock& clock,
                                                  MetricsRegistry& metrics) {
  auto wiring = std::make_unique<AgentWiring>();
  auto& jwks_refreshes = metrics.AddCounter("pod_identity_agent_jwks_refreshes_total",
                                            "JWKS refreshes by trigger and result.", {"trigger", "result"});

  // Token verification: local JWKS (file or the API server's /openid/v1/jwks), or TokenReview.
  if (!config.token_review_url.empty() || !config.jwks_url.empty()) {
    HttpClientOptions api;
    api.ca_file = config.api_ca_file;
    wiring->api_http_ = MakeHttpClient(api);
  }
  RefreshingJwksSourceOptions refresh;
  refresh.refresh_interval = std::chrono::seconds(config.jwks_refresh_seconds);
  refresh.observer = [&jwks_refreshes](JwksRefreshTrigger trigger, JwksRefreshResult result, const Status& status) {
    jwks_refreshes.With({std::string(JwksRefreshTriggerName(trigger)), std::string(JwksRefreshResultName(result))})
        .Inc();
    if (result == JwksRefreshResult::kFailed) log::Warn("JWKS refresh failed", {{"error", status.message()}});
  };
  if (!config.jwks_file.empty()) {
    wiring->jwks_ = std::make_unique<FileJwksSource>(config.jwks_file, clock, refresh);
  } else if (!config.jwks_url.empty()) {
    UrlJwksSourceOptions url;
    url.url = config.jwks_url;
    url.bearer_token_file = config.api_token_file;
    url.refresh = refresh;
    wiring->jwks_ = std::make_unique<UrlJwksSource>(*wiring->api_http_, clock, url);
  }
  if (wiring->jwks_ != nullptr) {
    if (Status status = wiring->jwks_->Load(); !status.ok()) {
      // A file must be readable at start; the API server may come later (not ready until then).
      if (!config.jwks_file.empty()) return Status(status.code(), "--jwks-file: " + status.message());
      log::Warn("JWKS not loaded yet; not ready until it is", {{"error", status.message()}});
    }
    wiring->jwks_->Start();
    JwtVerifierOptions options;
    options.issuer = config.issuer;
    options.audience = config.audience;
    // cpp-httplib refuses requests whose headers exceed 8 KiB before the handler runs;
    // a limit below that gives oversized tokens their own reason code. Projected
    // service-account tokens are 1-2 KiB.
    options.max_token_bytes = kMaxTokenBytes;
    auto& verified = metrics.AddCounter("pod_identity_agent_token_verifications_total",
                                        "Tokens that verified locally, by source: signature (full check) or "
                                        "cache (the verified-token cache).",
                                        {"source"});
    Counter& by_signature = verified.With({"signature"});
    Counter& by_cache = verified.With({"cache"});
    options.on_success = [&by_signature, &by_cache](bool from_cache) { (from_cache ? by_cache : by_signature).Inc(); };
    wiring->token_verifier_ = std::make_unique<JwtVerifier>(*wiring->jwks_, clock, options);
  } else {
    TokenReviewVerifierOptions options;
    options.url = config.token_review_url;
    options.audience = config.audience;
    options.bearer_token_file = config.api_token_file;
    options.max_token_bytes = kMaxTokenBytes;
    wiring->token_verifier_ = std::make_unique<TokenReviewVerifier>(*wiring->api_http_, clock, options);
  }
  wiring->pod_verifier_ = std::make_unique<PodTokenVerifierAdapter>(*wiring->token_verifier_);

  // The agent's own AWS identity and the broker.
  HttpClientOptions upstream;
  upstream.ca_file = config.upstream_ca_file;
  wiring->upstream_http_ = MakeHttpClient(upstream);
  StatusOr<std::unique_ptr<AwsCredentialsProvider>> credentials =
      MakeAgentCredentials(*wiring->upstream_http_, clock, config.region);
  if (!credentials.ok()) return credentials.status();
  wiring->credentials_ = std::move(credentials).value();

  if (config.broker == "sts") {
    StsOptions options;
    options.region = config.region;
    options.endpoint = config.sts_endpoint;
    options.clock = &clock;
    wiring->broker_ = std::make_unique<StsBroker>(*wiring->upstream_http_, *wiring->credentials_, options,
                                                  ClusterInfo{config.cluster_name, config.cluster_arn});
  } else {
    EksAuthOptions options;
    options.region = config.region;
    options.endpoint = config.eks_auth_endpoint;
    options.cluster_name = config.cluster_name;
    options.clock = &clock;
    wiring->broker_ = std::make_unique<EksAuthBroker>(*wiring->upstream_http_, *wiring->credentials_, options);
  }
  return std::unique_ptr<Wiring>(std::move(wiring));
}

}  // namespace podidentity::agent
