#include "agent_credentials.h"

#include <cstdlib>
#include <optional>

namespace podidentity::agent {
namespace {

// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, read once at start (the
// chart passes them from a Secret as environment variables). Thread-safe (immutable).
std::optional<AwsCredentials> FromEnvironment() {
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (id == nullptr || secret == nullptr || *id == '\0' || *secret == '\0') return std::nullopt;
  AwsCredentials credentials;
  credentials.access_key_id = id;
  credentials.secret_access_key = secret;
  if (const char* token = std::getenv("AWS_SESSION_TOKEN")) credentials.session_token = token;
  return credentials;
}

}  // namespace

StatusOr<std::unique_ptr<AwsCredentialsProvider>> MakeAgentCredentials(HttpClient& /*http*/, const Clock& /*clock*/,
                                                                       const std::string& /*region*/) {
  if (std::optional<AwsCredentials> credentials = FromEnvironment()) {
    return std::unique_ptr<AwsCredentialsProvider>(std::make_unique<StaticCredentialsProvider>(*credentials));
  }
  return FailedPreconditionError(
      "no AWS credentials for the agent: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the chart's "
      "agent.awsCredentials.existingSecret)");
}

}  // namespace podidentity::agent
