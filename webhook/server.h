// The webhook's HTTPS server: routes (POST /mutate, GET /healthz, /readyz, /metrics),
// the HTTP-level checks in front of the admission use case (method, path, content
// type, body size), one log line and the metrics per admission, and graceful stop.
// cpp-httplib 0.11.4's defaults are unsafe for a server (../shared/FIELD-NOTES.md):
// every one of them is set here.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "config.h"
#include "podidentity/associations.h"
#include "podidentity/metrics.h"
#include "podidentity/random.h"
#include "podidentity/status.h"
#include "podidentity/tls.h"

namespace httplib {
class SSLServer;
}

namespace podidentity::webhook {

// The webhook's metric families, registered once in the process registry. Also updated
// from main.cc (reload callbacks). Thread-safe (see metrics.h).
struct WebhookMetrics {
  explicit WebhookMetrics(MetricsRegistry& registry);
  Family<Counter>& admissions;           // {outcome}: patched, no_association, bad_request, ...
  Family<Counter>& patched_pods;         // responses that carried a patch
  Family<Counter>& patch_operations;     // JSON patch operations issued
  Family<Histogram>& admission_latency;  // seconds, from the handler's start to the response
  Family<Counter>& http_responses;       // {code}: every route
  Family<Gauge>& requests_in_flight;     // handlers running now
  Family<Counter>& association_reloads;  // {result}: success, failure
  Family<Gauge>& associations_loaded;    // associations in the current snapshot
  Family<Counter>& certificate_reloads;  // {result}: success, failure
};

// Thread-safety: Bind() and Serve() are called once, from one thread; Stop() may be
// called from any thread (the signal thread does), before, during or after Serve().
// Handlers run on the server's worker pool and only read shared state (the
// association and certificate snapshots) or update atomics.
class WebhookServer {
 public:
  WebhookServer(const WebhookConfig& config, const AssociationStore& associations,
                const tls::CertificateProvider& certificate, MetricsRegistry& registry, WebhookMetrics& metrics,
                Random& random);
  ~WebhookServer();
  WebhookServer(const WebhookServer&) = delete;
  WebhookServer& operator=(const WebhookServer&) = delete;

  // Sets up TLS, binds and listens (backlog 1024). An error is a start-up error.
  Status Bind();
  // The port actually bound (after Bind(); differs from the config's for port 0).
  int port() const { return port_; }
  // Accepts connections until Stop(); returns once in-flight requests have finished.
  Status Serve();
  // Stops accepting; requests in progress complete and Serve() returns. Idempotent.
  void Stop();
  bool ready() const;

 private:
  const WebhookConfig& config_;
  const AssociationStore& associations_;
  const tls::CertificateProvider& certificate_;
  MetricsRegistry& registry_;
  WebhookMetrics& metrics_;
  Random& random_;
  std::unique_ptr<httplib::SSLServer> server_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> serve_started_{false};
  std::atomic<bool> serve_done_{false};
};

}  // namespace podidentity::webhook
