// EventServer: a small epoll HTTP/1.1 server for the credentials endpoint. Tiny GET
// requests on keep-alive connections are parsed and answered on a few event-loop
// threads (one epoll each, sharing one listening socket with EPOLLEXCLUSIVE); a request
// the fast handler cannot answer without blocking goes to a worker thread. Unlike
// cpp-httplib, an idle keep-alive connection costs no thread.
//
// HTTP is parsed strictly (RFC 9110/9112): only CRLF line ends, no obs-fold, one Host,
// one Authorization, one Content-Length of digits, no Transfer-Encoding. Errors the
// server produces itself carry {"code":"...","message":"..."} and close the connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "podidentity/status.h"

namespace podidentity {
class ConnectionPool;
}

namespace podidentity::agent {

// One parsed request as the handlers see it. Every view points into the connection's
// buffer (or into the worker's copy): valid only during the handler call.
struct HttpRequestView {
  std::string_view method;         // as sent, e.g. "GET"
  std::string_view target;         // request-target as sent
  std::string_view path;           // target up to '?'
  std::string_view host;           // Host header value, "" when absent
  std::string_view authorization;  // Authorization header value, "" when absent
  bool has_authorization = false;
  std::string_view remote_addr;  // peer IP, numeric (no brackets, no port)
  int http_minor = 1;            // HTTP/1.<minor>, 0 or 1
};

// A handler's answer. A status outside 100..999 is sent as 500; control characters in
// content_type are dropped (no header injection).
struct HttpAnswer {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::string allow;  // when not empty, an Allow header (405 answers)
};

// Thread-safety: Bind, Start and Stop are called from one controlling thread (never from
// a handler: Stop waits for the handlers); port() from any thread after Bind. The fast
// handler runs concurrently on every event-loop thread, the slow handler concurrently on
// up to max_workers worker threads: both must be thread-safe. Each loop's connections
// are touched only by that loop's thread; workers hand answers back through the loop's
// completion queue (guarded by its mutex) and wake it with an eventfd.
class EventServer {
 public:
  struct Options {
    std::string host;  // IP literal (v4 or v6, no brackets)
    int port = 0;      // 0: ephemeral
    int loops = 2;     // event-loop threads (epoll each, one shared listening socket, EPOLLEXCLUSIVE)
    int max_workers = 256;           // most handler calls on the slow path at once
    size_t max_header_bytes = 8192;  // request line + headers
    size_t max_body_bytes = 4096;
    std::chrono::milliseconds read_timeout{5000};         // from a request's first byte to its end
    std::chrono::milliseconds write_timeout{5000};        // a pending response must drain within it
    std::chrono::milliseconds keep_alive_timeout{30000};  // idle between requests
    size_t max_connections = 8192;  // beyond it new connections are accepted and closed at once
  };

  // `fast` runs on an event-loop thread and must not block: it answers, or returns
  // std::nullopt to hand the request to `slow`, which runs on a worker thread (a
  // podidentity::ConnectionPool of at most max_workers threads) and may block. A handler
  // that throws answers 500.
  using FastHandler = std::function<std::optional<HttpAnswer>(const HttpRequestView&)>;
  using SlowHandler = std::function<HttpAnswer(const HttpRequestView&)>;

  EventServer(Options options, FastHandler fast, SlowHandler slow);
  ~EventServer();  // Stop()
  EventServer(const EventServer&) = delete;
  EventServer& operator=(const EventServer&) = delete;

  // Creates the listening socket: SO_REUSEADDR only (no SO_REUSEPORT: a second agent on
  // the same port must fail, not share it), IPV6_V6ONLY for v6, bind, listen(1024).
  // Errors name host:port and strerror.
  Status Bind();
  // The bound port (after Bind; the ephemeral one when Options::port is 0), else 0.
  int port() const;
  // Starts the loops (after Bind).
  Status Start();
  // Graceful: stops accepting at once; requests being read or handled (fast or slow)
  // finish and their responses are written with Connection: close; idle connections close
  // at once. Returns when all loops and workers are joined. Idempotent.
  void Stop();

 private:
  class Loop;
  friend class Loop;

  const Options options_;
  const FastHandler fast_;
  const SlowHandler slow_;
  int listen_fd_ = -1;
  std::atomic<int> port_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> connections_{0};    // open connections over all loops
  std::atomic<size_t> slow_in_flight_{0};  // slow jobs enqueued and not finished
  std::unique_ptr<ConnectionPool> workers_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
  std::mutex control_mu_;  // serialises Bind/Start/Stop (guards started_, stopped_)
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace podidentity::agent
