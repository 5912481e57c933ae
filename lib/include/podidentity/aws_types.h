// AWS credentials as a value type, shared by the signer, the STS / EKS Auth clients,
// the agent's own credential chain and the credential cache. There is deliberately no
// ToString or stream operator: secrets must never reach a log line by accident.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace podidentity {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty for long-term credentials
  // Absent for credentials that do not expire (environment, shared file).
  std::optional<std::chrono::system_clock::time_point> expiration;
  // The account the credentials belong to, when known (the agent returns it as AccountId).
  std::string account_id;

  bool empty() const { return access_key_id.empty() || secret_access_key.empty(); }
};

}  // namespace podidentity
