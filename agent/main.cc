// pod-identity-agent: wiring only. `pod-identity-agent setup-link ...` is the
// DaemonSet's init step; without a subcommand the agent serves credentials: flags ->
// config; associations, keys and the agent's own AWS identity are set up (a failure
// exits 1 before anything listens); the listeners run until SIGTERM or SIGINT, then the
// requests in flight finish and the process exits 0.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "podidentity/associations.h"
#include "podidentity/clock.h"
#include "podidentity/credential_cache.h"
#include "podidentity/exchange.h"
#include "podidentity/log.h"
#include "podidentity/metrics.h"
#include "rate_limiter.h"
#include "server.h"
#include "setup_link.h"
#include "wiring.h"

namespace pi = podidentity;
namespace ag = podidentity::agent;

namespace {

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    // Accept "[fd00:ec2::23]" as well as "fd00:ec2::23".
    if (item.size() > 2 && item.front() == '[' && item.back() == ']') item = item.substr(1, item.size() - 2);
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

// "3h", "30m", "90s" or plain seconds; nullopt when malformed.
std::optional<int> ParseDurationSeconds(const std::string& text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  int unit = 1;
  std::string digits = text;
  switch (text.back()) {
    case 'h': unit = 3600, digits.pop_back(); break;
    case 'm': unit = 60, digits.pop_back(); break;
    case 's': digits.pop_back(); break;
    default: break;
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoi(digits) * unit;
}

int StartupError(std::string_view what, const pi::Status& status) {
  pi::log::Error(what, {{"error", status.message()}});
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  ag::AgentConfig config;
  std::string bind_hosts = "169.254.170.23,fd00:ec2::23";
  if (const char* cluster = std::getenv("CLUSTER_NAME")) config.cluster_name = cluster;

  CLI::App app{"pod-identity-agent: the node-local EKS Pod Identity credentials endpoint "
               "(GET /v1/credentials with the pod's projected token).",
               "pod-identity-agent"};
  app.add_option("--cluster-name", config.cluster_name, "Cluster name (session tags, session names, EKS Auth)");
  app.add_option("--cluster-arn", config.cluster_arn, "Cluster ARN for the eks-cluster-arn session tag");
  app.add_option("--bind-hosts", bind_hosts, "Comma-separated addresses to serve credentials on")
      ->capture_default_str();
  app.add_option("--port", config.port, "Credentials port (0: ephemeral, logged)")->capture_default_str();
  app.add_option("--probe-host", config.probe_host, "Address of /healthz and /readyz")->capture_default_str();
  app.add_option("--probe-port", config.probe_port, "Port of /healthz and /readyz")->capture_default_str();
  app.add_option("--metrics-host", config.metrics_host, "Address of /metrics")->capture_default_str();
  app.add_option("--metrics-port", config.metrics_port, "Port of /metrics")->capture_default_str();
  app.add_option("--threads", config.threads, "Most connections served at once per credentials listener (a thread each, started on demand)")->capture_default_str();
  app.add_option("--event-loops", config.event_loops,
                 "Event loops per credentials listener (epoll; cache hits answered on the loop, the rest on up to "
                 "--threads workers); 0: cpp-httplib, a thread per connection")
      ->capture_default_str();
  app.add_option("--read-timeout", config.read_timeout_seconds, "Read timeout in seconds")->capture_default_str();
  app.add_option("--write-timeout", config.write_timeout_seconds, "Write timeout in seconds")->capture_default_str();
  app.add_option("--rate-limit", config.rate_limit, "Requests per second per client (0: off)")->capture_default_str();
  app.add_option("--rate-burst", config.rate_burst, "Burst per client")->capture_default_str();
  app.add_option("--associations", config.associations_file, "Associations YAML file, reloaded on change");
  app.add_option("--reload-interval-ms", config.reload_interval_ms, "How often to check the associations file")
      ->capture_default_str();
  app.add_option("--issuer", config.issuer, "Service-account token issuer (the API server's --service-account-issuer)");
  app.add_option("--audience", config.audience, "Required token audience")->capture_default_str();
  app.add_option("--jwks-file", config.jwks_file, "JWKS file with the service-account signing keys");
  app.add_option("--jwks-url", config.jwks_url, "JWKS URL, e.g. https://kubernetes.default.svc/openid/v1/jwks");
  app.add_option("--jwks-refresh-interval", config.jwks_refresh_seconds, "JWKS refresh interval in seconds")
      ->capture_default_str();
  app.add_option("--api-ca-file", config.api_ca_file, "CA of the API server (for --jwks-url / --token-review-url)")
      ->capture_default_str();
  app.add_option("--api-token-file", config.api_token_file, "The agent's own service-account token")
      ->capture_default_str();
  app.add_option("--token-review-url", config.token_review_url,
                 "Verify tokens with TokenReview at this URL instead of local JWKS checks");
  app.add_option("--broker", config.broker, "sts (any cluster) or eks-auth (EKS)")->capture_default_str();
  app.add_option("--region", config.region, "AWS region (default: AWS_REGION)");
  app.add_option("--sts-endpoint", config.sts_endpoint, "STS endpoint override");
  app.add_option("--endpoint", config.eks_auth_endpoint, "EKS Auth endpoint override");
  app.add_option("--upstream-ca-file", config.upstream_ca_file, "Extra CA bundle for the STS / EKS Auth endpoint");
  app.add_option("--max-cache-size", config.max_cache_size, "Credential cache entries")->capture_default_str();
  std::string max_retention = "3h";
  app.add_option("--max-credential-retention-before-renewal", max_retention,
                 "Renew cached credentials at most this long after fetching them (e.g. 3h, 30m, 90s)")
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "debug, info, warn or error")->capture_default_str();

  std::string link = "pod-id-link";
  std::vector<std::string> addresses;
  CLI::App* setup_link = app.add_subcommand(
      "setup-link", "Create a dummy link with the agent's link-local addresses (the DaemonSet's init step)");
  setup_link->add_option("--link", link, "Link name")->capture_default_str();
  setup_link->add_option("--address", addresses, "Address with prefix length, repeatable (e.g. 169.254.170.23/32)")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  pi::log::Level level;
  if (!pi::log::ParseLevel(config.log_level, &level)) {
    std::fprintf(stderr, "--log-level: must be debug, info, warn or error\n");
    return 2;
  }
  pi::log::SetMinLevel(level);

  if (setup_link->parsed()) {
    const pi::Status status = ag::SetupLink(link, addresses);
    if (!status.ok()) {
      pi::log::Error("setup-link failed", {{"error", status.message()}});
      return status.code() == pi::StatusCode::kInvalidArgument ? 2 : 1;
    }
    return 0;
  }

  config.bind_hosts = SplitList(bind_hosts);
  if (std::optional<int> seconds = ParseDurationSeconds(max_retention)) {
    config.max_retention_seconds = *seconds;
  } else {
    std::fprintf(stderr, "--max-credential-retention-before-renewal: a duration such as 3h, 30m or 90s\n");
    return 2;
  }
  if (config.region.empty()) {
    if (const char* region = std::getenv("AWS_REGION")) config.region = region;
  }
  if (const pi::Status valid = config.Validate(); !valid.ok()) {
    std::fprintf(stderr, "pod-identity-agent: %s\nRun with --help for more information.\n", valid.message().c_str());
    return 2;
  }

  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  config.LogSettings();
  pi::MetricsRegistry registry;
  const pi::Clock& clock = pi::SystemClock::Instance();

  // Associations: the same file and reload rules as the webhook.
  auto& reloads = registry.AddCounter("pod_identity_agent_association_reloads_total",
                                      "Association file reloads by result.", {"result"});
  auto& loaded = registry.AddGauge("pod_identity_agent_associations", "Associations loaded.");
  std::unique_ptr<pi::AssociationStore> associations;
  if (!config.associations_file.empty()) {
    associations = std::make_unique<pi::AssociationStore>(
        config.associations_file,
        [&reloads, &loaded](pi::AssociationStore::ReloadResult result, const pi::Status& status, size_t count) {
          if (result == pi::AssociationStore::ReloadResult::kReloaded) {
            reloads.With({"success"}).Inc();
            loaded.With({}).Set(static_cast<double>(count));
            pi::log::Info("associations reloaded", {{"associations", static_cast<int64_t>(count)}});
          } else if (result == pi::AssociationStore::ReloadResult::kFailed) {
            reloads.With({"failed"}).Inc();
            pi::log::Error("associations not reloaded; keeping the last good ones", {{"error", status.message()}});
          }
        });
    if (const pi::Status status = associations->Load(); !status.ok()) {
      return StartupError("cannot load the associations", status);
    }
    const auto snapshot = associations->Current();
    loaded.With({}).Set(static_cast<double>(snapshot->size()));
    if (config.cluster_name.empty()) config.cluster_name = snapshot->cluster_name();
    associations->Start(std::chrono::milliseconds(config.reload_interval_ms));
  }

  // Token verification, the agent's own AWS identity and the broker.
  pi::StatusOr<std::unique_ptr<ag::Wiring>> wiring = ag::Wiring::Create(config, clock, registry);
  if (!wiring.ok()) return StartupError("cannot start", wiring.status());

  pi::CredentialCacheOptions cache_options;
  cache_options.max_entries = config.max_cache_size;
  cache_options.max_retention = std::chrono::seconds(config.max_retention_seconds);
  pi::CredentialCache cache(clock, cache_options);
  pi::ExchangeOptions exchange_options;
  exchange_options.require_association = config.broker == "sts" || associations != nullptr;
  pi::Exchange exchange(associations.get(), (*wiring)->verifier(), (*wiring)->broker(), cache, exchange_options);

  std::vector<std::string> served = config.bind_hosts;
  ag::CredentialHandler handler(exchange, ag::HostPolicy(served));
  ag::RateLimiter limiter(clock, {config.rate_limit, config.rate_burst, 10000});
  ag::AgentServer server(config.ToServerOptions(), handler, limiter, registry, [&associations, &wiring] {
    return (associations == nullptr || associations->loaded()) && (*wiring)->ready();
  });
  if (const pi::Status status = server.Start(); !status.ok()) {
    server.Stop();
    return StartupError("cannot listen", status);
  }
  pi::log::Info("ready", {{"broker", config.broker}});

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  pi::log::Info("stopping: finishing requests in flight", {{"signal", signal_number}});
  server.Stop();
  if (associations) associations->Stop();
  (*wiring)->Stop();
  pi::log::Info("stopped");
  return 0;
}
