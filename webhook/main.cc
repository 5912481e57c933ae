// pod-identity-webhook: wiring only. Flags -> config; associations and certificate
// loaded (a failure exits 1 before anything listens); the server runs until SIGTERM or
// SIGINT, then finishes the requests in flight and exits 0.
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include "config.h"
#include "embedded_associations.h"
#include "podidentity/associations.h"
#include "podidentity/log.h"
#include "podidentity/metrics.h"
#include "podidentity/random.h"
#include "podidentity/tls.h"
#include "server.h"

namespace pi = podidentity;
namespace wh = podidentity::webhook;

namespace {

// Writes `text` to `path` through a temporary file and rename(), so a reader never
// sees a half-written CA bundle.
pi::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return pi::UnavailableError(tmp + ": cannot create");
    out << text;
    out.flush();
    if (!out) return pi::UnavailableError(tmp + ": write failed");
  }
  ::chmod(tmp.c_str(), 0644);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return pi::UnavailableError(path + ": rename failed");
  return pi::Status::Ok();
}

int StartupError(std::string_view what, const pi::Status& status) {
  pi::log::Error(what, {{"error", status.message()}});
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  wh::CommandLine command_line = wh::ParseCommandLine(argc, argv);
  if (!command_line.config) return command_line.exit_code;
  const wh::WebhookConfig& config = *command_line.config;
  pi::log::SetMinLevel(config.log_level);

  // A client that goes away mid-response must not kill the process (OpenSSL writes
  // with write(2), not send(MSG_NOSIGNAL)).
  ::signal(SIGPIPE, SIG_IGN);
  // SIGTERM/SIGINT are taken by one thread with sigwait(); block them before any other
  // thread starts so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  pi::log::Write(pi::log::Level::kInfo, "starting pod-identity-webhook", wh::ConfigLogFields(config));

  pi::MetricsRegistry registry;
  wh::WebhookMetrics metrics(registry);

  // Associations: the file (reloaded on change) or the embedded default.
  std::unique_ptr<pi::AssociationStore> associations;
  if (config.associations_file.empty()) {
    pi::StatusOr<pi::AssociationIndex> embedded =
        pi::ParseAssociations(wh::EmbeddedAssociationsYaml(), "embedded examples/associations.yaml");
    if (!embedded.ok()) return StartupError("cannot load the embedded associations", embedded.status());
    associations = std::make_unique<pi::AssociationStore>(std::move(embedded).value());
  } else {
    associations = std::make_unique<pi::AssociationStore>(
        config.associations_file,
        [&metrics, &config](pi::AssociationStore::ReloadResult result, const pi::Status& status, size_t count) {
          using R = pi::AssociationStore::ReloadResult;
          if (result == R::kReloaded) {
            metrics.association_reloads.With({"success"}).Inc();
            metrics.associations_loaded.With({}).Set(static_cast<double>(count));
            pi::log::Info("associations reloaded", {{"file", config.associations_file}, {"associations", count}});
          } else if (result == R::kFailed) {
            metrics.association_reloads.With({"failure"}).Inc();
            pi::log::Warn("associations reload failed; serving the last good version",
                          {{"file", config.associations_file}, {"error", status.message()}});
          }
        });
    if (pi::Status s = associations->Load(); !s.ok()) return StartupError("cannot load associations", s);
  }
  const size_t association_count = associations->Current() ? associations->Current()->size() : 0;
  metrics.associations_loaded.With({}).Set(static_cast<double>(association_count));
  pi::log::Info("associations loaded",
                {{"source", config.associations_file.empty() ? "embedded" : config.associations_file},
                 {"associations", association_count}});

  // Serving certificate: the files (reloaded on change) or an in-memory self-signed pair.
  std::unique_ptr<pi::tls::ServerCertificate> certificate;
  if (!config.tls_cert_file.empty()) {
    certificate = std::make_unique<pi::tls::ServerCertificate>(
        config.tls_cert_file, config.tls_key_file,
        [&metrics](pi::tls::ServerCertificate::ReloadResult result, const pi::Status& status,
                   const pi::tls::CertifiedKey* serving) {
          using R = pi::tls::ServerCertificate::ReloadResult;
          if (result == R::kReloaded) {
            metrics.certificate_reloads.With({"success"}).Inc();
            pi::log::Info("certificate reloaded",
                          {{"serial", serving->serial_hex}, {"notAfter", serving->not_after}});
          } else if (result == R::kFailed) {
            metrics.certificate_reloads.With({"failure"}).Inc();
            pi::log::Warn("certificate reload failed; serving the current one",
                          {{"error", status.message()}, {"serial", serving->serial_hex}});
          }
        });
    if (pi::Status s = certificate->Load(); !s.ok()) return StartupError("cannot load the TLS certificate", s);
  } else {
    pi::StatusOr<pi::tls::SelfSigned> generated = pi::tls::GenerateSelfSigned(config.self_signed_dns_names);
    if (!generated.ok()) return StartupError("cannot generate a self-signed certificate", generated.status());
    if (!config.self_signed_ca_file.empty()) {
      if (pi::Status s = WriteFileAtomically(config.self_signed_ca_file, generated->ca_pem); !s.ok()) {
        return StartupError("cannot write the self-signed CA file", s);
      }
    }
    pi::log::Warn("serving a self-signed certificate generated in memory (demo and development only)",
                  {{"caFile", config.self_signed_ca_file}});
    certificate = std::make_unique<pi::tls::ServerCertificate>(generated->serving);
  }
  pi::log::Info("certificate loaded",
                {{"serial", certificate->Current()->serial_hex}, {"notAfter", certificate->Current()->not_after}});

  pi::SystemRandom random;
  wh::WebhookServer server(config, *associations, *certificate, registry, metrics, random);
  if (pi::Status s = server.Bind(); !s.ok()) return StartupError("cannot start the server", s);
  pi::log::Info("listening", {{"address", config.bind_address}, {"port", server.port()}});

  associations->Start(config.reload_interval);
  certificate->Start(config.reload_interval);

  std::atomic<bool> signalled{false};
  std::thread signal_thread([&server, &stop_signals, &signalled] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    signalled.store(true);
    pi::log::Info("stopping: no new connections, finishing requests in flight",
                  {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
    server.Stop();
    pi::log::Info("stopped accepting connections");
  });

  pi::Status served = server.Serve();
  // When Serve() returned on its own, wake the signal thread so it can be joined.
  if (!signalled.load()) pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  associations->Stop();
  certificate->Stop();
  if (!served.ok()) return StartupError("server failed", served);
  pi::log::Info("stopped");
  return 0;
}
