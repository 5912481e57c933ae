// GET /v1/credentials: the container-credentials endpoint AWS SDKs call with the pod's
// projected token in the Authorization header. Checks the Host header against the
// addresses the agent serves (anti DNS rebinding, as EKS's agent does), runs the
// exchange, and renders the container-credentials JSON or an error. No sockets here:
// the server passes the request's fields in and writes the response out.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "podidentity/exchange.h"
#include "podidentity/log.h"

namespace podidentity::agent {

// Which Host header values are accepted: the served IP addresses (with or without a
// port, IPv6 with brackets), plus localhost names when serving on loopback.
class HostPolicy {
 public:
  explicit HostPolicy(const std::vector<std::string>& served_hosts);
  bool Allows(std::string_view host_header) const;
  // "169.254.170.23" from "169.254.170.23:80", "fd00:ec2::23" from "[fd00:ec2::23]:80".
  static std::string StripPort(std::string_view host_header);

 private:
  std::vector<std::string> allowed_;
};

struct CredentialRequest {
  std::string_view host;           // the Host header
  std::string_view authorization;  // the Authorization header: the raw token
  bool has_authorization = false;
};

struct CredentialResponse {
  int status = 200;
  std::string body;
  std::string outcome;     // "ok", or the error code ("InvalidToken", "NoAssociation", ...)
  bool cache_hit = false;  // credentials came from the cache
  std::string cache;       // the cache outcome name, empty when the exchange did not reach it
  double broker_seconds = 0;
  std::vector<log::Field> log_fields;  // namespace, service_account, pod, role_arn (never the token)
};

// {"AccessKeyId","SecretAccessKey","Token","AccountId","Expiration"} with Expiration as
// RFC 3339 UTC ending in "Z" (the JS SDK rejects offsets).
std::string RenderCredentialsJson(const AwsCredentials& credentials);
std::string FormatRfc3339Utc(std::chrono::system_clock::time_point time);

// Thread-safe: holds only references to thread-safe objects.
class CredentialHandler {
 public:
  CredentialHandler(Exchange& exchange, HostPolicy hosts) : exchange_(exchange), hosts_(std::move(hosts)) {}
  CredentialResponse Handle(const CredentialRequest& request);
  // Handle()'s response when it can be built without blocking (for an event loop): at
  // once for a wrong host or a missing token, or when Exchange::TryRunWithoutBlocking
  // answers (a cached token with fresh cached credentials, or no association). The
  // response is exactly the one Handle() would build for that answer. nullopt when the
  // exchange would block: the caller then runs Handle() on a worker thread.
  std::optional<CredentialResponse> TryHandle(const CredentialRequest& request);

 private:
  // The answer to a request Handle() rejects before the exchange (wrong host, missing
  // token), or nullopt when the request may go on.
  std::optional<CredentialResponse> RejectBeforeExchange(const CredentialRequest& request) const;

  Exchange& exchange_;
  const HostPolicy hosts_;
};

}  // namespace podidentity::agent
