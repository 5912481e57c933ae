#include "admission_handler.h"

#include <utility>

#include "admission_review.h"
#include "constants.h"
#include "podidentity/json_util.h"

namespace podidentity::webhook {
namespace {

// Every pointer in an error about the pod is prefixed with this, so the message
// points into the AdmissionReview the caller sent.
constexpr std::string_view kObjectPointer = "/request/object";

std::string_view View(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

const rapidjson::Value* Member(const rapidjson::Value& object, std::string_view key) {
  auto it = object.FindMember(rapidjson::Value(rapidjson::StringRef(key.data(), key.size())));
  return it == object.MemberEnd() ? nullptr : &it->value;
}

// Who the pod is, for the association lookup and the log line.
struct PodIdentity {
  std::string namespace_name;
  std::string service_account;
  std::string pod_name;  // metadata.name, else metadata.generateName, else request.name
};

// An optional string field of the pod: absent or null -> "", anything but a string is
// an error naming the pointer (the API server never sends such a pod).
Status OptionalPodString(const rapidjson::Value* parent, std::string_view key, std::string_view pointer,
                         std::string& out) {
  out.clear();
  if (parent == nullptr) return Status::Ok();
  const rapidjson::Value* v = Member(*parent, key);
  if (v == nullptr || v->IsNull()) return Status::Ok();
  if (!v->IsString()) return InvalidArgumentError(std::string(pointer) + ": must be a string");
  out.assign(View(*v));
  return Status::Ok();
}

Status OptionalPodObject(const rapidjson::Value& pod, std::string_view key, std::string_view pointer,
                         const rapidjson::Value*& out) {
  out = nullptr;
  const rapidjson::Value* v = Member(pod, key);
  if (v == nullptr || v->IsNull()) return Status::Ok();
  if (!v->IsObject()) return InvalidArgumentError(std::string(pointer) + ": must be an object");
  out = v;
  return Status::Ok();
}

// Refines `id` (filled from the request) with what the pod says, as far as the pod
// allows, so even an invalid pod is logged with what is known about it. `pod` must be
// an object.
Status IdentifyPod(const rapidjson::Value& pod, PodIdentity& id) {
  const rapidjson::Value* metadata = nullptr;
  const rapidjson::Value* spec = nullptr;
  Status s = OptionalPodObject(pod, "metadata", "/request/object/metadata", metadata);
  if (!s.ok()) return s;
  if (s = OptionalPodObject(pod, "spec", "/request/object/spec", spec); !s.ok()) return s;

  // Pods created by controllers often carry no namespace of their own: the request's
  // namespace (the URL's) is where the pod is created.
  std::string value;
  if (s = OptionalPodString(metadata, "namespace", "/request/object/metadata/namespace", value); !s.ok()) return s;
  if (!value.empty()) id.namespace_name = std::move(value);

  if (s = OptionalPodString(metadata, "name", "/request/object/metadata/name", value); !s.ok()) return s;
  if (value.empty()) {
    if (s = OptionalPodString(metadata, "generateName", "/request/object/metadata/generateName", value); !s.ok()) {
      return s;
    }
  }
  if (!value.empty()) id.pod_name = std::move(value);

  // As Kubernetes' v1 -> internal conversion: serviceAccountName wins, the deprecated
  // serviceAccount alias is used when it is empty, and a pod naming neither runs as
  // "default" (the ServiceAccount admission plugin sets it, but it may be disabled).
  if (s = OptionalPodString(spec, "serviceAccountName", "/request/object/spec/serviceAccountName", value); !s.ok()) {
    return s;
  }
  if (value.empty()) {
    if (s = OptionalPodString(spec, "serviceAccount", "/request/object/spec/serviceAccount", value); !s.ok()) {
      return s;
    }
  }
  id.service_account = value.empty() ? std::string(kDefaultServiceAccount) : std::move(value);
  return Status::Ok();
}

// A 400 answer: {"error": "..."}. The API server treats it as a failed webhook call
// (failurePolicy decides), which is right for a body that is not an AdmissionReview:
// there is no uid to answer to.
AdmissionOutcome BadRequest(const Status& status) {
  AdmissionOutcome out;
  out.http_status = 400;
  out.outcome = "bad_request";
  out.body = "{\"error\":";
  AppendJsonString(out.body, status.message());
  out.body += '}';
  out.log_fields.emplace_back("outcome", out.outcome);
  // The parser's messages name a JSON pointer and quote at most a short, length-limited
  // apiVersion/kind/operation: never a pod's field values.
  out.log_fields.emplace_back("error", status.message());
  return out;
}

bool IsPodCreate(const AdmissionRequest& request) {
  // Only pods themselves in core/v1: not pods/ephemeralcontainers, pods/binding, ...
  // nor a custom resource that happens to be named "Pod".
  return request.object_kind.group.empty() && request.object_kind.version == "v1" &&
         request.object_kind.kind == "Pod" && request.resource.group.empty() && request.resource.resource == "pods" &&
         request.sub_resource.empty();
}

}  // namespace

AdmissionOutcome HandleAdmission(std::string_view body, const AssociationIndex* associations,
                                 const MutationSettings& settings, Random& random) {
  StatusOr<AdmissionRequest> parsed = ParseAdmissionReview(body);
  if (!parsed.ok()) return BadRequest(parsed.status());
  const AdmissionRequest& request = *parsed;

  // From here on the answer is always a 200 AdmissionReview for this uid: anything
  // we do not inject into is allowed unchanged, never blocked.
  AdmissionResponse response;
  response.api_version = request.api_version;
  response.kind = request.kind;
  response.uid = request.uid;
  response.allowed = true;

  AdmissionOutcome out;
  PodIdentity id{request.namespace_name, "", request.name};
  int containers_patched = 0;
  std::string error;     // invalid_pod: what is wrong (a pointer, never a value)
  std::string conflict;  // conflict: what collides with our injection

  auto finish = [&](std::string_view outcome) {
    out.http_status = 200;
    out.outcome = std::string(outcome);
    out.patch_operations = static_cast<int>(response.patch.size());
    out.body = SerializeAdmissionResponse(response);
    out.log_fields.emplace_back("uid", request.uid);
    out.log_fields.emplace_back("namespace", id.namespace_name);
    out.log_fields.emplace_back("pod", id.pod_name);
    out.log_fields.emplace_back("service_account", id.service_account);
    out.log_fields.emplace_back("outcome", out.outcome);
    out.log_fields.emplace_back("containers_patched", containers_patched);
    out.log_fields.emplace_back("patch_operations", out.patch_operations);
    if (request.dry_run) out.log_fields.emplace_back("dry_run", true);
    if (!error.empty()) out.log_fields.emplace_back("error", error);
    if (!conflict.empty()) out.log_fields.emplace_back("conflict", conflict);
    return std::move(out);
  };

  if (request.operation != "CREATE") return finish("skipped_operation");
  if (!IsPodCreate(request)) return finish("skipped_kind");

  // The API server always sends the pod it is creating; a request without a usable
  // one is allowed unchanged (blocking it would not make it injectable) and logged.
  if (request.object == nullptr) {
    error = std::string(kObjectPointer) + ": required object";
    return finish(OutcomeName(MutationResult::Outcome::kInvalidPod));
  }
  if (!request.object->IsObject()) {
    error = std::string(kObjectPointer) + ": must be an object";
    return finish(OutcomeName(MutationResult::Outcome::kInvalidPod));
  }
  if (Status s = IdentifyPod(*request.object, id); !s.ok()) {
    error = s.message();
    return finish(OutcomeName(MutationResult::Outcome::kInvalidPod));
  }

  const Association* association =
      associations == nullptr ? nullptr : associations->Find(id.namespace_name, id.service_account);
  if (association == nullptr) return finish("no_association");
  if (IsWindowsPod(*request.object)) return finish(OutcomeName(MutationResult::Outcome::kSkippedWindows));

  // A dry run is patched like a real request: the API server applies the patch and
  // discards the result, and the user sees what would happen.
  MutationResult result = MutatePod(*request.object, *association, settings, random);
  switch (result.outcome) {
    case MutationResult::Outcome::kPatched:
      containers_patched = result.containers_patched;
      response.patch = std::move(result.patch);
      response.warnings = std::move(result.warnings);
      break;
    case MutationResult::Outcome::kConflict:
      // Allowed without a patch: a half-injected pod would silently use other
      // credentials; the warning (kubectl prints it) tells the user why nothing was
      // injected.
      conflict = result.error;
      response.warnings = std::move(result.warnings);
      if (response.warnings.empty()) response.warnings.push_back("pod identity not injected: " + result.error);
      break;
    case MutationResult::Outcome::kInvalidPod:
      // The mutator's pointers are relative to the pod.
      error = std::string(kObjectPointer) + result.error;
      break;
    case MutationResult::Outcome::kAlreadyInjected:
    case MutationResult::Outcome::kSkippedWindows:
      break;
  }
  return finish(OutcomeName(result.outcome));
}

}  // namespace podidentity::webhook
