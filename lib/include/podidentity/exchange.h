// The node-side use case: a pod's projected service-account token in, the associated
// role's temporary credentials out. token -> verified pod identity -> association (the
// same reloading store as the webhook) -> credential cache -> broker (STS or EKS Auth).
// Every failure comes back as an ExchangeError with a stable reason for logs, metrics
// and the agent's HTTP error mapping; nothing here knows about HTTP.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "podidentity/associations.h"
#include "podidentity/aws_types.h"
#include "podidentity/credential_cache.h"
#include "podidentity/status.h"

namespace podidentity {

// Who the token says the caller is; filled only from a verified token.
struct PodIdentity {
  std::string namespace_name;
  std::string service_account;
  std::string pod_name;
  std::string pod_uid;
};

// A failure with the reason callers branch on. `status.code()` carries the category
// (kInvalidArgument: bad request; kUnauthenticated: token rejected; kNotFound: no
// association; kPermissionDenied: the broker denied the role; kResourceExhausted:
// throttled; kUnavailable / kDeadlineExceeded / kInternal: broker failures) and
// `reason` a stable snake_case name (e.g. "token_expired", "no_association",
// "broker_access_denied"). Messages never contain the token or any credential.
struct ExchangeError {
  Status status;
  std::string reason;
  // The upstream's HTTP status for broker errors (EKS's agent passes it through), or 0.
  int upstream_http_status = 0;
};

// Verifies a token and returns the pod it was issued for.
// Thread-safety: implementations are thread-safe.
class PodTokenVerifier {
 public:
  virtual ~PodTokenVerifier() = default;
  virtual std::variant<PodIdentity, ExchangeError> Verify(std::string_view token) = 0;
  // The answer Verify() would give when it is known at once from memory (a token
  // verified before and still cached), without blocking; nullopt when only Verify() can
  // tell. The default never knows.
  virtual std::optional<std::variant<PodIdentity, ExchangeError>> VerifyIfCached(std::string_view /*token*/) {
    return std::nullopt;
  }
};

// Obtains credentials for a pod: STS AssumeRole with session tags, or EKS Auth.
// `association` is null only in EKS Auth mode without a local association file (EKS
// then resolves the association itself from the token).
// Thread-safety: implementations are thread-safe.
class CredentialBroker {
 public:
  virtual ~CredentialBroker() = default;
  virtual std::variant<AwsCredentials, ExchangeError> Fetch(const PodIdentity& pod, const Association* association,
                                                            std::string_view token) = 0;
  virtual std::string_view name() const = 0;  // "sts" or "eks-auth"
};

struct ExchangeResult {
  std::shared_ptr<const AwsCredentials> credentials;  // never null
  PodIdentity pod;
  CacheOutcome cache_outcome = CacheOutcome::kHit;
};

// What the exchange did, for the one log line per request (filled as far as it got).
struct ExchangeTrace {
  std::optional<PodIdentity> pod;
  std::string role_arn;
  std::optional<CacheOutcome> cache_outcome;
  double broker_seconds = 0;  // time spent in the broker call made by this request
};

struct ExchangeOptions {
  // Without an association file (EKS Auth mode only) every verified pod is passed to
  // the broker, which decides; otherwise no association means kNotFound.
  bool require_association = true;
};

// Thread-safe: the store, verifier, broker and cache are; Exchange keeps no state.
class Exchange {
 public:
  Exchange(const AssociationStore* associations, PodTokenVerifier& verifier, CredentialBroker& broker,
           CredentialCache& cache, ExchangeOptions options = {});

  std::variant<ExchangeResult, ExchangeError> Run(std::string_view token, ExchangeTrace* trace = nullptr);

  // Run()'s answer when it can be given without blocking (for an event loop): the
  // verifier knows the token from its cache (PodTokenVerifier::VerifyIfCached) and then
  // either the pod has no association (the same ExchangeError as Run()) or the
  // credential cache holds fresh credentials (CredentialCache::Peek: outcome kHit).
  // nullopt otherwise: nothing was fetched or waited for, and the caller runs Run()
  // where blocking is allowed. `trace` is filled as Run() fills it, and only when an
  // answer is returned.
  std::optional<std::variant<ExchangeResult, ExchangeError>> TryRunWithoutBlocking(std::string_view token,
                                                                                   ExchangeTrace* trace = nullptr);

 private:
  // The association lookup and the cache key for a verified pod, shared by Run() and
  // TryRunWithoutBlocking(). `snapshot` keeps `association` alive for the request.
  struct Resolved {
    std::shared_ptr<const AssociationIndex> snapshot;
    const Association* association = nullptr;  // null only without a required association
    CacheKey key;
  };
  // kNotFound ("no_association") when the pod needs an association and has none. Sets
  // trace->role_arn when there is an association.
  std::variant<Resolved, ExchangeError> Resolve(const PodIdentity& pod, ExchangeTrace* trace) const;

  const AssociationStore* associations_;
  PodTokenVerifier& verifier_;
  CredentialBroker& broker_;
  CredentialCache& cache_;
  const ExchangeOptions options_;
};

}  // namespace podidentity
