#include "pod_mutator.h"

#include <set>
#include <string_view>
#include <utility>

#include "constants.h"
#include "podidentity/json_util.h"

namespace podidentity::webhook {
namespace {

using rapidjson::Value;

std::string_view View(const Value& v) { return {v.GetString(), v.GetStringLength()}; }

// A member of an object, or nullptr when absent. JSON null counts as absent, as the
// API server's own decoding treats it (the admission handler does the same).
const Value* Member(const Value& object, std::string_view key) {
  auto it = object.FindMember(Value(rapidjson::StringRef(key.data(), key.size())));
  if (it == object.MemberEnd() || it->value.IsNull()) return nullptr;
  return &it->value;
}

bool StringMemberEquals(const Value& object, std::string_view key, std::string_view expected) {
  const Value* v = Member(object, key);
  return v != nullptr && v->IsString() && View(*v) == expected;
}

// "/a/b" and "/a/b/" are the same mount point for the kubelet.
std::string_view TrimTrailingSlashes(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

std::string Pointer(std::string_view base, std::string_view token) {
  return std::string(base) + "/" + EscapeJsonPointerToken(token);
}

std::string Pointer(std::string_view base, size_t index) { return std::string(base) + "/" + std::to_string(index); }

// The parts of a pod the mutator reads, checked for shape once so the rest of the code
// can rely on types. Pointers are into the caller's document.
struct ContainerView {
  std::string pointer;         // e.g. "/spec/initContainers/1"
  std::string_view name;
  const Value* env = nullptr;  // array or nullptr
  const Value* mounts = nullptr;
};

struct PodView {
  const Value* metadata = nullptr;
  const Value* labels = nullptr;
  const Value* spec = nullptr;
  const Value* volumes = nullptr;
  std::string_view skip_containers_annotation;
  std::vector<ContainerView> containers;  // containers, then init containers
};

// "<pointer>: <problem>", the pointer relative to the pod ("" for the pod itself), so
// the admission handler can prefix "/request/object".
Status Invalid(std::string_view pointer, std::string_view problem) {
  return InvalidArgumentError(std::string(pointer) + ": " + std::string(problem));
}

Status OptionalObject(const Value& parent, std::string_view key, std::string_view parent_pointer, const Value*& out) {
  out = Member(parent, key);
  if (out != nullptr && !out->IsObject()) return Invalid(Pointer(parent_pointer, key), "must be an object");
  return Status::Ok();
}

Status OptionalArray(const Value& parent, std::string_view key, std::string_view parent_pointer, const Value*& out) {
  out = Member(parent, key);
  if (out != nullptr && !out->IsArray()) return Invalid(Pointer(parent_pointer, key), "must be an array");
  return Status::Ok();
}

// Every element of `array` must be an object whose `key` members are strings; `name`
// must also be non-empty (Kubernetes identifies env vars, mounts and volumes by it).
Status CheckNamedObjects(const Value& array, std::string_view pointer, std::initializer_list<std::string_view> keys) {
  for (rapidjson::SizeType i = 0; i < array.Size(); ++i) {
    const std::string element = Pointer(pointer, i);
    if (!array[i].IsObject()) return Invalid(element, "must be an object");
    for (std::string_view key : keys) {
      const Value* v = Member(array[i], key);
      if (v == nullptr || !v->IsString() || (key == "name" && v->GetStringLength() == 0)) {
        return Invalid(Pointer(element, key), "required non-empty string");
      }
    }
  }
  return Status::Ok();
}

Status ReadContainers(const Value& spec, std::string_view list, bool required, PodView& view) {
  const std::string pointer = Pointer("/spec", list);
  const Value* containers = Member(spec, list);
  if (containers == nullptr) return required ? Invalid(pointer, "required array") : Status::Ok();
  if (!containers->IsArray()) return Invalid(pointer, "must be an array");
  for (rapidjson::SizeType i = 0; i < containers->Size(); ++i) {
    const Value& container = (*containers)[i];
    ContainerView c;
    c.pointer = Pointer(pointer, i);
    if (!container.IsObject()) return Invalid(c.pointer, "must be an object");
    const Value* name = Member(container, "name");
    if (name == nullptr || !name->IsString() || name->GetStringLength() == 0) {
      return Invalid(Pointer(c.pointer, "name"), "required non-empty string");
    }
    c.name = View(*name);
    Status s = OptionalArray(container, "env", c.pointer, c.env);
    if (!s.ok()) return s;
    if (c.env != nullptr && !(s = CheckNamedObjects(*c.env, Pointer(c.pointer, "env"), {"name"})).ok()) return s;
    if (!(s = OptionalArray(container, "volumeMounts", c.pointer, c.mounts)).ok()) return s;
    if (c.mounts != nullptr &&
        !(s = CheckNamedObjects(*c.mounts, Pointer(c.pointer, "volumeMounts"), {"name", "mountPath"})).ok()) {
      return s;
    }
    view.containers.push_back(std::move(c));
  }
  return Status::Ok();
}

StatusOr<PodView> ReadPod(const Value& pod) {
  PodView view;
  if (!pod.IsObject()) return Invalid("", "must be an object");
  Status s = OptionalObject(pod, "metadata", "", view.metadata);
  if (!s.ok()) return s;
  if (view.metadata != nullptr) {
    if (!(s = OptionalObject(*view.metadata, "labels", "/metadata", view.labels)).ok()) return s;
    const Value* annotations = nullptr;
    if (!(s = OptionalObject(*view.metadata, "annotations", "/metadata", annotations)).ok()) return s;
    if (annotations != nullptr) {
      if (const Value* skip = Member(*annotations, kAnnotationSkipContainers); skip != nullptr) {
        if (!skip->IsString()) {
          return Invalid(Pointer("/metadata/annotations", kAnnotationSkipContainers), "must be a string");
        }
        view.skip_containers_annotation = View(*skip);
      }
    }
  }
  view.spec = Member(pod, "spec");
  if (view.spec == nullptr) return Invalid("/spec", "required object");
  if (!view.spec->IsObject()) return Invalid("/spec", "must be an object");
  if (!(s = OptionalArray(*view.spec, "volumes", "/spec", view.volumes)).ok()) return s;
  if (view.volumes != nullptr && !(s = CheckNamedObjects(*view.volumes, "/spec/volumes", {"name"})).ok()) return s;
  if (!(s = ReadContainers(*view.spec, "containers", /*required=*/true, view)).ok()) return s;
  if (!(s = ReadContainers(*view.spec, "initContainers", /*required=*/false, view)).ok()) return s;
  return view;
}

// Splits the skip-containers annotation: "a, b ,c" -> {a, b, c}; empty names ignored.
std::set<std::string_view, std::less<>> ParseSkipContainers(std::string_view annotation) {
  std::set<std::string_view, std::less<>> names;
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!annotation.empty()) {
    size_t comma = annotation.find(',');
    std::string_view name = annotation.substr(0, comma);
    annotation = comma == std::string_view::npos ? std::string_view() : annotation.substr(comma + 1);
    while (!name.empty() && is_space(name.front())) name.remove_prefix(1);
    while (!name.empty() && is_space(name.back())) name.remove_suffix(1);
    if (!name.empty()) names.insert(name);
  }
  return names;
}

bool SetsEnv(const ContainerView& c, std::string_view name) {
  if (c.env == nullptr) return false;
  for (const Value& e : c.env->GetArray()) {
    if (StringMemberEquals(e, "name", name)) return true;
  }
  return false;
}

// Ours: a projected volume with a serviceAccountToken source for our audience and
// token path (expiration and mode may differ: the token still works).
bool IsOurVolume(const Value& volume, const MutationSettings& settings) {
  const Value* projected = Member(volume, "projected");
  if (projected == nullptr || !projected->IsObject()) return false;
  const Value* sources = Member(*projected, "sources");
  if (sources == nullptr || !sources->IsArray()) return false;
  for (const Value& source : sources->GetArray()) {
    if (!source.IsObject()) continue;
    const Value* token = Member(source, "serviceAccountToken");
    if (token != nullptr && token->IsObject() && StringMemberEquals(*token, "audience", settings.audience) &&
        StringMemberEquals(*token, "path", settings.token_file_name)) {
      return true;
    }
  }
  return false;
}

// What one container still needs.
struct ContainerPlan {
  const ContainerView* container = nullptr;
  bool add_mount = false;
  std::vector<std::pair<std::string_view, std::string>> env_to_add;  // name, value
};

std::string EnvVarJson(std::string_view name, std::string_view value) {
  std::string out = "{\"name\":";
  AppendJsonString(out, name);
  out += ",\"value\":";
  AppendJsonString(out, value);
  out += '}';
  return out;
}

std::string MountJson(const MutationSettings& settings) {
  return "{\"name\":" + JsonQuote(settings.volume_name) + ",\"mountPath\":" + JsonQuote(settings.mount_path) +
         ",\"readOnly\":true}";
}

std::string VolumeJson(const MutationSettings& settings, int64_t expiration_seconds) {
  return "{\"name\":" + JsonQuote(settings.volume_name) +
         ",\"projected\":{\"defaultMode\":" + std::to_string(kProjectedVolumeDefaultMode) +
         ",\"sources\":[{\"serviceAccountToken\":{\"audience\":" + JsonQuote(settings.audience) +
         ",\"expirationSeconds\":" + std::to_string(expiration_seconds) +
         ",\"path\":" + JsonQuote(settings.token_file_name) + "}}]}}";
}

// Appends to an existing array with "/-", or creates it with `elements` (one op).
void AddToArray(std::vector<PatchOp>& patch, const std::string& array_pointer, bool array_exists,
                const std::vector<std::string>& elements) {
  if (array_exists) {
    for (const std::string& element : elements) patch.push_back({"add", array_pointer + "/-", element});
    return;
  }
  std::string array = "[";
  for (size_t i = 0; i < elements.size(); ++i) {
    if (i > 0) array += ',';
    array += elements[i];
  }
  array += ']';
  patch.push_back({"add", array_pointer, std::move(array)});
}

}  // namespace

MutationSettings MutationSettings::Defaults() {
  MutationSettings s;
  s.audience = std::string(kDefaultAudience);
  s.volume_name = std::string(kDefaultVolumeName);
  s.mount_path = std::string(kDefaultMountPath);
  s.token_file_name = std::string(kDefaultTokenFileName);
  s.token_expiration_seconds = kDefaultTokenExpirationSeconds;
  s.credentials_uri = std::string(kDefaultCredentialsUri);
  return s;
}

std::string MutationSettings::TokenFilePath() const { return mount_path + "/" + token_file_name; }

std::string_view OutcomeName(MutationResult::Outcome outcome) {
  switch (outcome) {
    case MutationResult::Outcome::kPatched: return "patched";
    case MutationResult::Outcome::kAlreadyInjected: return "already_injected";
    case MutationResult::Outcome::kConflict: return "conflict";
    case MutationResult::Outcome::kSkippedWindows: return "skipped_windows";
    case MutationResult::Outcome::kInvalidPod: return "invalid_pod";
  }
  return "unknown";
}

bool IsWindowsPod(const Value& pod) {
  if (!pod.IsObject()) return false;
  const Value* spec = Member(pod, "spec");
  if (spec == nullptr || !spec->IsObject()) return false;
  if (const Value* os = Member(*spec, "os"); os != nullptr && os->IsObject() && StringMemberEquals(*os, "name", kWindows)) {
    return true;
  }
  const Value* selector = Member(*spec, "nodeSelector");
  return selector != nullptr && selector->IsObject() && StringMemberEquals(*selector, kNodeSelectorOs, kWindows);
}

MutationResult MutatePod(const Value& pod, const Association& association, const MutationSettings& settings,
                         Random& random) {
  // The association decides *whether* to inject (the caller looked it up); nothing in
  // the pod depends on the role, which only the node agent ever sees.
  static_cast<void>(association);
  MutationResult result;

  StatusOr<PodView> read = ReadPod(pod);
  if (!read.ok()) {
    result.outcome = MutationResult::Outcome::kInvalidPod;
    result.error = read.status().message();
    return result;
  }
  const PodView& view = *read;
  if (IsWindowsPod(pod)) {
    result.outcome = MutationResult::Outcome::kSkippedWindows;
    return result;
  }

  const auto skipped = ParseSkipContainers(view.skip_containers_annotation);
  const std::string_view our_mount_path = TrimTrailingSlashes(settings.mount_path);

  // Conflicts first: any one of them means no patch at all, so the pod never ends up
  // half-injected and silently using other credentials.
  std::vector<std::string> conflicts;
  bool volume_present = false;
  if (view.volumes != nullptr) {
    for (const Value& volume : view.volumes->GetArray()) {
      if (!StringMemberEquals(volume, "name", settings.volume_name)) continue;
      if (IsOurVolume(volume, settings)) {
        volume_present = true;
      } else {
        conflicts.push_back("volume \"" + settings.volume_name +
                            "\" already exists and is not a projected service-account token for audience \"" +
                            settings.audience + "\" and path \"" + settings.token_file_name + "\"");
      }
    }
  }

  std::vector<ContainerPlan> plans;
  for (const ContainerView& c : view.containers) {
    // A skipped container gets nothing, so what it mounts cannot break our credentials.
    if (skipped.contains(c.name)) continue;
    ContainerPlan plan;
    plan.container = &c;
    bool mounted = false;
    if (c.mounts != nullptr) {
      for (const Value& mount : c.mounts->GetArray()) {
        const bool our_volume = StringMemberEquals(mount, "name", settings.volume_name);
        const bool at_our_path = TrimTrailingSlashes(View(mount["mountPath"])) == our_mount_path;
        if (our_volume && at_our_path) {
          mounted = true;
        } else if (our_volume) {
          conflicts.push_back("container \"" + std::string(c.name) + "\" mounts volume \"" + settings.volume_name +
                              "\" at \"" + std::string(View(mount["mountPath"])) + "\" instead of \"" +
                              settings.mount_path + "\"");
        } else if (at_our_path) {
          conflicts.push_back("container \"" + std::string(c.name) + "\" mounts volume \"" +
                              std::string(View(mount["name"])) + "\" at \"" + settings.mount_path +
                              "\", where the pod identity token must be mounted");
        }
      }
    }
    plan.add_mount = !mounted;
    // A container that configures container credentials itself keeps its settings:
    // adding the other variable would mix two configurations.
    if (!SetsEnv(c, kEnvCredentialsFullUri) && !SetsEnv(c, kEnvAuthorizationTokenFile)) {
      plan.env_to_add.emplace_back(kEnvCredentialsFullUri, settings.credentials_uri);
      plan.env_to_add.emplace_back(kEnvAuthorizationTokenFile, settings.TokenFilePath());
    }
    if (settings.region.has_value() && !SetsEnv(c, kEnvRegion) && !SetsEnv(c, kEnvDefaultRegion)) {
      plan.env_to_add.emplace_back(kEnvRegion, *settings.region);
      plan.env_to_add.emplace_back(kEnvDefaultRegion, *settings.region);
    }
    plans.push_back(std::move(plan));
  }

  if (!conflicts.empty()) {
    result.outcome = MutationResult::Outcome::kConflict;
    for (const std::string& conflict : conflicts) {
      result.warnings.push_back("pod identity not injected: " + conflict);
      if (!result.error.empty()) result.error += "; ";
      result.error += conflict;
    }
    return result;
  }

  // No container to inject into (none, or all skipped): the volume alone is useless.
  // A container a later webhook adds is handled on reinvocation.
  if (plans.empty()) return result;

  std::vector<PatchOp> container_ops;
  for (const ContainerPlan& plan : plans) {
    const ContainerView& c = *plan.container;
    if (plan.add_mount) {
      AddToArray(container_ops, c.pointer + "/volumeMounts", c.mounts != nullptr, {MountJson(settings)});
    }
    if (!plan.env_to_add.empty()) {
      std::vector<std::string> vars;
      for (const auto& [name, value] : plan.env_to_add) vars.push_back(EnvVarJson(name, value));
      AddToArray(container_ops, c.pointer + "/env", c.env != nullptr, vars);
    }
    if (plan.add_mount || !plan.env_to_add.empty()) ++result.containers_patched;
  }
  if (volume_present && container_ops.empty()) return result;  // kAlreadyInjected

  // Deterministic order: label, volume, then containers in pod order (containers,
  // then init containers).
  std::vector<PatchOp>& patch = result.patch;
  const std::string label_value = JsonQuote(kLabelPodIdentityValue);
  if (view.metadata == nullptr) {
    patch.push_back({"add", "/metadata", "{\"labels\":{" + JsonQuote(kLabelPodIdentity) + ":" + label_value + "}}"});
  } else if (view.labels == nullptr) {
    patch.push_back({"add", "/metadata/labels", "{" + JsonQuote(kLabelPodIdentity) + ":" + label_value + "}"});
  } else if (!StringMemberEquals(*view.labels, kLabelPodIdentity, kLabelPodIdentityValue)) {
    // The label is ours and says the pod was mutated; "add" sets it whatever it was.
    patch.push_back({"add", JsonPointer({"metadata", "labels", kLabelPodIdentity}), label_value});
  }
  if (!volume_present) {
    // With the default lifetime, spread expirations so pods created together do not
    // refresh their tokens together (as EKS's webhook does).
    const int64_t expiration = settings.token_expiration_seconds == kDefaultTokenExpirationSeconds
                                   ? random.Uniform(kJitterMinSeconds, kDefaultTokenExpirationSeconds)
                                   : settings.token_expiration_seconds;
    AddToArray(patch, "/spec/volumes", view.volumes != nullptr, {VolumeJson(settings, expiration)});
  }
  patch.insert(patch.end(), std::make_move_iterator(container_ops.begin()), std::make_move_iterator(container_ops.end()));
  result.outcome = MutationResult::Outcome::kPatched;
  return result;
}

}  // namespace podidentity::webhook
