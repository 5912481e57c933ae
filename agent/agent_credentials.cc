#include "agent_credentials.h"

#include "podidentity/log.h"

namespace podidentity::agent {

StatusOr<std::unique_ptr<AwsCredentialsProvider>> MakeAgentCredentials(HttpClient& http, const Clock& clock,
                                                                       const std::string& region) {
  DefaultChainOptions options;
  options.web_identity.region = region;
  std::unique_ptr<AwsCredentialsProvider> chain = MakeDefaultCredentialsChain(http, clock, ProcessEnvironment(), options);
  // Resolve once at start so a misconfiguration shows in the first log lines. Not
  // fatal: IMDS or a rotated Secret may answer later, and until then requests get 503.
  StatusOr<AwsCredentials> first = chain->GetCredentials();
  if (first.ok()) {
    log::Info("agent AWS credentials resolved", {{"access_key_id_prefix", first->access_key_id.substr(0, 4)}});
  } else {
    log::Warn("agent AWS credentials not available yet; credential requests will fail with 503 until they are",
              {{"error", first.status().message()}});
  }
  return chain;
}

}  // namespace podidentity::agent
