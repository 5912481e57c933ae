#include "server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <httplib.h>
#include <mutex>
#include <thread>
#include <vector>

#include "admission_handler.h"
#include "podidentity/connection_pool.h"
#include "podidentity/json_util.h"
#include "podidentity/log.h"

namespace podidentity::webhook {

WebhookMetrics::WebhookMetrics(MetricsRegistry& registry)
    : admissions(registry.AddCounter("pod_identity_webhook_admission_requests_total",
                                     "Admission requests on /mutate by outcome.", {"outcome"})),
      patched_pods(registry.AddCounter("pod_identity_webhook_patched_pods_total",
                                       "Admission responses that carried a JSON patch.")),
      patch_operations(registry.AddCounter("pod_identity_webhook_patch_operations_total",
                                           "JSON patch operations issued.")),
      admission_latency(registry.AddHistogram("pod_identity_webhook_admission_duration_seconds",
                                              "Time to answer an admission request, body read included.",
                                              LatencyBucketsSeconds())),
      http_responses(registry.AddCounter("pod_identity_webhook_http_responses_total",
                                         "HTTP responses by status code, every route.", {"code"})),
      requests_in_flight(registry.AddGauge("pod_identity_webhook_requests_in_flight",
                                           "Requests being handled now (this one included).")),
      association_reloads(registry.AddCounter("pod_identity_associations_reloads_total",
                                              "Association file reloads by result.", {"result"})),
      associations_loaded(registry.AddGauge("pod_identity_associations_loaded",
                                            "Associations in the snapshot being served.")),
      certificate_reloads(registry.AddCounter("pod_identity_webhook_certificate_reloads_total",
                                              "Serving certificate reloads by result.", {"result"})) {}

namespace {

constexpr int kListenBacklog = 1024;
// Requests per keep-alive connection: the API server keeps its connections open, and
// each new one costs a TLS handshake.
constexpr size_t kKeepAliveMaxRequests = 100000;
// Threads kept even when idle; more start on demand (ConnectionPool).
constexpr size_t kMinThreads = 4;

constexpr std::string_view kMutatePath = "/mutate";

std::string ErrorBody(std::string_view message) {
  std::string body = "{\"error\":";
  AppendJsonString(body, message);
  body += '}';
  return body;
}

void SetJson(httplib::Response& response, int status, std::string body) {
  response.status = status;
  response.set_content(std::move(body), "application/json");
}

std::string DefaultMessage(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 413: return "request too large";
    case 414: return "request URI too long";
    case 415: return "unsupported media type";
    case 416: return "range not satisfiable";
    case 417: return "expectation failed";
    case 431: return "request header fields too large";
    case 500: return "internal error";
    default: return "HTTP " + std::to_string(status);
  }
}

// Request values we echo are cut short: they come from the client.
std::string Clip(std::string_view text) {
  constexpr size_t kMax = 128;
  return std::string(text.substr(0, kMax)) + (text.size() > kMax ? "..." : "");
}

// "application/json", with or without parameters ("; charset=utf-8"), any case.
bool IsJsonContentType(std::string_view value) {
  const size_t semicolon = value.find(';');
  std::string_view media = value.substr(0, semicolon);
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  constexpr std::string_view kJson = "application/json";
  return media.size() == kJson.size() &&
         std::equal(media.begin(), media.end(), kJson.begin(),
                    [](char a, char b) { return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b; });
}

// The methods each known path answers; empty for an unknown path.
std::string_view AllowedMethods(std::string_view path) {
  if (path == kMutatePath) return "POST";
  if (path == "/healthz" || path == "/readyz" || path == "/metrics") return "GET, HEAD";
  return "";
}

bool MethodAllowed(std::string_view allowed, std::string_view method) {
  size_t start = 0;
  while (start < allowed.size()) {
    size_t end = allowed.find(',', start);
    if (end == std::string_view::npos) end = allowed.size();
    std::string_view one = allowed.substr(start, end - start);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    if (one == method) return true;
    start = end + 1;
  }
  return false;
}

// Counts a handler as in flight for its whole run.
class InFlight {
 public:
  explicit InFlight(Gauge& gauge) : gauge_(gauge) { gauge_.Add(1); }
  ~InFlight() { gauge_.Add(-1); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  Gauge& gauge_;
};

// Reads the whole body, at most `limit` bytes. Returns 0 when it was read, else the
// HTTP status to answer (413 over the limit; cpp-httplib's own status otherwise, e.g.
// 415 for an unknown Content-Encoding, 400 for a truncated body). Reading even a body we
// will refuse keeps the connection usable for the client's next request.
int ReadBody(const httplib::Request& request, httplib::Response& response, const httplib::ContentReader& reader,
             size_t limit, std::string& body) {
  bool too_large = false;
  auto receive = [&](const char* data, size_t length) {
    if (length > limit - body.size()) {
      too_large = true;
      return false;
    }
    body.append(data, length);
    return true;
  };
  bool ok = false;
  if (request.is_multipart_form_data()) {
    // Multipart bodies only reach here to be refused (415); they must still be read
    // through the multipart overload, which needs both callbacks.
    ok = reader([](const httplib::MultipartFormData&) { return true; }, receive);
  } else {
    ok = reader(receive);
  }
  if (ok) return 0;
  // cpp-httplib checks Content-Length against set_payload_max_length() itself (and
  // discards the body so the connection stays usable), leaving 413 in the status.
  if (too_large || response.status == 413) return 413;
  return response.status >= 400 ? response.status : 400;
}

}  // namespace

WebhookServer::WebhookServer(const WebhookConfig& config, const AssociationStore& associations,
                             const tls::CertificateProvider& certificate, MetricsRegistry& registry,
                             WebhookMetrics& metrics, Random& random)
    : config_(config),
      associations_(associations),
      certificate_(certificate),
      registry_(registry),
      metrics_(metrics),
      random_(random) {}

WebhookServer::~WebhookServer() { Stop(); }

bool WebhookServer::ready() const { return !stopping_.load() && associations_.loaded(); }

Status WebhookServer::Bind() {
  Status tls_status;
  server_ = std::make_unique<httplib::SSLServer>([this, &tls_status](SSL_CTX& ctx) {
    tls_status = tls::ConfigureServerContext(ctx, certificate_);
    return tls_status.ok();
  });
  if (!server_->is_valid()) {
    return tls_status.ok() ? InternalError("cannot create the TLS context: " + tls::DrainOpenSslErrors())
                           : tls_status;
  }
  httplib::SSLServer& server = *server_;

  // cpp-httplib 0.11.4's defaults, corrected (FIELD-NOTES.md).
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(kKeepAliveMaxRequests);
  server.set_keep_alive_timeout(static_cast<time_t>(config_.keep_alive_timeout.count()));
  server.set_read_timeout(config_.read_timeout);
  server.set_write_timeout(config_.write_timeout);
  server.set_payload_max_length(config_.max_request_bytes);
  // A thread per connection, started on demand up to --threads, so idle keep-alive
  // connections of the API server never make a new one wait (ConnectionPool).
  ConnectionPool::Options pool;
  pool.max_threads = static_cast<size_t>(config_.EffectiveThreads());
  pool.min_threads = std::min<size_t>(pool.max_threads, kMinThreads);
  pool.max_queued = static_cast<size_t>(config_.max_queued_connections);
  // cpp-httplib owns and deletes the queue it gets from this factory.
  server.new_task_queue = [pool] { return new ConnectionPool(pool); };
  server.set_socket_options([this](int fd) {
    // SO_REUSEADDR only: cpp-httplib's default SO_REUSEPORT would let a second process
    // bind the same port and silently share its traffic.
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0 && address.ss_family == AF_INET6) {
      int no = 0;  // "::" also accepts IPv4 (dual stack)
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof(no));
    }
    listen_fd_ = fd;  // the last socket configured before bind() is the listening one
  });

  // Every method on every path reaches Route, so that 404/405 are ours and every body
  // is read through the bounded reader (cpp-httplib 0.11.4 does not bound chunked
  // bodies, nor a decompressed one).
  auto route = [this](const httplib::Request& request, httplib::Response& response,
                      const httplib::ContentReader* reader) {
    InFlight in_flight(metrics_.requests_in_flight.With({}));
    const auto start = std::chrono::steady_clock::now();
    const std::string_view allowed = AllowedMethods(request.path);
    const bool is_mutate = request.path == kMutatePath;
    std::string body;
    // Read (and bound) any body first, whatever the answer will be.
    int read_status = 0;
    if (reader != nullptr) read_status = ReadBody(request, response, *reader, config_.max_request_bytes, body);
    if (read_status == 413) response.set_header("Connection", "close");

    if (allowed.empty()) {
      SetJson(response, 404, ErrorBody("no such path: " + Clip(request.path)));
    } else if (!MethodAllowed(allowed, request.method)) {
      response.set_header("Allow", std::string(allowed));
      SetJson(response, 405,
              ErrorBody("method " + Clip(request.method) + " is not allowed on " + request.path + "; use " +
                        std::string(allowed)));
    } else if (request.path == "/healthz") {
      SetJson(response, 200, "{\"status\":\"ok\"}");
    } else if (request.path == "/readyz") {
      if (ready()) {
        SetJson(response, 200, "{\"status\":\"ready\"}");
      } else {
        SetJson(response, 503,
                stopping_.load() ? "{\"status\":\"not ready\",\"reason\":\"shutting down\"}"
                                 : "{\"status\":\"not ready\",\"reason\":\"associations not loaded\"}");
      }
    } else if (request.path == "/metrics") {
      response.status = 200;
      response.set_content(registry_.Render(), "text/plain; version=0.0.4; charset=utf-8");
    }
    if (!is_mutate || !MethodAllowed(allowed, request.method)) {
      metrics_.http_responses.With({std::to_string(response.status)}).Inc();
      return;
    }

    // POST /mutate: HTTP checks, then the admission use case.
    AdmissionOutcome outcome;
    if (read_status == 413) {
      outcome.http_status = 413;
      outcome.outcome = "payload_too_large";
      outcome.body = ErrorBody("request body exceeds the limit of " + std::to_string(config_.max_request_bytes) +
                               " bytes");
    } else if (read_status != 0) {
      outcome.http_status = read_status;
      outcome.outcome = "bad_body";
      outcome.body = ErrorBody("could not read the request body (HTTP " + std::to_string(read_status) + ")");
    } else if (!IsJsonContentType(request.get_header_value("Content-Type"))) {
      outcome.http_status = 415;
      outcome.outcome = "unsupported_media_type";
      outcome.body = ErrorBody("Content-Type must be application/json, got '" +
                               Clip(request.get_header_value("Content-Type")) + "'");
    } else {
      std::shared_ptr<const AssociationIndex> snapshot = associations_.Current();
      outcome = HandleAdmission(body, snapshot.get(), config_.mutation, random_);
    }
    SetJson(response, outcome.http_status, std::move(outcome.body));

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics_.admissions.With({outcome.outcome}).Inc();
    metrics_.admission_latency.With({}).Observe(seconds);
    metrics_.http_responses.With({std::to_string(outcome.http_status)}).Inc();
    if (outcome.patch_operations > 0) {
      metrics_.patched_pods.With({}).Inc();
      metrics_.patch_operations.With({}).Inc(static_cast<double>(outcome.patch_operations));
    }
    // One line per admission: who and what, never the pod body, never a token.
    std::vector<log::Field> fields = std::move(outcome.log_fields);
    if (outcome.http_status != 200 && fields.empty()) fields.emplace_back("outcome", outcome.outcome);
    fields.emplace_back("status", outcome.http_status);
    fields.emplace_back("latency_ms", seconds * 1000.0);
    log::Write(outcome.http_status == 200 ? log::Level::kInfo : log::Level::kWarn, "admission", fields);
  };
  auto plain = [route](const httplib::Request& request, httplib::Response& response) {
    route(request, response, nullptr);
  };
  auto with_body = [route](const httplib::Request& request, httplib::Response& response,
                           const httplib::ContentReader& reader) { route(request, response, &reader); };
  const std::string any = ".*";
  server.Get(any, plain);  // also HEAD
  server.Options(any, plain);
  server.Delete(any, plain);  // DELETE without a body
  server.Post(any, with_body);
  server.Put(any, with_body);
  server.Patch(any, with_body);
  server.Delete(any, with_body);

  // Statuses cpp-httplib produces itself (a malformed request line, an unsupported
  // method) get a JSON error body like ours.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& response) {
        if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        SetJson(response, response.status, ErrorBody(DefaultMessage(response.status)));
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler([](const httplib::Request& request, httplib::Response& response,
                                  std::exception_ptr error) {
    std::string what = "unknown exception";
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log::Error("handler failed", {{"path", Clip(request.path)}, {"error", what}});
    SetJson(response, 500, ErrorBody("internal error"));
  });

  errno = 0;
  if (!server.bind_to_port(config_.bind_address, config_.port)) {
    const int error = errno;
    return UnavailableError("cannot listen on " + config_.bind_address + " port " + std::to_string(config_.port) +
                            (error != 0 ? ": " + std::string(std::strerror(error)) : ""));
  }
  // cpp-httplib listens with a backlog of 5; listening again only raises it.
  if (listen_fd_ < 0 || ::listen(listen_fd_, kListenBacklog) != 0) {
    return InternalError("cannot raise the listen backlog: " + std::string(std::strerror(errno)));
  }
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return InternalError("getsockname: " + std::string(std::strerror(errno)));
  }
  port_ = address.ss_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port)
                                        : ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
  return Status::Ok();
}

Status WebhookServer::Serve() {
  if (!server_) return FailedPreconditionError("Serve() before Bind()");
  bool ok = true;
  serve_started_.store(true);
  if (!stopping_.load()) ok = server_->listen_after_bind();
  serve_done_.store(true);
  if (!ok && !stopping_.load()) return UnavailableError("the server stopped accepting connections unexpectedly");
  return Status::Ok();
}

void WebhookServer::Stop() {
  if (stopping_.exchange(true) || !server_) return;
  // stop() does nothing until listen_after_bind() has started; Serve() skips listening
  // once stopping_ is set, so wait for one or the other. (Both flags are seq_cst: either
  // Serve() sees stopping_, or this loop sees serve_started_.)
  while (serve_started_.load() && !serve_done_.load()) {
    if (server_->is_running()) {
      server_->stop();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace podidentity::webhook
