#include "podidentity/tls.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <utility>

namespace podidentity::tls {
namespace {

struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct BigNumFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ExtensionFree {
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
struct OpenSslStringFree {
  void operator()(char* p) const { OPENSSL_free(p); }
};
using UniqueBio = std::unique_ptr<BIO, BioFree>;
using UniqueBigNum = std::unique_ptr<BIGNUM, BigNumFree>;
using UniqueExtension = std::unique_ptr<X509_EXTENSION, ExtensionFree>;
using UniqueOpenSslString = std::unique_ptr<char, OpenSslStringFree>;

Status OpenSslError(std::string what) {
  std::string detail = DrainOpenSslErrors();
  if (!detail.empty()) what += ": " + detail;
  return InternalError(std::move(what));
}

UniqueBio MemoryBio(std::string_view text) {
  return UniqueBio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string SerialHex(X509* cert) {
  UniqueBigNum bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "";
  UniqueOpenSslString hex(BN_bn2hex(bn.get()));
  return hex ? std::string(hex.get()) : "";
}

std::string NotAfter(X509* cert) {
  UniqueBio out(BIO_new(BIO_s_mem()));
  if (!out || ASN1_TIME_print(out.get(), X509_get0_notAfter(cert)) != 1) return "";
  char* data = nullptr;
  const long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return UnavailableError(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return UnavailableError(path + ": read failed");
  return text.str();
}

// The certificate callback: every handshake takes the provider's current pair, so a
// reload affects new handshakes only and never mutates the shared SSL_CTX.
int UseCurrentCertificate(SSL* ssl, void* arg) {
  const auto* provider = static_cast<const CertificateProvider*>(arg);
  std::shared_ptr<const CertifiedKey> pair = provider->Current();
  if (!pair) return 0;
  // Each call takes its own reference; the SSL keeps the objects alive after a reload.
  if (SSL_use_certificate(ssl, pair->leaf.get()) != 1) return 0;
  if (SSL_use_PrivateKey(ssl, pair->key.get()) != 1) return 0;
  if (SSL_set1_chain(ssl, pair->chain.get()) != 1) return 0;
  return 1;
}

Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  UniqueExtension ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext) return OpenSslError("cannot build extension " + std::string(OBJ_nid2sn(nid)) + "=" + value);
  if (X509_add_ext(cert, ext.get(), -1) != 1) return OpenSslError("cannot add extension");
  return Status::Ok();
}

StatusOr<UniqueEvpPkey> NewP256Key() {
  UniqueEvpPkey key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError("cannot generate an EC P-256 key");
  return key;
}

// A certificate for `subject_key` named `common_name`, signed by `issuer_key` (as
// `issuer`, or self-signed when issuer is null), with a random 127-bit serial.
StatusOr<UniqueX509> NewCertificate(const std::string& common_name, EVP_PKEY* subject_key, X509* issuer,
                                    EVP_PKEY* issuer_key, std::chrono::hours validity,
                                    const std::vector<std::pair<int, std::string>>& extensions) {
  UniqueX509 cert(X509_new());
  if (!cert) return OpenSslError("X509_new");
  if (X509_set_version(cert.get(), 2) != 1) return OpenSslError("X509_set_version");
  UniqueBigNum serial(BN_new());
  if (!serial || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return OpenSslError("cannot set a random serial");
  }
  // Valid from an hour ago, so a client whose clock is a little behind accepts it.
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(validity.count()) * 3600) == nullptr) {
    return OpenSslError("cannot set the validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  const auto* cn = reinterpret_cast<const unsigned char*>(common_name.c_str());
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("pod-identity"),
                                 -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, cn, -1, -1, 0) != 1) {
    return OpenSslError("cannot set the subject");
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1) return OpenSslError("issuer name");
  if (X509_set_pubkey(cert.get(), subject_key) != 1) return OpenSslError("X509_set_pubkey");
  for (const auto& [nid, value] : extensions) {
    if (Status s = AddExtension(cert.get(), signer, nid, value); !s.ok()) return s;
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) return OpenSslError("X509_sign");
  return cert;
}

StatusOr<std::string> ToPem(X509* cert) {
  UniqueBio out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509(out.get(), cert) != 1) return OpenSslError("PEM_write_bio_X509");
  char* data = nullptr;
  const long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace

std::string DrainOpenSslErrors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

StatusOr<std::shared_ptr<const CertifiedKey>> ParseCertifiedKey(std::string_view cert_pem,
                                                                 std::string_view key_pem,
                                                                 std::string_view source) {
  ERR_clear_error();
  const std::string where(source);
  auto pair = std::make_shared<CertifiedKey>();
  pair->chain.reset(sk_X509_new_null());
  if (!pair->chain) return OpenSslError("sk_X509_new_null");

  UniqueBio certs = MemoryBio(cert_pem);
  if (!certs) return OpenSslError("BIO_new_mem_buf");
  while (true) {
    UniqueX509 cert(PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    if (!pair->leaf) {
      pair->leaf = std::move(cert);
    } else if (sk_X509_push(pair->chain.get(), cert.get()) > 0) {
      static_cast<void>(cert.release());  // now owned by the stack
    } else {
      return OpenSslError("sk_X509_push");
    }
  }
  // The loop ends on "no start line" at the end of the input: expected, not an error.
  ERR_clear_error();
  if (!pair->leaf) return InvalidArgumentError(where + ": no PEM certificate found");

  UniqueBio key = MemoryBio(key_pem);
  if (!key) return OpenSslError("BIO_new_mem_buf");
  // A null password callback with an empty password: an encrypted key fails to load
  // instead of prompting on the terminal.
  pair->key.reset(PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, const_cast<char*>("")));
  if (!pair->key) {
    DrainOpenSslErrors();
    return InvalidArgumentError(where + ": no usable PEM private key found (encrypted keys are not supported)");
  }
  if (X509_check_private_key(pair->leaf.get(), pair->key.get()) != 1) {
    DrainOpenSslErrors();
    return InvalidArgumentError(where + ": the private key does not match the certificate");
  }
  pair->serial_hex = SerialHex(pair->leaf.get());
  pair->not_after = NotAfter(pair->leaf.get());
  return std::shared_ptr<const CertifiedKey>(std::move(pair));
}

StatusOr<std::shared_ptr<const CertifiedKey>> LoadCertifiedKeyFiles(const std::string& cert_path,
                                                                     const std::string& key_path) {
  StatusOr<std::string> cert = ReadFile(cert_path);
  if (!cert.ok()) return cert.status();
  StatusOr<std::string> key = ReadFile(key_path);
  if (!key.ok()) return key.status();
  return ParseCertifiedKey(*cert, *key, cert_path + " + " + key_path);
}

StatusOr<SelfSigned> GenerateSelfSigned(const std::vector<std::string>& dns_names, std::chrono::hours validity) {
  ERR_clear_error();
  StatusOr<UniqueEvpPkey> ca_key = NewP256Key();
  if (!ca_key.ok()) return ca_key.status();
  StatusOr<UniqueX509> ca = NewCertificate("pod-identity self-signed CA", ca_key->get(), nullptr, ca_key->get(),
                                           validity,
                                           {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                                            {NID_key_usage, "critical,keyCertSign,cRLSign"},
                                            {NID_subject_key_identifier, "hash"}});
  if (!ca.ok()) return ca.status();

  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  for (const std::string& name : dns_names) {
    if (name.empty() || name == "localhost") continue;
    // A comma would split the extension value into another entry.
    if (name.find_first_of(", \t") != std::string::npos) {
      return InvalidArgumentError("self-signed DNS name '" + name + "' contains a comma or whitespace");
    }
    san += ",DNS:" + name;
  }
  StatusOr<UniqueEvpPkey> key = NewP256Key();
  if (!key.ok()) return key.status();
  const std::string common_name = dns_names.empty() || dns_names.front().empty() ? "localhost" : dns_names.front();
  StatusOr<UniqueX509> leaf = NewCertificate(common_name, key->get(), ca->get(), ca_key->get(), validity,
                                             {{NID_basic_constraints, "critical,CA:FALSE"},
                                              {NID_key_usage, "critical,digitalSignature"},
                                              {NID_ext_key_usage, "serverAuth"},
                                              {NID_subject_key_identifier, "hash"},
                                              {NID_authority_key_identifier, "keyid:always"},
                                              {NID_subject_alt_name, san}});
  if (!leaf.ok()) return leaf.status();

  auto pair = std::make_shared<CertifiedKey>();
  pair->chain.reset(sk_X509_new_null());
  if (!pair->chain) return OpenSslError("sk_X509_new_null");
  pair->serial_hex = SerialHex(leaf->get());
  pair->not_after = NotAfter(leaf->get());
  pair->leaf = std::move(leaf).value();
  pair->key = std::move(key).value();

  StatusOr<std::string> ca_pem = ToPem(ca->get());
  if (!ca_pem.ok()) return ca_pem.status();
  return SelfSigned{std::move(pair), std::move(ca_pem).value()};
}

Status ConfigureServerContext(SSL_CTX& ctx, const CertificateProvider& provider) {
  ERR_clear_error();
  // TLS 1.0/1.1 are deprecated (RFC 8996); the API server speaks 1.2 and 1.3.
  if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1) return OpenSslError("cannot set TLS 1.2 minimum");
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2 suites: forward-secret AEAD only (TLS 1.3's defaults are all fine).
  if (SSL_CTX_set_cipher_list(&ctx,
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
    return OpenSslError("cannot set the TLS 1.2 cipher list");
  }
  // The callback reads the provider through a const pointer; OpenSSL's slot is void*.
  SSL_CTX_set_cert_cb(&ctx, UseCurrentCertificate,
                      const_cast<void*>(static_cast<const void*>(&provider)));
  return Status::Ok();
}

ServerCertificate::ServerCertificate(std::shared_ptr<const CertifiedKey> fixed) { current_.store(std::move(fixed)); }

ServerCertificate::ServerCertificate(std::string cert_path, std::string key_path, ReloadCallback on_reload)
    : cert_path_(std::move(cert_path)), key_path_(std::move(key_path)), on_reload_(std::move(on_reload)) {}

ServerCertificate::~ServerCertificate() { Stop(); }

internal::FileIdentity ServerCertificate::Identify(const std::string& path) {
  struct stat st{};
  FileIdentity id;
  if (::stat(path.c_str(), &st) != 0) return id;
  id.exists = true;
  id.device = st.st_dev;
  id.inode = st.st_ino;
  id.size = static_cast<unsigned long long>(st.st_size);
  id.mtime_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1'000'000'000LL + st.st_mtim.tv_nsec;
  return id;
}

Status ServerCertificate::Load() {
  if (cert_path_.empty()) return current_.load() ? Status::Ok() : FailedPreconditionError("no certificate");
  std::lock_guard<std::mutex> lock(reload_mu_);
  // Identify before reading: a change between the two is seen again on the next poll.
  auto identity = std::make_pair(Identify(cert_path_), Identify(key_path_));
  StatusOr<std::shared_ptr<const CertifiedKey>> pair = LoadCertifiedKeyFiles(cert_path_, key_path_);
  if (!pair.ok()) return pair.status();
  last_identity_ = identity;
  current_.store(std::move(pair).value());
  return Status::Ok();
}

ServerCertificate::ReloadResult ServerCertificate::ReloadIfChanged() {
  if (cert_path_.empty()) return ReloadResult::kUnchanged;
  ReloadResult result;
  Status status;
  std::shared_ptr<const CertifiedKey> serving;
  {
    std::lock_guard<std::mutex> lock(reload_mu_);
    auto identity = std::make_pair(Identify(cert_path_), Identify(key_path_));
    if (identity == last_identity_ || identity == last_failed_identity_) return ReloadResult::kUnchanged;
    StatusOr<std::shared_ptr<const CertifiedKey>> pair = LoadCertifiedKeyFiles(cert_path_, key_path_);
    if (pair.ok()) {
      last_identity_ = identity;
      last_failed_identity_.reset();
      current_.store(std::move(pair).value());
      result = ReloadResult::kReloaded;
    } else {
      // Two files replaced one after the other are briefly a mismatched pair: keep
      // serving the old one; the next poll sees the second file and succeeds.
      last_failed_identity_ = identity;
      status = pair.status();
      result = ReloadResult::kFailed;
    }
    serving = current_.load();
  }
  if (on_reload_) on_reload_(result, status, serving.get());
  return result;
}

void ServerCertificate::Start(std::chrono::milliseconds interval) {
  if (cert_path_.empty()) return;  // a fixed pair never changes
  watcher_.Start(interval, [this] { ReloadIfChanged(); });
}

void ServerCertificate::Stop() { watcher_.Stop(); }

}  // namespace podidentity::tls
