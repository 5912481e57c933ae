// AgentConfig: every setting of pod-identity-agent, filled from flags (names mirror
// EKS's eks-pod-identity-agent where they overlap), validated once, printed at start.
// Nothing secret lives here: the agent's own AWS credentials come from the default
// chain, never from flags.
#pragma once

#include <string>
#include <vector>

#include "podidentity/status.h"
#include "server.h"

namespace podidentity::agent {

struct AgentConfig {
  // Identity of the cluster (session tags eks-cluster-name / eks-cluster-arn, role
  // session names, and the EKS Auth request path).
  std::string cluster_name;          // --cluster-name; falls back to the file's clusterName
  std::string cluster_arn;           // --cluster-arn; the eks-cluster-arn tag when set
  // Listeners.
  std::vector<std::string> bind_hosts{"169.254.170.23", "fd00:ec2::23"};  // --bind-hosts
  int port = 80;                     // --port
  std::string probe_host = "0.0.0.0";  // --probe-host (kubelet probes a hostNetwork pod on the node IP)
  int probe_port = 2703;             // --probe-port
  std::string metrics_host = "0.0.0.0";  // --metrics-host
  int metrics_port = 2705;           // --metrics-port
  int threads = 256;                 // --threads, most connections per credentials listener
  // --event-loops: epoll event loops per credentials listener (cache hits answered on the
  // loop, other requests on up to --threads workers); 0 = cpp-httplib, a thread per
  // connection.
  int event_loops = kDefaultEventLoops;
  static constexpr int kDefaultEventLoops = 2;
  int read_timeout_seconds = 5;      // --read-timeout
  int write_timeout_seconds = 5;     // --write-timeout
  double rate_limit = 20;            // --rate-limit: requests/s per client (0: off)
  double rate_burst = 60;            // --rate-burst
  // Associations (the same file as the webhook).
  std::string associations_file;     // --associations; required for --broker=sts
  int reload_interval_ms = 2000;     // --reload-interval-ms
  // Token verification.
  std::string issuer;                // --issuer: the API server's service-account issuer
  std::string audience = "pods.eks.amazonaws.com";  // --audience
  std::string jwks_file;             // --jwks-file
  std::string jwks_url;              // --jwks-url (e.g. https://kubernetes.default.svc/openid/v1/jwks)
  std::string api_ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";      // --api-ca-file
  std::string api_token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";   // --api-token-file
  int jwks_refresh_seconds = 300;    // --jwks-refresh-interval
  std::string token_review_url;      // --token-review-url: TokenReview instead of local JWKS checks
  // Broker.
  std::string broker = "sts";        // --broker: sts | eks-auth
  std::string region;                // --region (AWS_REGION when empty)
  std::string sts_endpoint;          // --sts-endpoint override
  std::string eks_auth_endpoint;     // --endpoint: EKS Auth endpoint override
  std::string upstream_ca_file;      // --upstream-ca-file: extra CA for STS/EKS Auth (tests)
  // Cache.
  size_t max_cache_size = 2000;      // --max-cache-size
  // --max-credential-retention-before-renewal (EKS's flag): cached credentials are
  // renewed at fetch time + min(lifetime / 2, this).
  int max_retention_seconds = 3 * 60 * 60;
  std::string log_level = "info";    // --log-level

  // Checks the combination of flags; the error names the flag.
  Status Validate() const;
  // One JSON log line with every setting (no secrets exist here to redact).
  void LogSettings() const;
  ServerOptions ToServerOptions() const;
};

}  // namespace podidentity::agent
