// The cpp-httplib HttpClient against real local servers on loopback: requests and
// responses, timeouts, the response size limit, IPv6 literals, TLS verification.
#include "podidentity/http_client.h"

#include <httplib.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <thread>

namespace pi = podidentity;

namespace {

// A server on an ephemeral port, serving on its own thread until destroyed. The socket
// listens from bind_to_any_port() on, so clients may connect before the accept loop runs.
template <typename ServerT>
class Running {
 public:
  template <typename... Args>
  explicit Running(const std::string& host, Args&&... args) : server(std::forward<Args>(args)...) {
    port = server.bind_to_any_port(host);
    if (port > 0) thread_ = std::thread([this] { server.listen_after_bind(); });
  }
  ~Running() {
    // stop() is a no-op until the accept loop runs, so wait for it to have started.
    while (thread_.joinable() && !server.is_running()) std::this_thread::yield();
    server.stop();
    if (thread_.joinable()) thread_.join();
  }
  ServerT server;
  int port = -1;

 private:
  std::thread thread_;
};

std::string Url(int port, const std::string& path) { return "http://127.0.0.1:" + std::to_string(port) + path; }

}  // namespace

TEST_CASE("ParseUrl splits URLs and rejects what the clients never use", "[http]") {
  pi::StatusOr<pi::ParsedUrl> u = pi::ParseUrl("https://sts.us-east-1.amazonaws.com");
  REQUIRE(u.ok());
  CHECK(u->scheme == "https");
  CHECK(u->host == "sts.us-east-1.amazonaws.com");
  CHECK(u->port == 443);
  CHECK_FALSE(u->explicit_port);
  CHECK(u->path == "/");
  CHECK(u->query.empty());

  u = pi::ParseUrl("HTTP://[fd00:ec2::23]:8080/v1/credentials?a=b&c#frag");
  REQUIRE(u.ok());
  CHECK(u->scheme == "http");
  CHECK(u->host == "fd00:ec2::23");
  CHECK(u->port == 8080);
  CHECK(u->explicit_port);
  CHECK(u->path == "/v1/credentials");
  CHECK(u->query == "a=b&c");

  u = pi::ParseUrl("http://169.254.170.23?x=1");
  REQUIRE(u.ok());
  CHECK(u->port == 80);
  CHECK(u->path == "/");
  CHECK(u->query == "x=1");

  for (const char* bad : {"", "sts.amazonaws.com", "ftp://h/", "http:///path", "http://user:pw@h/", "http://h:0/",
                          "http://h:65536/", "http://h:12a/", "http://h:/", "http://[::1/", "http://[::1]x/"}) {
    INFO(bad);
    CHECK(pi::ParseUrl(bad).status().code() == pi::StatusCode::kInvalidArgument);
  }
}

TEST_CASE("HttpClient sends method, path, query, headers and body; any status is a response", "[http]") {
  Running<httplib::Server> local("127.0.0.1");
  REQUIRE(local.port > 0);
  local.server.Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Method", req.method);
    res.set_header("X-Query", req.get_param_value("q"));
    res.set_header("X-Seen-Host", req.get_header_value("Host"));
    res.set_header("X-Seen-Custom", req.get_header_value("X-Custom"));
    res.set_content(req.body, req.get_header_value("Content-Type").c_str());
  });
  local.server.Get("/missing", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("nope", "text/plain");
  });

  auto client = pi::MakeHttpClient();
  pi::HttpRequest request;
  request.method = "POST";
  request.url = Url(local.port, "/echo?q=a%20b");
  request.headers = {{"Content-Type", "application/json"}, {"X-Custom", "v1"}};
  request.body = R"({"token":"t"})";
  pi::StatusOr<pi::HttpResponse> response = client->Send(request);
  REQUIRE(response.ok());
  CHECK(response->status == 200);
  CHECK(response->body == R"({"token":"t"})");
  CHECK(response->Header("x-method") == "POST");
  CHECK(response->Header("X-QUERY") == "a b");
  CHECK(response->Header("X-Seen-Host") == "127.0.0.1:" + std::to_string(local.port));
  CHECK(response->Header("X-Seen-Custom") == "v1");
  CHECK(response->Header("Content-Type") == "application/json");
  CHECK(response->Header("X-Absent").empty());

  pi::HttpRequest get;
  get.url = Url(local.port, "/missing");
  response = client->Send(get);
  REQUIRE(response.ok());
  CHECK(response->status == 404);
  CHECK(response->body == "nope");
}

TEST_CASE("HttpClient enforces the response size limit", "[http]") {
  Running<httplib::Server> local("127.0.0.1");
  REQUIRE(local.port > 0);
  local.server.Get(R"(/bytes/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(std::string(std::stoul(req.matches[1]), 'x'), "application/octet-stream");
  });
  pi::HttpClientOptions options;
  options.max_response_bytes = 1024;
  auto client = pi::MakeHttpClient(options);

  pi::HttpRequest at_limit;
  at_limit.url = Url(local.port, "/bytes/1024");
  pi::StatusOr<pi::HttpResponse> response = client->Send(at_limit);
  REQUIRE(response.ok());
  CHECK(response->body.size() == 1024);

  pi::HttpRequest over;
  over.url = Url(local.port, "/bytes/1000000");
  response = client->Send(over);
  REQUIRE_FALSE(response.ok());
  CHECK(response.status().code() == pi::StatusCode::kUnavailable);
  CHECK(response.status().message().find("larger than 1024 bytes") != std::string::npos);
}

TEST_CASE("HttpClient times out on a server that does not answer", "[http]") {
  Running<httplib::Server> local("127.0.0.1");
  REQUIRE(local.port > 0);
  // The handler blocks until the test has seen the timeout, then lets go.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  local.server.Get("/hang", [released](const httplib::Request&, httplib::Response& res) {
    released.wait();
    res.set_content("late", "text/plain");
  });

  auto client = pi::MakeHttpClient();
  pi::HttpRequest request;
  request.url = Url(local.port, "/hang");
  request.timeout = std::chrono::milliseconds(200);
  const auto started = std::chrono::steady_clock::now();
  pi::StatusOr<pi::HttpResponse> response = client->Send(request);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  release.set_value();
  REQUIRE_FALSE(response.ok());
  CHECK(response.status().code() == pi::StatusCode::kDeadlineExceeded);
  CHECK(elapsed >= std::chrono::milliseconds(200));
  CHECK(elapsed < std::chrono::seconds(5));
}

TEST_CASE("HttpClient reports a refused connection as kUnavailable", "[http]") {
  // A port that was bound but never listened on, then closed: connections are refused.
  int port = 0;
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    socklen_t length = sizeof(addr);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0);
    port = ntohs(addr.sin_port);
    ::close(fd);
  }
  REQUIRE(port > 0);
  auto client = pi::MakeHttpClient();
  pi::HttpRequest request;
  request.url = Url(port, "/");
  request.timeout = std::chrono::milliseconds(1000);
  pi::StatusOr<pi::HttpResponse> response = client->Send(request);
  REQUIRE_FALSE(response.ok());
  CHECK(response.status().code() == pi::StatusCode::kUnavailable);
  CHECK(response.status().message().find("127.0.0.1:" + std::to_string(port)) != std::string::npos);

  request.url = "gopher://127.0.0.1/";
  CHECK(client->Send(request).status().code() == pi::StatusCode::kInvalidArgument);
}

TEST_CASE("HttpClient connects to IPv6 literals and sends a bracketed Host", "[http]") {
  Running<httplib::Server> local("::1");
  if (local.port <= 0) {
    WARN("no IPv6 loopback here; skipping");
    return;
  }
  local.server.Get("/host", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(req.get_header_value("Host"), "text/plain");
  });
  auto client = pi::MakeHttpClient();
  pi::HttpRequest request;
  request.url = "http://[::1]:" + std::to_string(local.port) + "/host";
  pi::StatusOr<pi::HttpResponse> response = client->Send(request);
  REQUIRE(response.ok());
  CHECK(response->body == "[::1]:" + std::to_string(local.port));
}

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};

// A self-signed P-256 certificate for 127.0.0.1 written as PEM files into `dir`.
void WriteSelfSigned(const std::filesystem::path& dir) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
  REQUIRE(key);
  std::unique_ptr<X509, X509Free> cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1"},
                                   std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    REQUIRE(ext != nullptr);
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  REQUIRE(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0);
  FILE* cert_file = std::fopen((dir / "cert.pem").c_str(), "w");
  REQUIRE(cert_file != nullptr);
  PEM_write_X509(cert_file, cert.get());
  std::fclose(cert_file);
  FILE* key_file = std::fopen((dir / "key.pem").c_str(), "w");
  REQUIRE(key_file != nullptr);
  PEM_write_PrivateKey(key_file, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(key_file);
}

}  // namespace

TEST_CASE("HttpClient verifies TLS servers against the CA file", "[http][tls]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("pi-http-client-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  WriteSelfSigned(dir);
  {
    Running<httplib::SSLServer> local("127.0.0.1", (dir / "cert.pem").c_str(), (dir / "key.pem").c_str());
    REQUIRE(local.server.is_valid());
    REQUIRE(local.port > 0);
    local.server.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });
    pi::HttpRequest request;
    request.url = "https://127.0.0.1:" + std::to_string(local.port) + "/";
    request.timeout = std::chrono::milliseconds(2000);

    // The system trust store does not know our self-signed certificate.
    pi::StatusOr<pi::HttpResponse> response = pi::MakeHttpClient()->Send(request);
    REQUIRE_FALSE(response.ok());
    CHECK(response.status().code() == pi::StatusCode::kUnavailable);
    CHECK(response.status().message().find("verification failed") != std::string::npos);

    pi::HttpClientOptions trusted;
    trusted.ca_file = (dir / "cert.pem").string();
    response = pi::MakeHttpClient(trusted)->Send(request);
    REQUIRE(response.ok());
    CHECK(response->body == "ok");

    pi::HttpClientOptions missing;
    missing.ca_file = (dir / "no-such-ca.pem").string();
    response = pi::MakeHttpClient(missing)->Send(request);
    REQUIRE_FALSE(response.ok());
    CHECK(response.status().code() == pi::StatusCode::kFailedPrecondition);
  }
  std::filesystem::remove_all(dir);
}
