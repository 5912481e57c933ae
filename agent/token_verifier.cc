#include "token_verifier.h"

namespace podidentity::agent {
namespace {

// One mapping for both paths: a rejection keeps its reason code, an identity its pod.
std::variant<PodIdentity, ExchangeError> ToPodIdentity(TokenVerifyResult result) {
  if (auto* error = std::get_if<TokenVerifyError>(&result)) {
    return ExchangeError{error->ToStatus(), std::string(TokenErrorName(error->reason)), 0};
  }
  VerifiedIdentity& identity = std::get<VerifiedIdentity>(result);
  return PodIdentity{std::move(identity.namespace_name), std::move(identity.service_account),
                     std::move(identity.pod_name), std::move(identity.pod_uid)};
}

}  // namespace

std::variant<PodIdentity, ExchangeError> PodTokenVerifierAdapter::Verify(std::string_view token) {
  return ToPodIdentity(verifier_.Verify(token));
}

std::optional<std::variant<PodIdentity, ExchangeError>> PodTokenVerifierAdapter::VerifyIfCached(
    std::string_view token) {
  std::optional<TokenVerifyResult> result = verifier_.VerifyIfCached(token);
  if (!result) return std::nullopt;
  return ToPodIdentity(std::move(*result));
}

}  // namespace podidentity::agent
