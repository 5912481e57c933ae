#include "podidentity/http_client.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <utility>

namespace podidentity {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Where a request went, for error messages: no query (it may carry a signature or a
// token) and never a header or the body.
std::string Describe(const HttpRequest& request, const ParsedUrl& url) {
  const bool v6 = url.host.find(':') != std::string::npos;
  return request.method + " " + url.scheme + "://" + (v6 ? "[" + url.host + "]" : url.host) + ":" +
         std::to_string(url.port) + url.path;
}

// The value for a Host header: the port only when it is not the scheme's default, IPv6
// literals in brackets (cpp-httplib 0.11 would write them bare).
std::string HostHeader(const ParsedUrl& url) {
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  const bool default_port = (url.scheme == "https" && url.port == 443) || (url.scheme == "http" && url.port == 80);
  if (!default_port) host += ":" + std::to_string(url.port);
  return host;
}

class HttplibClient final : public HttpClient {
 public:
  explicit HttplibClient(HttpClientOptions options) : options_(std::move(options)) {}

  // A fresh cpp-httplib client per call: nothing is shared between threads, and
  // upstream calls are rare (the credential cache sits in front of them).
  StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    StatusOr<ParsedUrl> parsed = ParseUrl(request.url);
    if (!parsed.ok()) return parsed.status();
    const ParsedUrl& url = *parsed;

    std::unique_ptr<httplib::ClientImpl> client;
    if (url.scheme == "https") {
      auto ssl = std::make_unique<httplib::SSLClient>(url.host, url.port);
      if (!options_.ca_file.empty()) ssl->set_ca_cert_path(options_.ca_file.c_str());
      ssl->enable_server_certificate_verification(options_.verify_tls);
      client = std::move(ssl);
    } else {
      client = std::make_unique<httplib::ClientImpl>(url.host, url.port);
    }
    client->set_connection_timeout(request.timeout);
    client->set_read_timeout(request.timeout);
    client->set_write_timeout(request.timeout);
    // Without TCP_NODELAY a small request body can wait ~40 ms for delayed ACKs.
    client->set_tcp_nodelay(true);
    client->set_keep_alive(false);
    client->set_follow_location(false);

    httplib::Request req;
    req.method = request.method;
    req.path = url.path.empty() ? "/" : url.path;
    if (!url.query.empty()) req.path += "?" + url.query;
    bool has_host = false;
    for (const auto& [name, value] : request.headers) {
      has_host = has_host || EqualsIgnoreCase(name, "host");
      req.headers.emplace(name, value);
    }
    if (!has_host) req.headers.emplace("Host", HostHeader(url));
    req.body = request.body;

    // The body is collected here rather than by cpp-httplib so that an oversized (or
    // endlessly streamed) response is cut off at the limit instead of filling memory.
    std::string body;
    bool oversized = false;
    const size_t max_bytes = options_.max_response_bytes;
    req.content_receiver = [&body, &oversized, max_bytes](const char* data, size_t length, uint64_t, uint64_t) {
      if (body.size() + length > max_bytes) {
        oversized = true;
        return false;
      }
      body.append(data, length);
      return true;
    };

    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    const auto started = std::chrono::steady_clock::now();
    const bool sent = client->send(req, res, error);
    const auto elapsed = std::chrono::steady_clock::now() - started;
    if (!sent || error != httplib::Error::Success) {
      const std::string where = Describe(request, url);
      if (oversized) {
        return UnavailableError(where + ": response larger than " + std::to_string(max_bytes) + " bytes");
      }
      switch (error) {
        case httplib::Error::ConnectionTimeout:
          return DeadlineExceededError(where + ": connect timed out after " +
                                       std::to_string(request.timeout.count()) + " ms");
        case httplib::Error::SSLServerVerification:
          return UnavailableError(where + ": TLS server certificate verification failed");
        case httplib::Error::SSLLoadingCerts:
          return FailedPreconditionError(where + ": cannot load CA certificates from '" + options_.ca_file + "'");
        case httplib::Error::Read:
        case httplib::Error::Write:
          // cpp-httplib reports a read/write timeout as a plain read/write error.
          if (elapsed >= request.timeout) {
            return DeadlineExceededError(where + ": timed out after " + std::to_string(request.timeout.count()) +
                                         " ms");
          }
          [[fallthrough]];
        default:
          return UnavailableError(where + ": " + httplib::to_string(error));
      }
    }

    HttpResponse response;
    response.status = res.status;
    for (const auto& [name, value] : res.headers) response.headers.emplace_back(name, value);
    response.body = std::move(body);
    return response;
  }

 private:
  const HttpClientOptions options_;
};

}  // namespace

std::string HttpResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

std::unique_ptr<HttpClient> MakeHttpClient(HttpClientOptions options) {
  return std::make_unique<HttplibClient>(std::move(options));
}

StatusOr<ParsedUrl> ParseUrl(std::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return InvalidArgumentError("URL without a scheme");
  ParsedUrl out;
  out.scheme = ToLower(url.substr(0, scheme_end));
  if (out.scheme != "http" && out.scheme != "https") {
    return InvalidArgumentError("unsupported URL scheme '" + out.scheme + "' (want http or https)");
  }
  std::string_view rest = url.substr(scheme_end + 3);
  const size_t authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return InvalidArgumentError("URL with user information is not supported");
  }

  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return InvalidArgumentError("URL with an unterminated IPv6 literal");
    out.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return InvalidArgumentError("URL with junk after the IPv6 literal");
      port_text = after.substr(1);
      out.explicit_port = true;
    }
  } else {
    const size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      out.explicit_port = true;
    }
  }
  if (out.host.empty()) return InvalidArgumentError("URL without a host");
  if (out.explicit_port) {
    if (port_text.empty() || port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return InvalidArgumentError("URL with an invalid port");
    }
    out.port = std::stoi(std::string(port_text));
    if (out.port < 1 || out.port > 65535) return InvalidArgumentError("URL with an invalid port");
  } else {
    out.port = out.scheme == "https" ? 443 : 80;
  }

  const size_t fragment = rest.find('#');
  if (fragment != std::string_view::npos) rest = rest.substr(0, fragment);
  const size_t question = rest.find('?');
  out.path = std::string(rest.substr(0, question));
  if (question != std::string_view::npos) out.query = std::string(rest.substr(question + 1));
  if (out.path.empty()) out.path = "/";
  return out;
}

}  // namespace podidentity
