#include "config.h"

#include "podidentity/log.h"

namespace podidentity::agent {
namespace {

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) out += (out.empty() ? "" : ",") + part;
  return out;
}

bool ValidPort(int port, bool allow_zero) { return (allow_zero ? port >= 0 : port > 0) && port <= 65535; }

}  // namespace

Status AgentConfig::Validate() const {
  if (broker != "sts" && broker != "eks-auth") return InvalidArgumentError("--broker must be sts or eks-auth");
  if (bind_hosts.empty()) return InvalidArgumentError("--bind-hosts: at least one address");
  if (!ValidPort(port, true) || !ValidPort(probe_port, true) || !ValidPort(metrics_port, true)) {
    return InvalidArgumentError("--port, --probe-port, --metrics-port must be within 0..65535");
  }
  if (threads < 1 || threads > 1024) return InvalidArgumentError("--threads must be within 1..1024");
  if (event_loops < 0 || event_loops > 64) return InvalidArgumentError("--event-loops must be within 0..64");
  if (read_timeout_seconds < 1 || write_timeout_seconds < 1) {
    return InvalidArgumentError("--read-timeout and --write-timeout must be at least 1 s");
  }
  if (reload_interval_ms < 100) return InvalidArgumentError("--reload-interval-ms must be at least 100");
  if (max_cache_size < 1) return InvalidArgumentError("--max-cache-size must be at least 1");
  if (max_retention_seconds < 1) {
    return InvalidArgumentError("--max-credential-retention-before-renewal must be at least 1s");
  }
  if (rate_limit < 0 || rate_burst < 1) return InvalidArgumentError("--rate-limit >= 0 and --rate-burst >= 1");
  if (audience.empty()) return InvalidArgumentError("--audience must not be empty");
  const int sources = !jwks_file.empty() + !jwks_url.empty() + !token_review_url.empty();
  if (sources != 1) {
    return InvalidArgumentError("exactly one of --jwks-file, --jwks-url or --token-review-url is required");
  }
  if (token_review_url.empty() && issuer.empty()) {
    return InvalidArgumentError("--issuer is required with --jwks-file / --jwks-url (the API server's "
                                "--service-account-issuer)");
  }
  if (broker == "sts" && associations_file.empty()) {
    return InvalidArgumentError("--associations is required with --broker=sts");
  }
  if (broker == "eks-auth" && cluster_name.empty()) {
    return InvalidArgumentError("--cluster-name is required with --broker=eks-auth");
  }
  return Status::Ok();
}

void AgentConfig::LogSettings() const {
  log::Info("settings", {{"cluster_name", cluster_name},
                         {"cluster_arn", cluster_arn},
                         {"bind_hosts", Join(bind_hosts)},
                         {"port", port},
                         {"probe_port", probe_port},
                         {"metrics_port", metrics_port},
                         {"threads", threads},
                         {"event_loops", event_loops},
                         {"rate_limit", rate_limit},
                         {"associations", associations_file},
                         {"issuer", issuer},
                         {"audience", audience},
                         {"jwks_file", jwks_file},
                         {"jwks_url", jwks_url},
                         {"token_review_url", token_review_url},
                         {"broker", broker},
                         {"region", region},
                         {"sts_endpoint", sts_endpoint},
                         {"eks_auth_endpoint", eks_auth_endpoint},
                         {"max_cache_size", static_cast<int64_t>(max_cache_size)},
                         {"max_retention_seconds", max_retention_seconds}});
}

ServerOptions AgentConfig::ToServerOptions() const {
  ServerOptions options;
  for (const std::string& host : bind_hosts) options.credentials.push_back({host, port});
  options.probes = {probe_host, probe_port};
  options.metrics = {metrics_host, metrics_port};
  options.threads = threads;
  options.event_loops = event_loops;
  options.read_timeout_seconds = read_timeout_seconds;
  options.write_timeout_seconds = write_timeout_seconds;
  return options;
}

}  // namespace podidentity::agent
