// Key sources: where the verifier gets the service-account signing keys. A JWKS file
// (reloaded when it changes), or the API server's /openid/v1/jwks fetched with the
// agent's own service-account token. Each keeps the current key set as an immutable
// snapshot, refreshes it periodically and on an unknown kid (rate limited, so tokens
// with made-up kids cannot be used to hammer the API server), and keeps the last good
// set when a refresh fails.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "podidentity/clock.h"
#include "podidentity/http_client.h"
#include "podidentity/jwks.h"
#include "podidentity/periodic_task.h"
#include "podidentity/status.h"

namespace podidentity {

// Why a refresh ran, and what came of it (labels of the JWKS refresh metric).
enum class JwksRefreshTrigger { kInitial, kPeriodic, kUnknownKid };
enum class JwksRefreshResult {
  kUpdated,      // a new, valid key set is now current
  kUnchanged,    // the document (file identity or body) did not change
  kFailed,       // fetch or parse failed; the previous key set stays current
  kRateLimited,  // an unknown-kid refresh was refused: one ran less than the minimum interval ago
};
std::string_view JwksRefreshTriggerName(JwksRefreshTrigger trigger);  // "initial", "periodic", "unknown_kid"
std::string_view JwksRefreshResultName(JwksRefreshResult result);     // "updated", "unchanged", "failed", "rate_limited"

// Called after every refresh attempt (from the refreshing thread). `status` explains
// kFailed. Runs under the source's fetch mutex: must be thread-safe and quick (e.g.
// increment a counter, write a log line) and must not call back into the source.
using JwksRefreshObserver = std::function<void(JwksRefreshTrigger, JwksRefreshResult, const Status& status)>;

// Counts of refresh results, for tests and /metrics.
struct JwksRefreshStats {
  uint64_t updated = 0;
  uint64_t unchanged = 0;
  uint64_t failed = 0;
  uint64_t rate_limited = 0;
};

// Where the verifier gets keys. Thread-safety: implementations are thread-safe;
// Current() is lock-free.
class JwksSource {
 public:
  virtual ~JwksSource() = default;
  // The current key set; null until the first successful load.
  virtual std::shared_ptr<const Jwks> Current() const = 0;
  // Called by the verifier when a token names a kid the current set lacks. Refreshes
  // at most once per minimum interval (measured on the injected clock); a caller that
  // arrives while a refresh runs waits for it, so its retry sees the new keys.
  // Returns the refresh result (kRateLimited when refused).
  virtual JwksRefreshResult RefreshForUnknownKid() = 0;
};

// A fixed key set (tests, benchmarks). RefreshForUnknownKid is always kRateLimited.
class StaticJwksSource final : public JwksSource {
 public:
  explicit StaticJwksSource(Jwks jwks) : jwks_(std::make_shared<const Jwks>(std::move(jwks))) {}
  std::shared_ptr<const Jwks> Current() const override { return jwks_; }
  JwksRefreshResult RefreshForUnknownKid() override { return JwksRefreshResult::kRateLimited; }

 private:
  const std::shared_ptr<const Jwks> jwks_;
};

struct RefreshingJwksSourceOptions {
  // How often RefreshIfDue (and the background thread) reloads the keys. Kubernetes
  // rotates keys rarely; the unknown-kid refresh covers a rotation in between.
  std::chrono::seconds refresh_interval{300};
  // After a failed attempt (API server down, bad file), the next one is due this soon
  // instead; this also covers a start without keys.
  std::chrono::seconds retry_interval{10};
  // At most one unknown-kid refresh per this interval.
  std::chrono::seconds unknown_kid_min_interval{30};
  // How often the background thread checks whether a refresh is due.
  std::chrono::milliseconds poll_interval{1000};
  JwksParseOptions parse;
  JwksRefreshObserver observer;  // optional
};

// The refresh machinery shared by the file and URL sources: a snapshot behind an
// atomic shared_ptr, a mutex that serialises fetches, the rate limit and an optional
// background thread. Thread-safe: Current() is lock-free; fetch_mu_ guards the
// fetch state (last_periodic_, last_unknown_kid_, last_document_) and serialises
// fetches; stats are atomics; Start()/Stop() may be called from any thread
// (PeriodicTask).
class RefreshingJwksSource : public JwksSource {
 public:
  ~RefreshingJwksSource() override;
  RefreshingJwksSource(const RefreshingJwksSource&) = delete;
  RefreshingJwksSource& operator=(const RefreshingJwksSource&) = delete;

  std::shared_ptr<const Jwks> Current() const override { return current_.load(); }
  JwksRefreshResult RefreshForUnknownKid() override;

  // Loads the keys now (start-up). An error means there is no usable key set yet:
  // the agent should exit before it listens.
  Status Load();
  // Refreshes when `refresh_interval` has passed since the last attempt, or
  // `retry_interval` when that attempt failed (on the injected clock).
  // Returns the result, or nullopt when no refresh was due.
  std::optional<JwksRefreshResult> RefreshIfDue();

  // Starts / stops a background thread that calls RefreshIfDue every poll_interval.
  // A second Start() while running is a no-op. Stop() is idempotent, returns promptly
  // and is called by the destructor (derived classes call it too: the thread calls
  // their Fetch()).
  void Start();
  void Stop();

  JwksRefreshStats stats() const;

 protected:
  RefreshingJwksSource(const Clock& clock, RefreshingJwksSourceOptions options);
  // Fetches the document. nullopt means "unchanged since the last successful fetch"
  // (e.g. the file's identity did not change). Called with fetch_mu_ held.
  virtual StatusOr<std::optional<std::string>> Fetch() = 0;
  // Names the source in messages ("JWKS file /x", "JWKS URL https://...").
  virtual std::string Describe() const = 0;

 private:
  // fetch_mu_ held. On kFailed, *error (if given) says why.
  JwksRefreshResult RefreshLocked(JwksRefreshTrigger trigger, Status* error);
  void Record(JwksRefreshTrigger trigger, JwksRefreshResult result, const Status& status);

  const Clock& clock_;
  const RefreshingJwksSourceOptions options_;
  std::atomic<std::shared_ptr<const Jwks>> current_;

  std::mutex fetch_mu_;
  std::optional<std::chrono::system_clock::time_point> last_refresh_;      // guarded by fetch_mu_
  std::optional<std::chrono::system_clock::time_point> last_unknown_kid_;  // guarded by fetch_mu_
  std::string last_document_;                                              // guarded by fetch_mu_
  bool last_attempt_failed_ = false;                                       // guarded by fetch_mu_

  std::atomic<uint64_t> updated_{0}, unchanged_{0}, failed_{0}, rate_limited_{0};

  PeriodicTask poller_;  // last member: its thread uses the ones above
};

// A JWKS file (e.g. from a ConfigMap). A refresh re-reads it only when its identity
// (device, inode, size, modification time) changed; ConfigMap updates swap a symlink,
// which changes the inode.
class FileJwksSource final : public RefreshingJwksSource {
 public:
  FileJwksSource(std::string path, const Clock& clock, RefreshingJwksSourceOptions options = {});
  ~FileJwksSource() override;

 protected:
  StatusOr<std::optional<std::string>> Fetch() override;
  std::string Describe() const override;

 private:
  const std::string path_;
  std::string last_identity_;  // guarded by the base's fetch_mu_ (Fetch runs under it)
};

struct UrlJwksSourceOptions {
  std::string url = "https://kubernetes.default.svc/openid/v1/jwks";
  // The agent's own service-account token, sent as "Authorization: Bearer". Read on
  // every fetch (kubelet rotates it). Empty: no Authorization header.
  std::string bearer_token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::chrono::milliseconds timeout{5000};
  RefreshingJwksSourceOptions refresh;
};

// The API server's JWKS over HTTPS. The CA that authenticates the API server is a
// property of the HttpClient passed in (HttpClientOptions::ca_file).
class UrlJwksSource final : public RefreshingJwksSource {
 public:
  UrlJwksSource(HttpClient& http, const Clock& clock, UrlJwksSourceOptions options);
  ~UrlJwksSource() override;

 protected:
  StatusOr<std::optional<std::string>> Fetch() override;
  std::string Describe() const override;

 private:
  HttpClient& http_;
  const UrlJwksSourceOptions options_;
};

// Reads a bearer token file: at most 64 KiB, surrounding whitespace (a trailing
// newline) removed, must not be empty. The error names the file, never the content.
StatusOr<std::string> ReadBearerTokenFile(const std::string& path);

}  // namespace podidentity
