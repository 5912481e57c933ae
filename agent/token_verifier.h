// Adapts the library's service-account token verifiers (local JWKS or TokenReview) to
// the exchange's PodTokenVerifier, keeping each rejection's reason code.
#pragma once

#include "podidentity/exchange.h"
#include "podidentity/jwt_verifier.h"

namespace podidentity::agent {

// Thread-safe when `verifier` is.
class PodTokenVerifierAdapter final : public PodTokenVerifier {
 public:
  explicit PodTokenVerifierAdapter(ServiceAccountTokenVerifier& verifier) : verifier_(verifier) {}
  std::variant<PodIdentity, ExchangeError> Verify(std::string_view token) override;
  // ServiceAccountTokenVerifier::VerifyIfCached, mapped as Verify() maps Verify().
  std::optional<std::variant<PodIdentity, ExchangeError>> VerifyIfCached(std::string_view token) override;

 private:
  ServiceAccountTokenVerifier& verifier_;
};

}  // namespace podidentity::agent
