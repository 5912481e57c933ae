#include "server.h"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <httplib.h>

#include "error_mapping.h"
#include "event_server.h"
#include "podidentity/connection_pool.h"
#include "podidentity/log.h"

namespace podidentity::agent {

struct AgentMetrics {
  explicit AgentMetrics(MetricsRegistry& registry)
      : requests(registry.AddCounter("pod_identity_agent_requests_total",
                                     "Credential requests by HTTP status code and outcome.", {"code", "outcome"})),
        latency(registry.AddHistogram("pod_identity_agent_request_duration_seconds",
                                      "Time to answer a credential request.", LatencyBucketsSeconds())),
        cache(registry.AddCounter("pod_identity_agent_cache_total",
                                  "Credential cache results: hit, miss_fetched, miss_joined, refreshed, "
                                  "served_stale_on_error.",
                                  {"outcome"})),
        broker_latency(registry.AddHistogram("pod_identity_agent_broker_duration_seconds",
                                             "Time spent in broker calls (STS or EKS Auth).",
                                             LatencyBucketsSeconds())),
        broker_errors(registry.AddCounter("pod_identity_agent_errors_total",
                                          "Failed credential requests by error code.", {"code"})) {}
  Family<Counter>& requests;
  Family<Histogram>& latency;
  Family<Counter>& cache;
  Family<Histogram>& broker_latency;
  Family<Counter>& broker_errors;
};

namespace {

constexpr int kListenBacklog = 1024;
// Most connections the probe and metrics listeners serve at once (kubelet, Prometheus).
constexpr int kProbeThreads = 16;
// Request line + headers on the event-loop listeners.
constexpr size_t kMaxHeaderBytes = 64 * 1024;

}  // namespace

// Applies what cpp-httplib 0.11.4 gets wrong by default (FIELD-NOTES.md).
void TuneHttpServer(httplib::Server& server, const ServerOptions& options, int threads, int* listen_fd) {
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(100000);
  server.set_keep_alive_timeout(options.keep_alive_timeout_seconds);
  server.set_read_timeout(options.read_timeout_seconds, 0);
  server.set_write_timeout(options.write_timeout_seconds, 0);
  server.set_payload_max_length(options.max_body_bytes);
  // Requests cpp-httplib rejects itself (headers over 8 KiB, malformed request lines,
  // bodies over the limit) get the same JSON error shape as ours.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& response) {
    if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string code = response.status == 413 ? "body_too_large" : "bad_request";
    response.set_content("{\"code\":\"" + code + "\",\"message\":\"the request was rejected before it was read (" +
                             std::to_string(response.status) + "); headers are limited to 8 KiB\"}",
                         "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  // A thread per connection, started on demand up to `threads`: pods' SDKs keep their
  // connections open, and a new pod must not wait for an idle one to time out.
  ConnectionPool::Options pool;
  pool.max_threads = static_cast<size_t>(std::max(threads, 1));
  pool.min_threads = std::min<size_t>(pool.max_threads, 2);
  pool.max_queued = 1024;
  // cpp-httplib owns and deletes the queue it gets from this factory.
  server.new_task_queue = [pool] { return new ConnectionPool(pool); };
  server.set_socket_options([listen_fd](int fd) {
    // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, which would let a
    // second process bind the same address and silently take a share of the requests.
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *listen_fd = fd;  // the last socket configured before listen() is the listening one
  });
}

// Binds host:port (0: ephemeral) and raises the backlog from cpp-httplib's 5.
int BindHttpServer(httplib::Server& server, const ListenAddress& address, const int* listen_fd) {
  int port = address.port;
  if (port == 0) {
    port = server.bind_to_any_port(address.host);
    if (port <= 0) return -1;
  } else if (!server.bind_to_port(address.host, port)) {
    return -1;
  }
  if (*listen_fd >= 0) ::listen(*listen_fd, kListenBacklog);
  return port;
}

namespace {

CredentialRequest ToCredentialRequest(const HttpRequestView& request) {
  CredentialRequest out;
  out.host = request.host;
  out.authorization = request.authorization;
  out.has_authorization = request.has_authorization;
  return out;
}

void Json(httplib::Response& response, int status, const std::string& body) {
  response.status = status;
  response.set_content(body, "application/json");
}

}  // namespace

AgentServer::AgentServer(ServerOptions options, CredentialHandler& handler, RateLimiter& limiter,
                         MetricsRegistry& metrics, std::function<bool()> ready)
    : options_(std::move(options)),
      handler_(handler),
      limiter_(limiter),
      registry_(metrics),
      ready_(std::move(ready)),
      metrics_(std::make_unique<AgentMetrics>(metrics)) {}

AgentServer::~AgentServer() { Stop(); }

// Everything of a credentials request except the HTTP plumbing: the route checks (path,
// method, rate limit) and, after the handler, metrics and the log line. Shared by the
// cpp-httplib listeners and the event-loop listeners.
struct AgentServer::Route {
  AgentServer& server;

  // The answer when path, method or rate limit decide the request, else nullopt (and the
  // client's rate-limit token is taken: call once per request).
  std::optional<CredentialResponse> Precheck(std::string_view method, std::string_view path,
                                             std::string_view remote_addr) const {
    std::optional<HttpError> error;
    if (path != "/v1/credentials") {
      error = NotFoundPathError(path);
    } else if (method != "GET") {
      error = MethodNotAllowedError(method);
    } else if (!server.limiter_.Allow(remote_addr)) {
      error = ThrottledError();
    }
    if (!error) return std::nullopt;
    CredentialResponse answer;
    answer.status = error->status, answer.body = error->Body(), answer.outcome = error->code;
    return answer;
  }

  void Record(CredentialResponse& answer, std::string_view method, std::string_view path,
              std::string_view remote_addr, std::chrono::steady_clock::time_point start) const {
    AgentMetrics& metrics = *server.metrics_;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics.requests.With({std::to_string(answer.status), answer.outcome}).Inc();
    metrics.latency.With({}).Observe(seconds);
    if (!answer.cache.empty()) metrics.cache.With({answer.cache}).Inc();
    if (answer.broker_seconds > 0) metrics.broker_latency.With({}).Observe(answer.broker_seconds);
    if (answer.status != 200) metrics.broker_errors.With({answer.outcome}).Inc();
    const log::Level level = answer.status == 200 ? log::Level::kInfo : log::Level::kWarn;
    if (!log::Enabled(level)) return;
    // One line per request; the fields are identities and outcomes, never the token.
    std::vector<log::Field> fields = std::move(answer.log_fields);
    fields.emplace_back("method", std::string(method));
    fields.emplace_back("path", std::string(path.substr(0, 128)));
    fields.emplace_back("client", std::string(remote_addr));
    fields.emplace_back("status", answer.status);
    fields.emplace_back("outcome", answer.outcome);
    fields.emplace_back("cache_hit", answer.cache_hit);
    if (!answer.cache.empty()) fields.emplace_back("cache", answer.cache);
    fields.emplace_back("latency_ms", seconds * 1000);
    log::Write(level, "credentials request", fields);
  }
};

Status AgentServer::Start() {
  const Route route{*this};
  auto credentials_route = [this, route](const httplib::Request& request, httplib::Response& response) {
    const auto start = std::chrono::steady_clock::now();
    std::optional<CredentialResponse> answer = route.Precheck(request.method, request.path, request.remote_addr);
    if (!answer) {
      // get_header_value returns a copy: keep it alive while the views below are used.
      const std::string host = request.get_header_value("Host");
      const std::string authorization = request.get_header_value("Authorization");
      CredentialRequest credential_request;
      credential_request.host = host;
      credential_request.has_authorization = request.has_header("Authorization");
      credential_request.authorization = authorization;
      answer = handler_.Handle(credential_request);
    }
    if (answer->status == 405) response.set_header("Allow", "GET");
    Json(response, answer->status, answer->body);
    route.Record(*answer, request.method, request.path, request.remote_addr, start);
  };

  // The event-loop listeners: cache hits are answered on the loop (TryHandle never
  // blocks); everything else goes to a worker thread (Handle may call STS).
  auto event_fast = [this, route](const HttpRequestView& request) -> std::optional<HttpAnswer> {
    const auto start = std::chrono::steady_clock::now();
    std::optional<CredentialResponse> answer = route.Precheck(request.method, request.path, request.remote_addr);
    if (!answer) answer = handler_.TryHandle(ToCredentialRequest(request));
    if (!answer) return std::nullopt;
    HttpAnswer http{answer->status, std::move(answer->body), "application/json", answer->status == 405 ? "GET" : ""};
    route.Record(*answer, request.method, request.path, request.remote_addr, start);
    return http;
  };
  auto event_slow = [this, route](const HttpRequestView& request) -> HttpAnswer {
    const auto start = std::chrono::steady_clock::now();
    CredentialResponse answer = handler_.Handle(ToCredentialRequest(request));
    HttpAnswer http{answer.status, std::move(answer.body), "application/json", answer.status == 405 ? "GET" : ""};
    route.Record(answer, request.method, request.path, request.remote_addr, start);
    return http;
  };

  std::vector<ListenAddress> failed;
  for (const ListenAddress& address : options_.credentials) {
    if (options_.event_loops > 0) {
      EventServer::Options event_options;
      event_options.host = address.host;
      event_options.port = address.port;
      event_options.loops = options_.event_loops;
      event_options.max_workers = options_.threads;
      event_options.max_body_bytes = options_.max_body_bytes;
      // Room for oversized tokens, so that they reach the verifier and get 400
      // token_too_large (the token limit is 6 KiB) rather than a transport error.
      event_options.max_header_bytes = kMaxHeaderBytes;
      event_options.read_timeout = std::chrono::seconds(options_.read_timeout_seconds);
      event_options.write_timeout = std::chrono::seconds(options_.write_timeout_seconds);
      event_options.keep_alive_timeout = std::chrono::seconds(options_.keep_alive_timeout_seconds);
      auto server = std::make_unique<EventServer>(event_options, event_fast, event_slow);
      if (const Status bound = server->Bind(); !bound.ok()) {
        log::Error("cannot listen on a credentials address; the others keep serving",
                   {{"host", address.host}, {"port", address.port}, {"error", bound.message()}});
        continue;
      }
      bound_credentials_.push_back({address.host, server->port()});
      log::Info("listening", {{"listener", "credentials"}, {"host", address.host}, {"port", server->port()},
                              {"server", "event-loop"}, {"loops", options_.event_loops}});
      event_servers_.push_back(std::move(server));
      continue;
    }
    auto server = std::make_unique<httplib::Server>();
    auto fd = std::make_shared<int>(-1);
    TuneHttpServer(*server, options_, options_.threads, fd.get());
    for (const char* pattern : {".*"}) {
      server->Get(pattern, credentials_route);
      server->Post(pattern, credentials_route);
      server->Put(pattern, credentials_route);
      server->Delete(pattern, credentials_route);
      server->Patch(pattern, credentials_route);
      server->Options(pattern, credentials_route);
    }
    const int port = BindHttpServer(*server, address, fd.get());
    if (port < 0) {
      // An IPv4-only node cannot bind fd00:ec2::23: keep serving the other family.
      log::Error("cannot listen on a credentials address; the others keep serving",
                 {{"host", address.host}, {"port", address.port}, {"error", std::string(strerror(errno))}});
      failed.push_back(address);
      continue;
    }
    bound_credentials_.push_back({address.host, port});
    log::Info("listening", {{"listener", "credentials"}, {"host", address.host}, {"port", port}});
    servers_.push_back(std::move(server));
  }
  if (bound_credentials_.empty()) {
    return UnavailableError("could not listen on any credentials address (is the link-local address configured "
                            "on this node? the chart's init container adds it)");
  }

  auto probes = std::make_unique<httplib::Server>();
  auto probe_fd = std::make_shared<int>(-1);
  TuneHttpServer(*probes, options_, kProbeThreads, probe_fd.get());
  probes->Get("/healthz", [](const httplib::Request&, httplib::Response& response) {
    Json(response, 200, "{\"status\":\"ok\"}");
  });
  probes->Get("/readyz", [this](const httplib::Request&, httplib::Response& response) {
    const bool ready = ready_ ? ready_() : true;
    Json(response, ready ? 200 : 503, ready ? "{\"status\":\"ready\"}" : "{\"status\":\"not ready\"}");
  });
  probe_port_ = BindHttpServer(*probes, options_.probes, probe_fd.get());
  if (probe_port_ < 0) {
    return UnavailableError("could not listen on the probe address " + options_.probes.host + ":" +
                            std::to_string(options_.probes.port));
  }
  log::Info("listening", {{"listener", "probes"}, {"host", options_.probes.host}, {"port", probe_port_}});
  servers_.push_back(std::move(probes));

  auto metrics = std::make_unique<httplib::Server>();
  auto metrics_fd = std::make_shared<int>(-1);
  TuneHttpServer(*metrics, options_, kProbeThreads, metrics_fd.get());
  metrics->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry_.Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  metrics_port_ = BindHttpServer(*metrics, options_.metrics, metrics_fd.get());
  if (metrics_port_ < 0) {
    return UnavailableError("could not listen on the metrics address " + options_.metrics.host + ":" +
                            std::to_string(options_.metrics.port));
  }
  log::Info("listening", {{"listener", "metrics"}, {"host", options_.metrics.host}, {"port", metrics_port_}});
  servers_.push_back(std::move(metrics));

  for (auto& server : event_servers_) {
    if (const Status started = server->Start(); !started.ok()) return started;
  }
  for (auto& server : servers_) {
    httplib::Server* raw = server.get();
    threads_.emplace_back([raw] { raw->listen_after_bind(); });
  }
  return Status::Ok();
}

void AgentServer::Stop() {
  // stop() closes the listening socket; listen_after_bind() returns once the worker
  // pool has finished the requests in flight.
  for (auto& server : event_servers_) server->Stop();
  for (auto& server : servers_) server->stop();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

}  // namespace podidentity::agent
