// HttpClient: the one transport the library's clients (STS, EKS Auth, IMDS, the API
// server's JWKS and TokenReview) send requests through. The interface lets tests pass a
// fake and lets the clients stay pure request builders / response parsers.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "podidentity/status.h"

namespace podidentity {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // absolute: http[s]://host[:port]/path[?query]
  HttpHeaders headers;
  std::string body;
  std::chrono::milliseconds timeout{5000};  // connect + read + write, each
};

struct HttpResponse {
  int status = 0;
  HttpHeaders headers;
  std::string body;
  // First header with this name (case-insensitive), or empty.
  std::string Header(std::string_view name) const;
};

// Thread-safety: implementations must be safe to call from several threads at once.
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // A transport failure (DNS, connect, TLS, timeout, oversized response) is an error
  // Status (kUnavailable / kDeadlineExceeded); any HTTP status is a response.
  virtual StatusOr<HttpResponse> Send(const HttpRequest& request) = 0;
};

struct HttpClientOptions {
  std::string ca_file;           // extra/only trust anchors for https; empty: system store
  bool verify_tls = true;        // never false in production; flags may not disable it
  size_t max_response_bytes = 1 << 20;
};

// cpp-httplib based implementation (one connection per request; upstream calls are
// rare because of the credential cache). Thread-safe.
std::unique_ptr<HttpClient> MakeHttpClient(HttpClientOptions options = {});

// URL parts, for the clients and the signer. Fails on anything but http/https URLs.
struct ParsedUrl {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets for IPv6 literals
  int port = 0;        // explicit or the scheme's default
  bool explicit_port = false;
  std::string path;    // starts with '/', "/" when absent
  std::string query;   // without '?', may be empty
};
StatusOr<ParsedUrl> ParseUrl(std::string_view url);

}  // namespace podidentity
