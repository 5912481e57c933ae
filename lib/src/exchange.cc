#include "podidentity/exchange.h"

#include <chrono>

namespace podidentity {
namespace {

// A reason for a broker error that reached this caller only as a Status (it joined
// another caller's upstream call, or the cache turned the answer into an error).
std::string ReasonForCode(StatusCode code) {
  switch (code) {
    case StatusCode::kPermissionDenied: return "broker_access_denied";
    case StatusCode::kUnauthenticated: return "broker_invalid_token";
    case StatusCode::kResourceExhausted: return "broker_throttled";
    case StatusCode::kNotFound: return "broker_not_found";
    case StatusCode::kDeadlineExceeded: return "broker_timeout";
    case StatusCode::kUnavailable: return "broker_unavailable";
    default: return "broker_error";
  }
}

}  // namespace

Exchange::Exchange(const AssociationStore* associations, PodTokenVerifier& verifier, CredentialBroker& broker,
                   CredentialCache& cache, ExchangeOptions options)
    : associations_(associations), verifier_(verifier), broker_(broker), cache_(cache), options_(options) {}

std::variant<Exchange::Resolved, ExchangeError> Exchange::Resolve(const PodIdentity& pod, ExchangeTrace* trace) const {
  Resolved resolved;
  // Hold the snapshot for the whole request: a reload swaps it, never mutates it.
  resolved.snapshot = associations_ != nullptr ? associations_->Current() : std::shared_ptr<const AssociationIndex>();
  resolved.association =
      resolved.snapshot != nullptr ? resolved.snapshot->Find(pod.namespace_name, pod.service_account) : nullptr;
  if (resolved.association == nullptr && (options_.require_association || resolved.snapshot != nullptr)) {
    return ExchangeError{NotFoundError("no pod identity association for service account " + pod.namespace_name + "/" +
                                       pod.service_account),
                         "no_association", 0};
  }

  if (resolved.association != nullptr) {
    resolved.key = CacheKey::For(*resolved.association, pod.pod_name, pod.pod_uid);
    if (trace != nullptr) trace->role_arn = resolved.association->role_arn;
  } else {
    // EKS Auth without local associations: EKS resolves the role from the token, so
    // the pod (uid, name) and service account identify the answer.
    resolved.key.pod_uid = pod.pod_uid;
    resolved.key.pod_name = pod.pod_name;
    resolved.key.namespace_name = pod.namespace_name;
    resolved.key.service_account = pod.service_account;
  }
  return resolved;
}

std::optional<std::variant<ExchangeResult, ExchangeError>> Exchange::TryRunWithoutBlocking(std::string_view token,
                                                                                           ExchangeTrace* trace) {
  auto verified = verifier_.VerifyIfCached(token);
  if (!verified) return std::nullopt;
  if (auto* error = std::get_if<ExchangeError>(&*verified)) return std::move(*error);
  PodIdentity pod = std::get<PodIdentity>(std::move(*verified));
  // Filled locally and handed over only with an answer: a nullopt leaves `trace` as it
  // was for the Run() that follows.
  ExchangeTrace local;
  local.pod = pod;

  auto resolved = Resolve(pod, &local);
  if (auto* error = std::get_if<ExchangeError>(&resolved)) {
    if (trace != nullptr) *trace = std::move(local);
    return std::move(*error);
  }
  std::optional<CacheResult> cached = cache_.Peek(std::get<Resolved>(resolved).key);
  if (!cached) return std::nullopt;
  local.cache_outcome = cached->outcome;
  if (trace != nullptr) *trace = std::move(local);
  return ExchangeResult{std::move(cached->credentials), std::move(pod), cached->outcome};
}

std::variant<ExchangeResult, ExchangeError> Exchange::Run(std::string_view token, ExchangeTrace* trace) {
  auto verified = verifier_.Verify(token);
  if (auto* error = std::get_if<ExchangeError>(&verified)) return std::move(*error);
  PodIdentity pod = std::get<PodIdentity>(std::move(verified));
  if (trace != nullptr) trace->pod = pod;

  auto resolved = Resolve(pod, trace);
  if (auto* error = std::get_if<ExchangeError>(&resolved)) return std::move(*error);
  const Association* association = std::get<Resolved>(resolved).association;
  const CacheKey& key = std::get<Resolved>(resolved).key;

  // The leader's broker error keeps its reason and upstream status; callers that joined
  // the leader's call see only the Status and get a reason derived from its code.
  std::optional<ExchangeError> broker_error;
  double broker_seconds = 0;
  auto fetch = [&]() -> StatusOr<AwsCredentials> {
    const auto start = std::chrono::steady_clock::now();
    auto fetched = broker_.Fetch(pod, association, token);
    broker_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (auto* error = std::get_if<ExchangeError>(&fetched)) {
      broker_error = *error;
      return error->status;
    }
    return std::get<AwsCredentials>(std::move(fetched));
  };
  auto cached = cache_.Get(key, fetch);
  if (trace != nullptr) trace->broker_seconds = broker_seconds;
  if (!cached.ok()) {
    if (broker_error && broker_error->status.code() == cached.status().code()) return *broker_error;
    return ExchangeError{cached.status(), ReasonForCode(cached.status().code()), 0};
  }
  if (trace != nullptr) trace->cache_outcome = cached->outcome;
  return ExchangeResult{cached->credentials, std::move(pod), cached->outcome};
}

}  // namespace podidentity
