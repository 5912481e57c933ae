// The agent's own AWS credentials (the identity that calls STS / EKS Auth): a provider
// interface and the default chain (environment, shared credentials file + profile, web
// identity token file, EC2 IMDSv2), first that works wins, refreshed before expiry.
#pragma once

#include <memory>

#include "podidentity/aws_types.h"
#include "podidentity/status.h"

namespace podidentity {

// Thread-safety: implementations are thread-safe.
class AwsCredentialsProvider {
 public:
  virtual ~AwsCredentialsProvider() = default;
  virtual StatusOr<AwsCredentials> GetCredentials() = 0;
};

// Always the same credentials (tests, and the building block of the chain).
class StaticCredentialsProvider final : public AwsCredentialsProvider {
 public:
  explicit StaticCredentialsProvider(AwsCredentials credentials) : credentials_(std::move(credentials)) {}
  StatusOr<AwsCredentials> GetCredentials() override { return credentials_; }

 private:
  const AwsCredentials credentials_;
};

}  // namespace podidentity
