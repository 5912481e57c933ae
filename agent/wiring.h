// Builds the agent's collaborators from its config: the HTTP clients, the key source
// and token verifier (local JWKS or TokenReview), the agent's own AWS credential chain,
// and the broker (STS or EKS Auth), each adapted to the exchange's interfaces. Owns
// them for the life of the process.
#pragma once

#include <memory>

#include "config.h"
#include "podidentity/clock.h"
#include "podidentity/exchange.h"
#include "podidentity/metrics.h"
#include "podidentity/status.h"

namespace podidentity::agent {

class Wiring {
 public:
  virtual ~Wiring() = default;
  // A start-up error (unreadable JWKS file, bad endpoint URL, ...) names the flag.
  static StatusOr<std::unique_ptr<Wiring>> Create(const AgentConfig& config, const Clock& clock,
                                                  MetricsRegistry& metrics);

  virtual PodTokenVerifier& verifier() = 0;
  virtual CredentialBroker& broker() = 0;
  // True once the keys are loaded (the JWKS was fetched at least once).
  virtual bool ready() const = 0;
  // Stops background refreshes.
  virtual void Stop() = 0;
};

}  // namespace podidentity::agent
