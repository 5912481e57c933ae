// TLS for our HTTPS servers: a certificate + private key pair (CertifiedKey) held as an
// immutable snapshot, reloaded from files when they change on disk, and handed to each
// new handshake through OpenSSL's certificate callback; open connections keep the pair
// they started with. Also generates an in-memory self-signed CA + serving certificate
// for demos and development (never for production: the CA key is thrown away).
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "podidentity/periodic_task.h"
#include "podidentity/status.h"

namespace podidentity::tls {

// RAII owners for the OpenSSL objects we hold (no raw frees anywhere else).
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509StackFree {
  void operator()(STACK_OF(X509) * p) const { sk_X509_pop_free(p, X509_free); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
using UniqueX509 = std::unique_ptr<X509, X509Free>;
using UniqueEvpPkey = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using UniqueX509Stack = std::unique_ptr<STACK_OF(X509), X509StackFree>;
using UniqueSslCtx = std::unique_ptr<SSL_CTX, SslCtxFree>;

// A leaf certificate, its intermediates (may be empty) and the matching private key.
// Thread-safe: immutable once built; OpenSSL reference-counts the objects it borrows.
struct CertifiedKey {
  UniqueX509 leaf;
  UniqueX509Stack chain;  // intermediates, in the order the file lists them
  UniqueEvpPkey key;
  std::string serial_hex;  // the leaf's serial number (upper-case hex), for logs and tests
  std::string not_after;   // the leaf's notAfter, as OpenSSL prints it
};

// Parses PEM text: one or more certificates (leaf first) and one private key. Checks
// that the key matches the leaf. `source` names the input in error messages.
StatusOr<std::shared_ptr<const CertifiedKey>> ParseCertifiedKey(std::string_view cert_pem,
                                                                 std::string_view key_pem,
                                                                 std::string_view source);
StatusOr<std::shared_ptr<const CertifiedKey>> LoadCertifiedKeyFiles(const std::string& cert_path,
                                                                     const std::string& key_path);

// The result of GenerateSelfSigned: a serving pair signed by a fresh CA, and that CA's
// certificate in PEM (what clients must trust; the CA key is not kept).
struct SelfSigned {
  std::shared_ptr<const CertifiedKey> serving;
  std::string ca_pem;
};

// Generates an EC P-256 CA and a serving certificate whose subjectAltName holds
// localhost, 127.0.0.1, ::1 and `dns_names`, valid for `validity` from one hour ago
// (clock skew). Uses OpenSSL's random source.
StatusOr<SelfSigned> GenerateSelfSigned(const std::vector<std::string>& dns_names,
                                        std::chrono::hours validity = std::chrono::hours(24 * 365));

// Something that supplies the current serving pair. Thread-safe.
class CertificateProvider {
 public:
  virtual ~CertificateProvider() = default;
  // Never null once the provider is loaded.
  virtual std::shared_ptr<const CertifiedKey> Current() const = 0;
};

// Applies our server policy to `ctx`: TLS 1.2 minimum, no compression, no
// renegotiation, the server's cipher preference, and a certificate callback that asks
// `provider` for the current pair on every handshake. `provider` must outlive `ctx`.
Status ConfigureServerContext(SSL_CTX& ctx, const CertificateProvider& provider);

namespace internal {
// What identifies a file's content for reload detection (stat() through symlinks).
struct FileIdentity {
  unsigned long long device = 0, inode = 0, size = 0;
  long long mtime_ns = 0;
  bool exists = false;
  bool operator==(const FileIdentity&) const = default;
};
}  // namespace internal

// Holds the serving pair: either fixed (self-signed) or read from a certificate file
// and a key file and reloaded when either changes. Change detection follows the files
// the paths resolve to (stat() through symlinks: device, inode, size, mtime), so a
// Kubernetes Secret update that swaps the `..data` symlink is seen. A new pair that
// does not parse or whose key does not match its certificate never replaces the
// current one; the outcome goes to `on_reload`.
// Thread-safety: Current() takes no mutex (std::atomic<shared_ptr> load) and may be
// called from any thread (handshakes do); ReloadIfChanged() is serialised by
// reload_mu_; Start()/Stop() may be called from any thread (PeriodicTask).
class ServerCertificate final : public CertificateProvider {
 public:
  enum class ReloadResult { kUnchanged, kReloaded, kFailed };
  using ReloadCallback = std::function<void(ReloadResult, const Status&, const CertifiedKey* now_serving)>;

  explicit ServerCertificate(std::shared_ptr<const CertifiedKey> fixed);
  ServerCertificate(std::string cert_path, std::string key_path, ReloadCallback on_reload);
  ~ServerCertificate() override;
  ServerCertificate(const ServerCertificate&) = delete;
  ServerCertificate& operator=(const ServerCertificate&) = delete;

  // First load: an error here is a start-up error (the caller exits non-zero).
  Status Load();
  ReloadResult ReloadIfChanged();
  // Polls ReloadIfChanged() every `interval` on a background thread until Stop().
  // Does nothing for a fixed pair. A second Start() while polling is a no-op; Stop()
  // is idempotent, returns promptly and is called by the destructor.
  void Start(std::chrono::milliseconds interval);
  void Stop();

  std::shared_ptr<const CertifiedKey> Current() const override { return current_.load(); }

 private:
  using FileIdentity = internal::FileIdentity;
  using PairIdentity = std::pair<FileIdentity, FileIdentity>;
  static FileIdentity Identify(const std::string& path);

  std::string cert_path_;
  std::string key_path_;
  ReloadCallback on_reload_;
  std::atomic<std::shared_ptr<const CertifiedKey>> current_;
  std::mutex reload_mu_;  // guards last_identity_, last_failed_identity_
  PairIdentity last_identity_;
  std::optional<PairIdentity> last_failed_identity_;  // report one bad pair once
  PeriodicTask watcher_;  // last member: its thread uses the ones above
};

// The OpenSSL error queue of this thread as one line ("" when empty); clears it.
std::string DrainOpenSslErrors();

}  // namespace podidentity::tls
