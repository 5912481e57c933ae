#include "config.h"

// GCC 12 at -O2 reports a false "potential null pointer dereference" inside libstdc++
// code inlined from CLI11's string splitting; nothing in this file dereferences null.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wnull-dereference"
#endif
#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <iostream>

#include "constants.h"
#include "podidentity/associations.h"

namespace podidentity::webhook {
namespace {

std::string LevelName(log::Level level) {
  switch (level) {
    case log::Level::kDebug: return "debug";
    case log::Level::kInfo: return "info";
    case log::Level::kWarn: return "warn";
    case log::Level::kError: return "error";
  }
  return "info";
}

bool IsRegion(std::string_view region) {
  if (region.empty() || region.size() > 32) return false;
  return std::all_of(region.begin(), region.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

}  // namespace

int WebhookConfig::EffectiveThreads() const {
  // A keep-alive connection holds its thread for its whole life, so this is sized for
  // connections, not for CPU; threads start on demand and idle ones exit again.
  return threads > 0 ? threads : kDefaultMaxThreads;
}

StatusOr<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  long long value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr == begin || value < 0) {
    return InvalidArgumentError("'" + std::string(text) + "' is not a duration (e.g. 500ms, 2s, 1m)");
  }
  if (value > 86'400'000) return InvalidArgumentError("'" + std::string(text) + "' is too long");
  const std::string_view unit(ptr, static_cast<size_t>(end - ptr));
  long long ms = 0;
  if (unit == "ms") {
    ms = value;
  } else if (unit.empty() || unit == "s") {
    ms = value * 1000;
  } else if (unit == "m") {
    ms = value * 60'000;
  } else {
    return InvalidArgumentError("'" + std::string(text) + "': unknown unit (use ms, s or m)");
  }
  return std::chrono::milliseconds(ms);
}

Status Validate(const WebhookConfig& c) {
  auto bad = [](std::string flag, std::string problem) { return InvalidArgumentError(flag + ": " + problem); };
  if (c.port < 0 || c.port > 65535) return bad("--port", "must be in [0, 65535]");
  if (c.bind_address.empty()) return bad("--bind-address", "must not be empty");
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return bad("--tls-cert-file/--tls-key-file", "give both or neither");
  }
  if (!c.tls_cert_file.empty() && !c.self_signed_ca_file.empty()) {
    return bad("--self-signed-ca-file", "only applies without --tls-cert-file/--tls-key-file");
  }
  for (const std::string& name : c.self_signed_dns_names) {
    if (std::string why = ValidateDns1123Subdomain(name); !why.empty()) {
      return bad("--self-signed-dns-name", "'" + name + "': " + why);
    }
  }
  if (c.reload_interval < std::chrono::milliseconds(10)) return bad("--reload-interval", "must be at least 10ms");

  const MutationSettings& m = c.mutation;
  if (m.audience.empty()) return bad("--audience", "must not be empty");
  if (std::string why = ValidateDns1123Label(m.volume_name); !why.empty()) return bad("--volume-name", why);
  if (m.mount_path.empty() || m.mount_path.front() != '/' || m.mount_path.find(':') != std::string::npos) {
    return bad("--mount-path", "must be an absolute path without ':'");
  }
  if (m.token_file_name.empty() || m.token_file_name.find('/') != std::string::npos || m.token_file_name == "." ||
      m.token_file_name == "..") {
    return bad("--token-file-name", "must be a file name (no '/')");
  }
  if (m.token_expiration_seconds < kMinTokenExpirationSeconds) {
    return bad("--token-expiration",
               "must be at least " + std::to_string(kMinTokenExpirationSeconds) + " seconds (the API server's minimum)");
  }
  if (m.token_expiration_seconds > 4'294'967'295LL) return bad("--token-expiration", "too large");
  if (m.credentials_uri.rfind("http://", 0) != 0 && m.credentials_uri.rfind("https://", 0) != 0) {
    return bad("--credentials-uri", "must start with http:// or https://");
  }
  if (m.region && !IsRegion(*m.region)) return bad("--region", "'" + *m.region + "' is not an AWS region name");

  if (c.max_request_bytes < 1024) return bad("--max-request-bytes", "must be at least 1024");
  if (c.threads < 0 || c.threads > 4096) return bad("--threads", "must be in [0, 4096] (0 = automatic)");
  if (c.max_queued_connections < 1) return bad("--max-queued-connections", "must be at least 1");
  if (c.read_timeout < std::chrono::milliseconds(1)) return bad("--read-timeout", "must be positive");
  if (c.write_timeout < std::chrono::milliseconds(1)) return bad("--write-timeout", "must be positive");
  if (c.keep_alive_timeout < std::chrono::seconds(1)) return bad("--keep-alive-timeout", "must be at least 1s");
  return Status::Ok();
}

CommandLine ParseCommandLine(int argc, const char* const* argv) {
  WebhookConfig c;
  c.mutation.audience = std::string(kDefaultAudience);
  c.mutation.volume_name = std::string(kDefaultVolumeName);
  c.mutation.mount_path = std::string(kDefaultMountPath);
  c.mutation.token_file_name = std::string(kDefaultTokenFileName);
  c.mutation.token_expiration_seconds = kDefaultTokenExpirationSeconds;

  std::string credentials_uri;
  std::string region;
  std::string reload_interval = "2s";
  std::string read_timeout = "10s";
  std::string write_timeout = "10s";
  std::string keep_alive_timeout = "5s";
  std::string log_level = "info";

  CLI::App app{"pod-identity-webhook: a mutating admission webhook that injects EKS Pod Identity into pods "
               "whose service account has an association.",
               "pod-identity-webhook"};
  app.add_option("--port", c.port, "HTTPS port (0: ephemeral, logged)")->capture_default_str();
  app.add_option("--bind-address", c.bind_address, "Address to listen on (\"::\" for IPv6/dual-stack)")
      ->capture_default_str();
  app.add_option("--tls-cert-file", c.tls_cert_file, "Serving certificate (PEM, leaf first), reloaded on change");
  app.add_option("--tls-key-file", c.tls_key_file, "Serving private key (PEM), reloaded on change");
  app.add_option("--self-signed-ca-file", c.self_signed_ca_file,
                 "Without --tls-cert-file: write the in-memory self-signed CA (PEM) here");
  app.add_option("--self-signed-dns-name", c.self_signed_dns_names,
                 "Without --tls-cert-file: extra DNS name for the self-signed certificate (repeatable)");
  app.add_option("--associations", c.associations_file,
                 "Associations YAML file, reloaded on change (default: the embedded examples/associations.yaml)");
  app.add_option("--reload-interval", reload_interval, "How often to check the associations and certificate files")
      ->capture_default_str();
  app.add_option("--audience", c.mutation.audience, "Audience of the projected token")->capture_default_str();
  app.add_option("--volume-name", c.mutation.volume_name, "Name of the injected volume")->capture_default_str();
  app.add_option("--mount-path", c.mutation.mount_path, "Where the token volume is mounted")->capture_default_str();
  app.add_option("--token-file-name", c.mutation.token_file_name, "Token file name in the volume")
      ->capture_default_str();
  app.add_option("--token-expiration", c.mutation.token_expiration_seconds,
                 "Projected token lifetime in seconds (>= 600; the default is spread over [79200, 86400])")
      ->capture_default_str();
  app.add_option("--credentials-uri", credentials_uri,
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI (default: http://169.254.170.23/v1/credentials, with --ipv6 "
                 "http://[fd00:ec2::23]/v1/credentials)");
  app.add_flag("--ipv6", c.ipv6, "Use the IPv6 credentials URI by default");
  app.add_option("--region", region, "Also inject AWS_REGION and AWS_DEFAULT_REGION (containers that set neither)");
  app.add_option("--max-request-bytes", c.max_request_bytes, "Largest accepted request body")->capture_default_str();
  app.add_option("--threads", c.threads, "Most connections served at once, one thread each, started on demand (0: 256)")->capture_default_str();
  app.add_option("--max-queued-connections", c.max_queued_connections,
                 "Accepted connections waiting for a worker before accepting pauses")
      ->capture_default_str();
  app.add_option("--read-timeout", read_timeout, "Socket read timeout")->capture_default_str();
  app.add_option("--write-timeout", write_timeout, "Socket write timeout")->capture_default_str();
  app.add_option("--keep-alive-timeout", keep_alive_timeout, "Idle keep-alive connection timeout (whole seconds)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return {std::nullopt, app.exit(e)};
  } catch (const CLI::CallForAllHelp& e) {
    return {std::nullopt, app.exit(e)};
  } catch (const CLI::ParseError& e) {
    std::cerr << "pod-identity-webhook: " << e.what() << "\nRun with --help for the flags.\n";
    return {std::nullopt, 2};
  }

  auto usage_error = [](const Status& s) {
    std::cerr << "pod-identity-webhook: " << s.message() << "\nRun with --help for the flags.\n";
    return CommandLine{std::nullopt, 2};
  };
  struct DurationFlag {
    const char* flag;
    const std::string& text;
    std::chrono::milliseconds* out;
  };
  std::chrono::milliseconds keep_alive{0};
  for (const DurationFlag& d : {DurationFlag{"--reload-interval", reload_interval, &c.reload_interval},
                                DurationFlag{"--read-timeout", read_timeout, &c.read_timeout},
                                DurationFlag{"--write-timeout", write_timeout, &c.write_timeout},
                                DurationFlag{"--keep-alive-timeout", keep_alive_timeout, &keep_alive}}) {
    StatusOr<std::chrono::milliseconds> parsed = ParseDuration(d.text);
    if (!parsed.ok()) return usage_error(InvalidArgumentError(std::string(d.flag) + ": " + parsed.status().message()));
    *d.out = *parsed;
  }
  c.keep_alive_timeout = std::chrono::duration_cast<std::chrono::seconds>(keep_alive);
  if (!log::ParseLevel(log_level, &c.log_level)) {
    return usage_error(InvalidArgumentError("--log-level: '" + log_level + "' is not debug, info, warn or error"));
  }
  if (!credentials_uri.empty()) {
    c.mutation.credentials_uri = credentials_uri;
  } else {
    c.mutation.credentials_uri = std::string(c.ipv6 ? kDefaultCredentialsUriIpv6 : kDefaultCredentialsUri);
  }
  if (app.count("--region") > 0) c.mutation.region = region;

  if (Status s = Validate(c); !s.ok()) return usage_error(s);
  return {std::move(c), 0};
}

std::vector<log::Field> ConfigLogFields(const WebhookConfig& c) {
  std::vector<log::Field> f;
  f.emplace_back("port", c.port);
  f.emplace_back("bindAddress", c.bind_address);
  f.emplace_back("tlsCertFile", c.tls_cert_file.empty() ? "(self-signed, in memory)" : c.tls_cert_file);
  f.emplace_back("tlsKeyFile", c.tls_key_file);
  f.emplace_back("selfSignedCaFile", c.self_signed_ca_file);
  std::string names;
  for (const std::string& n : c.self_signed_dns_names) names += (names.empty() ? "" : ",") + n;
  f.emplace_back("selfSignedDnsNames", names);
  f.emplace_back("associations", c.associations_file.empty() ? "(embedded)" : c.associations_file);
  f.emplace_back("reloadIntervalMs", static_cast<int64_t>(c.reload_interval.count()));
  f.emplace_back("audience", c.mutation.audience);
  f.emplace_back("volumeName", c.mutation.volume_name);
  f.emplace_back("mountPath", c.mutation.mount_path);
  f.emplace_back("tokenFileName", c.mutation.token_file_name);
  f.emplace_back("tokenExpirationSeconds", c.mutation.token_expiration_seconds);
  f.emplace_back("credentialsUri", c.mutation.credentials_uri);
  f.emplace_back("ipv6", c.ipv6);
  f.emplace_back("region", c.mutation.region.value_or(""));
  f.emplace_back("maxRequestBytes", static_cast<uint64_t>(c.max_request_bytes));
  f.emplace_back("threads", c.EffectiveThreads());
  f.emplace_back("maxQueuedConnections", c.max_queued_connections);
  f.emplace_back("readTimeoutMs", static_cast<int64_t>(c.read_timeout.count()));
  f.emplace_back("writeTimeoutMs", static_cast<int64_t>(c.write_timeout.count()));
  f.emplace_back("keepAliveTimeoutSeconds", static_cast<int64_t>(c.keep_alive_timeout.count()));
  f.emplace_back("logLevel", LevelName(c.log_level));
  return f;
}

}  // namespace podidentity::webhook
