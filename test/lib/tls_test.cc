// TLS: certificate parsing, self-signed generation, reload on change, and real
// handshakes through memory BIOs (no sockets) against the configured SSL_CTX.
#include "podidentity/tls.h"
#include "test_support.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

namespace pt = podidentity::tls;
namespace fs = std::filesystem;

using podidentity::testing::TempDir;

namespace {

struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string CertPem(X509* cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_X509(bio.get(), cert) == 1);
  return BioText(bio.get());
}

std::string KeyPem(EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  return BioText(bio.get());
}

pt::SelfSigned Generate(std::vector<std::string> names = {}) {
  auto generated = pt::GenerateSelfSigned(names);
  REQUIRE(generated.ok());
  return std::move(generated).value();
}

pt::UniqueX509 ParseCa(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  pt::UniqueX509 ca(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  REQUIRE(ca);
  return ca;
}

// Verifies `leaf` against `ca_pem` as a TLS client would, for `host` (a DNS name or an
// IP literal). Returns the X509 verify error (X509_V_OK on success).
int Verify(X509* leaf, const std::string& ca_pem, const std::string& host) {
  pt::UniqueX509 ca = ParseCa(ca_pem);
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  REQUIRE(X509_STORE_add_cert(store.get(), ca.get()) == 1);
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  REQUIRE(X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr) == 1);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
  if (host.find_first_of(".:") != std::string::npos && host.find_first_not_of("0123456789.:abcdef") == std::string::npos) {
    REQUIRE(X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1);
  } else {
    REQUIRE(X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size()) == 1);
  }
  X509_verify_cert(ctx.get());
  return X509_STORE_CTX_get_error(ctx.get());
}

class FakeProvider final : public pt::CertificateProvider {
 public:
  explicit FakeProvider(std::shared_ptr<const pt::CertifiedKey> pair) { Set(std::move(pair)); }
  std::shared_ptr<const pt::CertifiedKey> Current() const override { return current_.load(); }
  void Set(std::shared_ptr<const pt::CertifiedKey> pair) { current_.store(std::move(pair)); }

 private:
  std::atomic<std::shared_ptr<const pt::CertifiedKey>> current_;
};

pt::UniqueSslCtx ServerContext(const pt::CertificateProvider& provider) {
  pt::UniqueSslCtx ctx(SSL_CTX_new(TLS_server_method()));
  REQUIRE(ctx);
  REQUIRE(pt::ConfigureServerContext(*ctx, provider).ok());
  return ctx;
}

struct HandshakeResult {
  bool ok = false;
  std::string peer_serial;  // what the client saw
  long verify_result = -1;
};

// One TLS handshake between a client (trusting `ca_pem`, checking `host`) and a
// server built from `server_ctx`, over a memory BIO pair.
HandshakeResult Handshake(SSL_CTX* server_ctx, const std::string& ca_pem, const std::string& host,
                          int client_max_version = 0) {
  pt::UniqueSslCtx client_ctx(SSL_CTX_new(TLS_client_method()));
  REQUIRE(client_ctx);
  SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_PEER, nullptr);
  REQUIRE(X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx.get()), ParseCa(ca_pem).get()) == 1);
  if (client_max_version != 0) {
    SSL_CTX_set_security_level(client_ctx.get(), 0);  // let the client offer old versions at all
    REQUIRE(SSL_CTX_set_min_proto_version(client_ctx.get(), TLS1_VERSION) == 1);
    REQUIRE(SSL_CTX_set_max_proto_version(client_ctx.get(), client_max_version) == 1);
  }
  std::unique_ptr<SSL, SslFree> server(SSL_new(server_ctx));
  std::unique_ptr<SSL, SslFree> client(SSL_new(client_ctx.get()));
  REQUIRE(SSL_set1_host(client.get(), host.c_str()) == 1);
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  REQUIRE(BIO_new_bio_pair(&server_bio, 0, &client_bio, 0) == 1);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());

  bool server_done = false;
  bool client_done = false;
  for (int round = 0; round < 50 && !(server_done && client_done); ++round) {
    for (auto [ssl, done] : {std::pair{client.get(), &client_done}, std::pair{server.get(), &server_done}}) {
      if (*done) continue;
      const int r = SSL_do_handshake(ssl);
      if (r == 1) {
        *done = true;
        continue;
      }
      const int error = SSL_get_error(ssl, r);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return {};
      }
    }
  }
  HandshakeResult result;
  result.ok = server_done && client_done;
  result.verify_result = SSL_get_verify_result(client.get());
  if (X509* peer = SSL_get0_peer_certificate(client.get())) {
    std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), nullptr),
                                                   &BN_free);
    REQUIRE(bn);
    std::unique_ptr<char, void (*)(char*)> hex(BN_bn2hex(bn.get()), [](char* p) { OPENSSL_free(p); });
    result.peer_serial = hex.get();
  }
  return result;
}

// Writes through a temporary file and rename(), as a careful deployment tool does.
void WriteAtomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".new";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  fs::rename(tmp, path);
}

}  // namespace

TEST_CASE("tls: the self-signed certificate verifies for localhost, loopback IPs and extra names") {
  pt::SelfSigned generated = Generate({"pod-identity-webhook.kube-system.svc"});
  X509* leaf = generated.serving->leaf.get();
  CHECK(Verify(leaf, generated.ca_pem, "localhost") == X509_V_OK);
  CHECK(Verify(leaf, generated.ca_pem, "127.0.0.1") == X509_V_OK);
  CHECK(Verify(leaf, generated.ca_pem, "::1") == X509_V_OK);
  CHECK(Verify(leaf, generated.ca_pem, "pod-identity-webhook.kube-system.svc") == X509_V_OK);
  CHECK(Verify(leaf, generated.ca_pem, "example.com") == X509_V_ERR_HOSTNAME_MISMATCH);
  CHECK(X509_check_private_key(leaf, generated.serving->key.get()) == 1);
  CHECK_FALSE(generated.serving->serial_hex.empty());
  CHECK_FALSE(generated.serving->not_after.empty());

  // Another CA does not vouch for it, and every generation is a fresh pair.
  pt::SelfSigned other = Generate();
  CHECK(Verify(leaf, other.ca_pem, "localhost") == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  CHECK(other.serving->serial_hex != generated.serving->serial_hex);
}

TEST_CASE("tls: a DNS name that would split the subjectAltName is refused") {
  auto generated = pt::GenerateSelfSigned({"a.example,IP:10.0.0.1"});
  REQUIRE_FALSE(generated.ok());
  CHECK_THAT(generated.status().message(), Catch::Contains("comma"));
}

TEST_CASE("tls: ParseCertifiedKey reads a chain and checks the key") {
  pt::SelfSigned a = Generate();
  pt::SelfSigned b = Generate();
  const std::string leaf_pem = CertPem(a.serving->leaf.get());
  const std::string key_pem = KeyPem(a.serving->key.get());

  SECTION("leaf + intermediate") {
    auto parsed = pt::ParseCertifiedKey(leaf_pem + a.ca_pem, key_pem, "bundle");
    REQUIRE(parsed.ok());
    CHECK((*parsed)->serial_hex == a.serving->serial_hex);
    CHECK(sk_X509_num((*parsed)->chain.get()) == 1);
  }
  SECTION("a key that belongs to another certificate") {
    auto parsed = pt::ParseCertifiedKey(leaf_pem, KeyPem(b.serving->key.get()), "cert.pem + key.pem");
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().message() == "cert.pem + key.pem: the private key does not match the certificate");
  }
  SECTION("no certificate") {
    auto parsed = pt::ParseCertifiedKey("not a certificate", key_pem, "x.pem");
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().message() == "x.pem: no PEM certificate found");
  }
  SECTION("no key") {
    auto parsed = pt::ParseCertifiedKey(leaf_pem, "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
                                        "x.pem");
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.status().message(), Catch::StartsWith("x.pem: no usable PEM private key"));
  }
  CHECK(pt::DrainOpenSslErrors().empty());
}

TEST_CASE("tls: handshakes use the provider's current pair; TLS 1.1 is refused") {
  pt::SelfSigned first = Generate();
  FakeProvider provider(first.serving);
  pt::UniqueSslCtx ctx = ServerContext(provider);
  CHECK(SSL_CTX_get_min_proto_version(ctx.get()) == TLS1_2_VERSION);

  HandshakeResult one = Handshake(ctx.get(), first.ca_pem, "localhost");
  REQUIRE(one.ok);
  CHECK(one.verify_result == X509_V_OK);
  CHECK(one.peer_serial == first.serving->serial_hex);

  // A new pair: the next handshake on the same SSL_CTX presents it.
  pt::SelfSigned second = Generate();
  provider.Set(second.serving);
  HandshakeResult two = Handshake(ctx.get(), second.ca_pem, "localhost");
  REQUIRE(two.ok);
  CHECK(two.peer_serial == second.serving->serial_hex);

  CHECK(Handshake(ctx.get(), second.ca_pem, "localhost", TLS1_2_VERSION).ok);
  CHECK_FALSE(Handshake(ctx.get(), second.ca_pem, "localhost", TLS1_1_VERSION).ok);
  CHECK_FALSE(Handshake(ctx.get(), second.ca_pem, "localhost", TLS1_VERSION).ok);
}

TEST_CASE("tls: ServerCertificate reloads changed files and keeps the last good pair") {
  TempDir dir;
  const fs::path cert = dir.path() / "tls.crt";
  const fs::path key = dir.path() / "tls.key";
  pt::SelfSigned a = Generate();
  pt::SelfSigned b = Generate();
  WriteAtomically(cert, CertPem(a.serving->leaf.get()));
  WriteAtomically(key, KeyPem(a.serving->key.get()));

  using R = pt::ServerCertificate::ReloadResult;
  std::vector<std::pair<R, std::string>> reports;
  pt::ServerCertificate certificate(cert.string(), key.string(),
                                    [&](R result, const podidentity::Status& status, const pt::CertifiedKey* serving) {
                                      REQUIRE(serving != nullptr);
                                      reports.emplace_back(result, status.message());
                                    });
  REQUIRE(certificate.Load().ok());
  CHECK(certificate.Current()->serial_hex == a.serving->serial_hex);
  CHECK(certificate.ReloadIfChanged() == R::kUnchanged);

  // The certificate changes first: a mismatched pair is reported once, not served.
  WriteAtomically(cert, CertPem(b.serving->leaf.get()));
  CHECK(certificate.ReloadIfChanged() == R::kFailed);
  CHECK(certificate.ReloadIfChanged() == R::kUnchanged);
  CHECK(certificate.Current()->serial_hex == a.serving->serial_hex);
  // Then the key: the new pair is served.
  WriteAtomically(key, KeyPem(b.serving->key.get()));
  CHECK(certificate.ReloadIfChanged() == R::kReloaded);
  CHECK(certificate.Current()->serial_hex == b.serving->serial_hex);

  // A missing file keeps the current pair.
  fs::remove(key);
  CHECK(certificate.ReloadIfChanged() == R::kFailed);
  CHECK(certificate.Current()->serial_hex == b.serving->serial_hex);

  REQUIRE(reports.size() == 3);
  CHECK(reports[0].first == R::kFailed);
  CHECK_THAT(reports[0].second, Catch::EndsWith("the private key does not match the certificate"));
  CHECK(reports[1].first == R::kReloaded);
  CHECK(reports[2].first == R::kFailed);
  CHECK_THAT(reports[2].second, Catch::Contains("cannot open"));
}

TEST_CASE("tls: ServerCertificate follows a Kubernetes Secret's ..data symlink swap") {
  TempDir dir;
  pt::SelfSigned a = Generate();
  pt::SelfSigned b = Generate();
  auto write_version = [&](const std::string& name, const pt::SelfSigned& pair) {
    fs::create_directory(dir.path() / name);
    std::ofstream(dir.path() / name / "tls.crt") << CertPem(pair.serving->leaf.get());
    std::ofstream(dir.path() / name / "tls.key") << KeyPem(pair.serving->key.get());
  };
  write_version("..v1", a);
  fs::create_directory_symlink("..v1", dir.path() / "..data");
  fs::create_symlink("..data/tls.crt", dir.path() / "tls.crt");
  fs::create_symlink("..data/tls.key", dir.path() / "tls.key");

  pt::ServerCertificate certificate((dir.path() / "tls.crt").string(), (dir.path() / "tls.key").string(), nullptr);
  REQUIRE(certificate.Load().ok());
  CHECK(certificate.Current()->serial_hex == a.serving->serial_hex);

  // The kubelet writes the new version beside the old one and renames a new symlink
  // over ..data: both files change at once.
  write_version("..v2", b);
  fs::create_directory_symlink("..v2", dir.path() / "..data_tmp");
  fs::rename(dir.path() / "..data_tmp", dir.path() / "..data");
  CHECK(certificate.ReloadIfChanged() == pt::ServerCertificate::ReloadResult::kReloaded);
  CHECK(certificate.Current()->serial_hex == b.serving->serial_hex);
}

TEST_CASE("tls: a missing or mismatched pair at start-up is an error naming the files") {
  TempDir dir;
  pt::ServerCertificate missing((dir.path() / "no.crt").string(), (dir.path() / "no.key").string(), nullptr);
  podidentity::Status s = missing.Load();
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.message(), Catch::Contains("no.crt: cannot open"));
}
