#include "podidentity/credential_cache.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace podidentity {
namespace {

void AppendField(std::string& out, std::string_view value) {
  out.append(std::to_string(value.size())).append(":").append(value).append(";");
}

void AppendOptionalField(std::string& out, const std::optional<std::string>& value) {
  if (value) {
    AppendField(out, *value);
  } else {
    out.append("-;");
  }
}

// Upstream answers that mean "this identity must not get credentials": never masked
// by cached credentials (rule 5).
bool EvictsEntry(StatusCode code) {
  return code == StatusCode::kPermissionDenied || code == StatusCode::kUnauthenticated;
}

}  // namespace

CacheKey CacheKey::For(const Association& association, std::string_view pod_name, std::string_view pod_uid) {
  CacheKey key;
  key.pod_uid = std::string(pod_uid);
  key.pod_name = std::string(pod_name);
  key.namespace_name = association.namespace_name;
  key.service_account = association.service_account;
  key.role_arn = association.role_arn;
  key.target_role_arn = association.target_role_arn;
  key.session_policy = association.policy;
  key.disable_session_tags = association.disable_session_tags;
  return key;
}

std::string EncodeCacheKey(const CacheKey& key) {
  std::string out = "v1;";
  AppendField(out, key.pod_uid);
  AppendField(out, key.pod_name);
  AppendField(out, key.namespace_name);
  AppendField(out, key.service_account);
  AppendField(out, key.role_arn);
  AppendOptionalField(out, key.target_role_arn);
  AppendOptionalField(out, key.session_policy);
  out.append(key.disable_session_tags ? "1" : "0");
  return out;
}

std::string_view CacheOutcomeName(CacheOutcome outcome) {
  switch (outcome) {
    case CacheOutcome::kHit:
      return "hit";
    case CacheOutcome::kMissFetched:
      return "miss_fetched";
    case CacheOutcome::kMissJoined:
      return "miss_joined";
    case CacheOutcome::kRefreshed:
      return "refreshed";
    case CacheOutcome::kServedStaleOnError:
      return "served_stale_on_error";
  }
  return "unknown";
}

CredentialCache::CredentialCache(const Clock& clock, CredentialCacheOptions options)
    : clock_(clock), options_(std::move(options)) {}

std::chrono::system_clock::time_point CredentialCache::RefreshAt(std::chrono::system_clock::time_point fetched_at,
                                                                 std::chrono::system_clock::time_point expiration) const {
  using Duration = std::chrono::system_clock::duration;
  const Duration lifetime = expiration - fetched_at;
  if (lifetime <= Duration::zero()) return fetched_at;
  const Duration retention = std::chrono::duration_cast<Duration>(options_.max_retention);
  return fetched_at + std::min(lifetime / 2, retention);
}

bool CredentialCache::Usable(const AwsCredentials& credentials, TimePoint now) const {
  return credentials.expiration.has_value() && *credentials.expiration - now >= options_.min_remaining;
}

StatusOr<std::shared_ptr<const AwsCredentials>> CredentialCache::CallFetch(const FetchFn& fetch) const {
  StatusOr<AwsCredentials> fetched = InternalError("credential fetch did not run");
  try {
    fetched = fetch();
  } catch (const std::exception& e) {
    return InternalError(std::string("credential fetch threw an exception: ") + e.what());
  } catch (...) {
    return InternalError("credential fetch threw an exception");
  }
  if (!fetched.ok()) return fetched.status();
  // Rule 6 (the min_remaining part needs the time and is checked by the caller).
  if (fetched->empty()) return InternalError("broker returned empty credentials");
  if (!fetched->expiration.has_value()) return InternalError("broker returned credentials without an expiration");
  return std::shared_ptr<const AwsCredentials>(std::make_shared<AwsCredentials>(std::move(fetched).value()));
}

void CredentialCache::Erase(EntryList::iterator it) {
  index_.erase(std::string_view(it->key));
  entries_.erase(it);
}

void CredentialCache::TrimToCapacity() {
  const size_t limit = std::max<size_t>(options_.max_entries, 1);
  auto it = entries_.end();
  while (index_.size() > limit && it != entries_.begin()) {
    --it;
    if (it->flight != nullptr) continue;  // a fetch in flight still needs its entry
    auto victim = it;
    ++it;  // stays valid: only `victim` is erased
    Erase(victim);
    ++stats_.lru_evictions;
  }
}

StatusOr<CacheResult> CredentialCache::Get(const CacheKey& cache_key, const FetchFn& fetch) {
  const std::string key = EncodeCacheKey(cache_key);
  std::unique_lock<std::mutex> lock(mu_);
  const TimePoint now = clock_.Now();

  auto found = index_.find(std::string_view(key));
  if (found != index_.end()) {
    EntryList::iterator it = found->second;
    entries_.splice(entries_.begin(), entries_, it);  // most recently used first; iterators stay valid
    const bool usable = it->credentials != nullptr && Usable(*it->credentials, now);
    if (usable) {
      if (ShouldLeadRefresh(*it, now)) {
        // Rule 3: this caller renews; callers arriving meanwhile are served the cached
        // credentials below without waiting.
        auto flight = std::make_shared<Flight>();
        it->flight = flight;
        return Lead(lock, key, std::move(flight), /*refreshing=*/true, fetch);
      }
      ++stats_.hits;
      return CacheResult{it->credentials, CacheOutcome::kHit};
    }
    if (it->flight != nullptr) {
      // Rule 4: join the fetch in flight. Holding the flight (not the entry) keeps the
      // result reachable even if the entry is evicted meanwhile.
      std::shared_ptr<Flight> flight = it->flight;
      ++stats_.misses;
      ++stats_.joined;
      if (options_.on_wait_for_fetch) {
        lock.unlock();
        options_.on_wait_for_fetch();
        lock.lock();
      }
      flight->done_cv.wait(lock, [&flight] { return flight->done; });
      const StatusOr<std::shared_ptr<const AwsCredentials>>& result = *flight->result;
      if (!result.ok()) return result.status();
      return CacheResult{*result, CacheOutcome::kMissJoined};
    }
    // Below min_remaining and nobody renewing it: drop it and fetch as for a cold key.
    Erase(it);
    ++stats_.expired_removals;
  }

  entries_.push_front(Entry{key, nullptr, {}, {}, nullptr});
  index_.emplace(std::string_view(entries_.front().key), entries_.begin());
  auto flight = std::make_shared<Flight>();
  entries_.front().flight = flight;
  ++stats_.misses;
  TrimToCapacity();
  return Lead(lock, key, std::move(flight), /*refreshing=*/false, fetch);
}

std::optional<CacheResult> CredentialCache::Peek(const CacheKey& cache_key) {
  const std::string key = EncodeCacheKey(cache_key);
  std::lock_guard<std::mutex> lock(mu_);
  const TimePoint now = clock_.Now();
  auto found = index_.find(std::string_view(key));
  if (found == index_.end()) return std::nullopt;
  EntryList::iterator it = found->second;
  // The same conditions as Get()'s kHit branch: usable, and no refresh for us to lead.
  if (it->credentials == nullptr || !Usable(*it->credentials, now) || ShouldLeadRefresh(*it, now)) {
    return std::nullopt;
  }
  entries_.splice(entries_.begin(), entries_, it);  // most recently used first; iterators stay valid
  ++stats_.hits;
  return CacheResult{it->credentials, CacheOutcome::kHit};
}

bool CredentialCache::ShouldLeadRefresh(const Entry& entry, TimePoint now) const {
  const bool due = now >= entry.refresh_at && now >= entry.next_attempt_at;
  return due && entry.flight == nullptr;
}

StatusOr<CacheResult> CredentialCache::Lead(std::unique_lock<std::mutex>& lock, const std::string& key,
                                            std::shared_ptr<Flight> flight, bool refreshing, const FetchFn& fetch) {
  ++stats_.fetches;
  lock.unlock();
  StatusOr<std::shared_ptr<const AwsCredentials>> result = CallFetch(fetch);
  lock.lock();
  // The fetch's completion time counts as the fetch time: lifetime and usability are
  // judged from when the credentials entered the cache.
  const TimePoint now = clock_.Now();
  if (result.ok() && !Usable(**result, now)) {
    result = InternalError("broker returned credentials that expire in less than " +
                           std::to_string(options_.min_remaining.count()) + " s");
  }

  // The entry is ours only if it still exists and still points at this flight: Evict()
  // (rule 7) may have removed it, and a later Get() may have created a new one.
  auto found = index_.find(std::string_view(key));
  const EntryList::iterator entry =
      (found != index_.end() && found->second->flight == flight) ? found->second : entries_.end();
  const bool owned = entry != entries_.end();

  auto finish_flight = [&flight](StatusOr<std::shared_ptr<const AwsCredentials>> flight_result) {
    flight->result.emplace(std::move(flight_result));
    flight->done = true;
    flight->done_cv.notify_all();
  };

  if (result.ok()) {
    if (owned) {
      entry->credentials = *result;
      entry->refresh_at = RefreshAt(now, *(*result)->expiration);
      entry->next_attempt_at = TimePoint{};
      entry->flight = nullptr;
    }
    if (refreshing) ++stats_.refreshes;
    finish_flight(result);
    if (owned) TrimToCapacity();
    return CacheResult{*result, refreshing ? CacheOutcome::kRefreshed : CacheOutcome::kMissFetched};
  }

  ++stats_.fetch_errors;
  const Status error = result.status();
  finish_flight(error);
  if (!owned) return error;
  entry->flight = nullptr;
  if (EvictsEntry(error.code())) {
    Erase(entry);
    ++stats_.error_evictions;
    return error;
  }
  if (entry->credentials != nullptr && Usable(*entry->credentials, now)) {
    // Rule 5: keep serving what still works and back off before the next attempt.
    entry->next_attempt_at = now + options_.refresh_retry_interval;
    ++stats_.stale_serves;
    return CacheResult{entry->credentials, CacheOutcome::kServedStaleOnError};
  }
  // Nothing usable to keep: a cold failure leaves no entry behind, so the next caller
  // retries at once.
  if (entry->credentials != nullptr) ++stats_.expired_removals;
  Erase(entry);
  return error;
}

bool CredentialCache::Evict(const CacheKey& cache_key) {
  const std::string key = EncodeCacheKey(cache_key);
  std::lock_guard<std::mutex> lock(mu_);
  auto found = index_.find(std::string_view(key));
  if (found == index_.end()) return false;
  Erase(found->second);
  ++stats_.explicit_evictions;
  return true;
}

size_t CredentialCache::RemoveExpired() {
  std::lock_guard<std::mutex> lock(mu_);
  const TimePoint now = clock_.Now();
  size_t removed = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto current = it++;
    if (current->flight != nullptr) continue;
    if (current->credentials != nullptr && Usable(*current->credentials, now)) continue;
    Erase(current);
    ++removed;
  }
  stats_.expired_removals += removed;
  return removed;
}

size_t CredentialCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.size();
}

CredentialCacheStats CredentialCache::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  CredentialCacheStats stats = stats_;
  stats.size = index_.size();
  return stats;
}

}  // namespace podidentity
