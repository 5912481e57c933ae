// The webhook's configuration: one struct filled from command-line flags, validated
// once at start-up (a bad value is a usage error, exit code 2, before anything
// listens) and printed as one log line. Every default is EKS's or documented here.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pod_mutator.h"
#include "podidentity/log.h"
#include "podidentity/status.h"

namespace podidentity::webhook {

struct WebhookConfig {
  // Where to listen. Port 0 picks an ephemeral port (logged in the "listening" line).
  int port = 8443;
  // 0.0.0.0 works on every node (IPv6 may be disabled in the kernel); pass "::" on
  // IPv6 or dual-stack clusters (the socket then accepts IPv4 too).
  std::string bind_address = "0.0.0.0";

  // The serving certificate (PEM, leaf first, intermediates after) and its key, both
  // reloaded when they change. Empty: a self-signed pair is generated in memory (demo
  // and development only), and its CA is written to self_signed_ca_file when set.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string self_signed_ca_file;
  // Extra DNS names for the self-signed certificate (localhost, 127.0.0.1 and ::1 are
  // always included), e.g. pod-identity-webhook.kube-system.svc.
  std::vector<std::string> self_signed_dns_names;

  // The associations file; empty means the embedded examples/associations.yaml.
  std::string associations_file;
  // How often the associations file and the certificate files are checked for changes.
  std::chrono::milliseconds reload_interval{2000};

  // What is injected into pods (defaults: EKS's, see constants.h).
  MutationSettings mutation;
  bool ipv6 = false;  // only changes the default credentials URI

  // Server limits.
  size_t max_request_bytes = 3 * 1024 * 1024;  // the API server's own request limit
  // Most connections served at once (a thread each, started on demand); 0 = 256.
  int threads = 0;
  // Accepted connections waiting for a worker; beyond it the accept loop pauses and
  // new connections wait in the kernel's listen backlog (1024).
  int max_queued_connections = 256;
  std::chrono::milliseconds read_timeout{10000};
  std::chrono::milliseconds write_timeout{10000};
  // An idle keep-alive connection is closed after this; it also bounds how long
  // shutdown waits for idle connections.
  std::chrono::seconds keep_alive_timeout{5};

  log::Level log_level = log::Level::kInfo;

  // The thread count actually used (resolves threads == 0).
  int EffectiveThreads() const;
  static constexpr int kDefaultMaxThreads = 256;
};

// The result of parsing the command line: a validated config, or an exit code
// (0 after --help, 2 for a usage error whose message was printed to stderr).
struct CommandLine {
  std::optional<WebhookConfig> config;
  int exit_code = 0;
};
CommandLine ParseCommandLine(int argc, const char* const* argv);

// Checks every field; the message names the flag. Called by ParseCommandLine.
Status Validate(const WebhookConfig& config);

// "500ms", "2s", "1m" or a bare number of seconds.
StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text);

// The config as log fields (it holds no secrets: paths and names only).
std::vector<log::Field> ConfigLogFields(const WebhookConfig& config);

}  // namespace podidentity::webhook
