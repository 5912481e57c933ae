// The agent's HTTP side: the credentials listeners (one per served address, plain HTTP
// on the link-local addresses, as EKS's agent), the probe listener (/healthz, /readyz)
// and the metrics listener (/metrics). cpp-httplib's defaults are unsafe for a server
// (see ../shared/FIELD-NOTES.md); every listener is tuned here.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "credential_handler.h"
#include "podidentity/metrics.h"
#include "podidentity/status.h"
#include "rate_limiter.h"

namespace httplib {
class Server;
}

namespace podidentity::agent {

struct ListenAddress {
  std::string host;  // an IP literal, without brackets
  int port = 0;      // 0: ephemeral (tests)
};

struct ServerOptions {
  std::vector<ListenAddress> credentials;  // the served addresses
  ListenAddress probes;                    // /healthz, /readyz
  ListenAddress metrics;                   // /metrics
  int threads = 256;                       // most connections per credentials listener
  int read_timeout_seconds = 5;
  int write_timeout_seconds = 5;
  int keep_alive_timeout_seconds = 30;
  size_t max_body_bytes = 4096;  // GET requests carry no body
  // Credentials listeners on epoll event loops (EventServer) instead of cpp-httplib's
  // thread per connection: this many loops per listener; 0 = cpp-httplib. `threads` is
  // then the most requests on the worker pool at once (requests the cache cannot answer).
  int event_loops = 2;
};

// The agent's cpp-httplib settings (TCP_NODELAY, keep-alive limits, timeouts, body
// limit, JSON error bodies, SO_REUSEADDR without SO_REUSEPORT, a ConnectionPool of at most
// `threads`); *listen_fd receives the listening socket.
// Public so that bench/micro/httplib_static measures exactly the agent's server.
void TuneHttpServer(httplib::Server& server, const ServerOptions& options, int threads, int* listen_fd);
// Binds host:port (0: ephemeral) and raises the backlog from cpp-httplib's 5 (after
// TuneHttpServer). Returns the port, or -1.
int BindHttpServer(httplib::Server& server, const ListenAddress& address, const int* listen_fd);

struct AgentMetrics;  // defined in server.cc
class EventServer;

// Thread-safety: Start/Stop from one thread; handlers run on cpp-httplib's pools or on
// the event loops and their worker pool.
class AgentServer {
 public:
  AgentServer(ServerOptions options, CredentialHandler& handler, RateLimiter& limiter, MetricsRegistry& metrics,
              std::function<bool()> ready);
  ~AgentServer();

  // Binds every listener. A credentials address that cannot be bound (an IPv4-only
  // node has no fd00:ec2::23) is logged and skipped, the others keep serving; it is an
  // error only when no credentials address, or the probe or metrics port, can be bound.
  Status Start();
  // Stops accepting, lets in-flight requests finish, joins the listener threads.
  void Stop();

  // The ports actually bound (after Start), for ephemeral ports in tests.
  std::vector<ListenAddress> bound_credentials() const { return bound_credentials_; }
  int probe_port() const { return probe_port_; }
  int metrics_port() const { return metrics_port_; }

 private:
  ServerOptions options_;
  CredentialHandler& handler_;
  RateLimiter& limiter_;
  MetricsRegistry& registry_;
  std::function<bool()> ready_;
  std::unique_ptr<AgentMetrics> metrics_;
  struct Route;  // the shared route checks, metrics and log line (server.cc)
  std::vector<std::unique_ptr<EventServer>> event_servers_;
  std::vector<std::unique_ptr<httplib::Server>> servers_;
  std::vector<std::thread> threads_;
  std::vector<ListenAddress> bound_credentials_;
  int probe_port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace podidentity::agent
