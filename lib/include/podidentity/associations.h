// Associations: which IAM role a Kubernetes service account gets. The model mirrors
// EKS's CreatePodIdentityAssociation (roleArn, targetRoleArn, disableSessionTags,
// policy, tags); the file format is documented in README.md and
// examples/associations.yaml. Parsing and validation are pure; AssociationIndex is an
// immutable snapshot; AssociationStore reloads the file and swaps snapshots atomically.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "podidentity/periodic_task.h"
#include "podidentity/status.h"

namespace podidentity {

struct Association {
  std::string namespace_name;   // DNS-1123 label
  std::string service_account;  // DNS-1123 subdomain
  std::string role_arn;         // arn:<partition>:iam::<12 digits>:role/<path/name>
  std::optional<std::string> target_role_arn;  // second hop (cross-account)
  bool disable_session_tags = false;
  std::optional<std::string> policy;  // session policy JSON; requires disable_session_tags
  std::map<std::string, std::string> tags;
};

// An immutable, validated set of associations with O(1) lookup.
// Thread-safe: immutable after construction.
class AssociationIndex {
 public:
  AssociationIndex() = default;
  AssociationIndex(std::string cluster_name, std::vector<Association> associations);

  // The association for (namespace, serviceAccount), or nullptr.
  const Association* Find(std::string_view namespace_name, std::string_view service_account) const;
  const std::string& cluster_name() const { return cluster_name_; }
  size_t size() const { return associations_.size(); }
  const std::vector<Association>& associations() const { return associations_; }

 private:
  std::string cluster_name_;
  std::vector<Association> associations_;
  // Key: namespace + '/' + serviceAccount (neither may contain '/'); value: index.
  std::unordered_map<std::string, size_t> by_key_;
};

// Parses and validates the YAML document. `source_name` (usually the file path) is
// used in error messages, which have the form "<source>:<line>: <field>: <problem>".
StatusOr<AssociationIndex> ParseAssociations(std::string_view yaml_text, std::string_view source_name);
StatusOr<AssociationIndex> LoadAssociationsFile(const std::string& path);

// Validators, exposed for reuse (the agent) and for tests. Each returns an empty
// string when valid, or what is wrong.
std::string ValidateDns1123Label(std::string_view value);
std::string ValidateDns1123Subdomain(std::string_view value);
std::string ValidateRoleArn(std::string_view value);

// Holds the current AssociationIndex and reloads it from a file.
// Reload detection follows the file the path resolves to (stat() through symlinks:
// device, inode, size, mtime), so a ConfigMap update that swaps the `..data` symlink
// is seen even when the file's own mtime does not change. An invalid or missing new
// file never replaces the last good snapshot; the outcome is reported to `on_reload`.
// Thread-safety: Current() takes no mutex (std::atomic<shared_ptr> load) and may be called from
// any thread; Load() and ReloadIfChanged() are serialised by reload_mu_; Start()/Stop()
// may be called from any thread (PeriodicTask).
class AssociationStore {
 public:
  enum class ReloadResult { kUnchanged, kReloaded, kFailed };
  using ReloadCallback = std::function<void(ReloadResult, const Status&, size_t associations)>;

  // A store with a fixed snapshot and no file (the embedded default).
  explicit AssociationStore(AssociationIndex fixed);
  // A store that reads `path`. Call Load() before serving.
  AssociationStore(std::string path, ReloadCallback on_reload);
  ~AssociationStore();
  AssociationStore(const AssociationStore&) = delete;
  AssociationStore& operator=(const AssociationStore&) = delete;

  // First load: an error here is a start-up error (the caller exits non-zero).
  Status Load();
  // Checks the file and reloads it when it changed.
  ReloadResult ReloadIfChanged();
  // Polls ReloadIfChanged() every `interval` on a background thread until Stop().
  // A second Start() while polling is a no-op; Stop() is idempotent, returns promptly
  // and is called by the destructor.
  void Start(std::chrono::milliseconds interval);
  void Stop();

  std::shared_ptr<const AssociationIndex> Current() const { return current_.load(); }
  bool loaded() const { return current_.load() != nullptr; }

 private:
  struct FileIdentity {
    unsigned long long device = 0, inode = 0, size = 0;
    long long mtime_ns = 0;
    bool exists = false;
    bool operator==(const FileIdentity&) const = default;
  };
  FileIdentity Identify() const;

  std::string path_;
  ReloadCallback on_reload_;
  std::atomic<std::shared_ptr<const AssociationIndex>> current_;
  std::mutex reload_mu_;                             // guards last_identity_, last_failed_identity_
  FileIdentity last_identity_;
  std::optional<FileIdentity> last_failed_identity_;  // so one bad file is reported once
  PeriodicTask watcher_;  // last member: its thread uses the ones above
};

}  // namespace podidentity
