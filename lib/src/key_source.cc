#include "podidentity/key_source.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "podidentity/log.h"

namespace podidentity {
namespace {

constexpr size_t kMaxBearerTokenBytes = 64 * 1024;

StatusOr<std::string> ReadWholeFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return UnavailableError("cannot open " + path + ": " + std::strerror(errno));
  std::string data;
  char buffer[8192];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    data.append(buffer, static_cast<size_t>(in.gcount()));
    if (data.size() > max_bytes) {
      return InvalidArgumentError(path + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  if (in.bad()) return UnavailableError("cannot read " + path);
  return data;
}

void LogSkippedKeys(const std::string& source, const Jwks& jwks) {
  for (const SkippedKey& skipped : jwks.skipped()) {
    log::Warn("JWKS key skipped", {{"source", source},
                                   {"index", static_cast<uint64_t>(skipped.index)},
                                   {"kid", skipped.kid},
                                   {"reason", skipped.reason}});
  }
}

}  // namespace

std::string_view JwksRefreshTriggerName(JwksRefreshTrigger trigger) {
  switch (trigger) {
    case JwksRefreshTrigger::kInitial: return "initial";
    case JwksRefreshTrigger::kPeriodic: return "periodic";
    case JwksRefreshTrigger::kUnknownKid: return "unknown_kid";
  }
  return "unknown";
}

std::string_view JwksRefreshResultName(JwksRefreshResult result) {
  switch (result) {
    case JwksRefreshResult::kUpdated: return "updated";
    case JwksRefreshResult::kUnchanged: return "unchanged";
    case JwksRefreshResult::kFailed: return "failed";
    case JwksRefreshResult::kRateLimited: return "rate_limited";
  }
  return "unknown";
}

StatusOr<std::string> ReadBearerTokenFile(const std::string& path) {
  StatusOr<std::string> data = ReadWholeFile(path, kMaxBearerTokenBytes);
  if (!data.ok()) return data.status();
  std::string& token = *data;
  const auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!token.empty() && is_space(token.back())) token.pop_back();
  size_t start = 0;
  while (start < token.size() && is_space(token[start])) ++start;
  token.erase(0, start);
  if (token.empty()) return UnavailableError("token file " + path + " is empty");
  return std::move(token);
}

// ---------------------------------------------------------------------------------------
// RefreshingJwksSource

RefreshingJwksSource::RefreshingJwksSource(const Clock& clock, RefreshingJwksSourceOptions options)
    : clock_(clock), options_(std::move(options)) {}

RefreshingJwksSource::~RefreshingJwksSource() { Stop(); }

void RefreshingJwksSource::Record(JwksRefreshTrigger trigger, JwksRefreshResult result, const Status& status) {
  switch (result) {
    case JwksRefreshResult::kUpdated: ++updated_; break;
    case JwksRefreshResult::kUnchanged: ++unchanged_; break;
    case JwksRefreshResult::kFailed: ++failed_; break;
    case JwksRefreshResult::kRateLimited: ++rate_limited_; break;
  }
  if (options_.observer) options_.observer(trigger, result, status);
}

JwksRefreshResult RefreshingJwksSource::RefreshLocked(JwksRefreshTrigger trigger, Status* error) {
  last_refresh_ = clock_.Now();
  last_attempt_failed_ = true;  // until it succeeds
  const auto fail = [&](Status status) {
    Record(trigger, JwksRefreshResult::kFailed, status);
    if (error != nullptr) *error = std::move(status);
    return JwksRefreshResult::kFailed;
  };
  StatusOr<std::optional<std::string>> fetched = Fetch();
  if (!fetched.ok()) return fail(fetched.status());
  // Unchanged: same file identity, or the same bytes as the last good document.
  if (current_.load() != nullptr && (!fetched->has_value() || **fetched == last_document_)) {
    last_attempt_failed_ = false;
    Record(trigger, JwksRefreshResult::kUnchanged, Status::Ok());
    return JwksRefreshResult::kUnchanged;
  }
  if (!fetched->has_value()) return fail(InternalError(Describe() + ": no document"));
  StatusOr<Jwks> parsed = Jwks::Parse(**fetched, options_.parse);
  if (!parsed.ok()) return fail(Status(parsed.status().code(), Describe() + ": " + parsed.status().message()));
  LogSkippedKeys(Describe(), *parsed);
  last_document_ = std::move(**fetched);
  current_.store(std::make_shared<const Jwks>(std::move(parsed).value()));
  last_attempt_failed_ = false;
  Record(trigger, JwksRefreshResult::kUpdated, Status::Ok());
  return JwksRefreshResult::kUpdated;
}

Status RefreshingJwksSource::Load() {
  std::lock_guard<std::mutex> lock(fetch_mu_);
  Status error;
  if (RefreshLocked(JwksRefreshTrigger::kInitial, &error) == JwksRefreshResult::kFailed) return error;
  return Status::Ok();
}

JwksRefreshResult RefreshingJwksSource::RefreshForUnknownKid() {
  // Callers that arrive during a refresh block here and then find the window closed:
  // their retry sees whatever that refresh loaded.
  std::lock_guard<std::mutex> lock(fetch_mu_);
  const auto now = clock_.Now();
  if (last_unknown_kid_.has_value() && now - *last_unknown_kid_ < options_.unknown_kid_min_interval) {
    Record(JwksRefreshTrigger::kUnknownKid, JwksRefreshResult::kRateLimited, Status::Ok());
    return JwksRefreshResult::kRateLimited;
  }
  last_unknown_kid_ = now;
  return RefreshLocked(JwksRefreshTrigger::kUnknownKid, nullptr);
}

std::optional<JwksRefreshResult> RefreshingJwksSource::RefreshIfDue() {
  std::lock_guard<std::mutex> lock(fetch_mu_);
  const auto interval = last_attempt_failed_ ? options_.retry_interval : options_.refresh_interval;
  if (last_refresh_.has_value() && clock_.Now() - *last_refresh_ < interval) return std::nullopt;
  return RefreshLocked(JwksRefreshTrigger::kPeriodic, nullptr);
}

void RefreshingJwksSource::Start() {
  poller_.Start(options_.poll_interval, [this] { static_cast<void>(RefreshIfDue()); });
}

void RefreshingJwksSource::Stop() { poller_.Stop(); }

JwksRefreshStats RefreshingJwksSource::stats() const {
  return JwksRefreshStats{updated_.load(), unchanged_.load(), failed_.load(), rate_limited_.load()};
}

// ---------------------------------------------------------------------------------------
// FileJwksSource

FileJwksSource::FileJwksSource(std::string path, const Clock& clock, RefreshingJwksSourceOptions options)
    : RefreshingJwksSource(clock, std::move(options)), path_(std::move(path)) {}

// The background thread calls Fetch(): stop it before this object's members go away.
FileJwksSource::~FileJwksSource() { Stop(); }

std::string FileJwksSource::Describe() const { return "JWKS file " + path_; }

StatusOr<std::optional<std::string>> FileJwksSource::Fetch() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    return UnavailableError("cannot stat JWKS file " + path_ + ": " + std::strerror(errno));
  }
  const std::string identity = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
                               std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
                               std::to_string(st.st_mtim.tv_nsec);
  if (identity == last_identity_ && Current() != nullptr) return std::optional<std::string>();
  StatusOr<std::string> data = ReadWholeFile(path_, 1 << 20);
  if (!data.ok()) return data.status();
  // Remember the identity even if the content turns out invalid: re-parsing the same
  // bad file every poll would only repeat the same error.
  last_identity_ = identity;
  return std::optional<std::string>(std::move(data).value());
}

// ---------------------------------------------------------------------------------------
// UrlJwksSource

UrlJwksSource::UrlJwksSource(HttpClient& http, const Clock& clock, UrlJwksSourceOptions options)
    : RefreshingJwksSource(clock, options.refresh), http_(http), options_(std::move(options)) {}

UrlJwksSource::~UrlJwksSource() { Stop(); }

std::string UrlJwksSource::Describe() const { return "JWKS URL " + options_.url; }

StatusOr<std::optional<std::string>> UrlJwksSource::Fetch() {
  HttpRequest request;
  request.method = "GET";
  request.url = options_.url;
  request.timeout = options_.timeout;
  request.headers.emplace_back("Accept", "application/json");
  if (!options_.bearer_token_file.empty()) {
    StatusOr<std::string> token = ReadBearerTokenFile(options_.bearer_token_file);
    if (!token.ok()) return Status(token.status().code(), "JWKS fetch: " + token.status().message());
    request.headers.emplace_back("Authorization", "Bearer " + *token);
  }
  StatusOr<HttpResponse> response = http_.Send(request);
  if (!response.ok()) {
    return Status(response.status().code(), Describe() + ": " + response.status().message());
  }
  if (response->status != 200) {
    return UnavailableError(Describe() + ": HTTP " + std::to_string(response->status));
  }
  return std::optional<std::string>(std::move(response->body));
}

}  // namespace podidentity
