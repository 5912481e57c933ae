#include "token_verifier.h"

namespace podidentity::agent {

std::variant<PodIdentity, ExchangeError> PodTokenVerifierAdapter::Verify(std::string_view token) {
  TokenVerifyResult result = verifier_.Verify(token);
  if (auto* error = std::get_if<TokenVerifyError>(&result)) {
    return ExchangeError{error->ToStatus(), std::string(TokenErrorName(error->reason)), 0};
  }
  VerifiedIdentity& identity = std::get<VerifiedIdentity>(result);
  return PodIdentity{std::move(identity.namespace_name), std::move(identity.service_account),
                     std::move(identity.pod_name), std::move(identity.pod_uid)};
}

}  // namespace podidentity::agent
