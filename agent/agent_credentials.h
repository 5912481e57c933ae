// The agent's own AWS identity (the principal that calls STS / EKS Auth): the library's
// default chain (environment, shared file, web identity, EC2 IMDSv2), refreshed before
// expiry.
#pragma once

#include <memory>
#include <string>

#include "podidentity/aws_credentials.h"
#include "podidentity/clock.h"
#include "podidentity/http_client.h"
#include "podidentity/status.h"

namespace podidentity::agent {

StatusOr<std::unique_ptr<AwsCredentialsProvider>> MakeAgentCredentials(HttpClient& http, const Clock& clock,
                                                                       const std::string& region);

}  // namespace podidentity::agent
