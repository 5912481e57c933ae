#include "admission_handler.h"

#include <utility>

#include "admission_review.h"
#include "constants.h"
#include "podidentity/json_util.h"

namespace podidentity::webhook {
namespace {

std::string_view View(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

const rapidjson::Value* Member(const rapidjson::Value& object, std::string_view key) {
  auto it = object.FindMember(rapidjson::Value(rapidjson::StringRef(key.data(), key.size())));
  return it == object.MemberEnd() ? nullptr : &it->value;
}

// Who the pod is, for the association lookup and the log line.
struct PodIdentity {
  std::string namespace_name;
  std::string service_account;
  std::string pod_name;  // metadata.name, else metadata.generateName
};

// An optional string field of the pod: absent or null -> "", anything else but a
// string is an error naming the pointer (the API server would never send it).
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

StatusOr<PodIdentity> IdentifyPod(const rapidjson::Value& pod, const AdmissionRequest& request) {
  PodIdentity id;
  const rapidjson::Value* metadata = nullptr;
  const rapidjson::Value* spec = nullptr;
  Status s = OptionalPodObject(pod, "metadata", "/request/object/metadata", metadata);
  if (!s.ok()) return s;
  if (s = OptionalPodObject(pod, "spec", "/request/object/spec", spec); !s.ok()) return s;

  // Pods created by controllers often carry no namespace of their own: the request's
  // namespace (the URL's) is where the pod is created.
  if (s = OptionalPodString(metadata, "namespace", "/request/object/metadata/namespace", id.namespace_name);
      !s.ok()) {
    return s;
  }
  if (id.namespace_name.empty()) id.namespace_name = request.namespace_name;

  if (s = OptionalPodString(metadata, "name", "/request/object/metadata/name", id.pod_name); !s.ok()) return s;
  if (id.pod_name.empty()) {
    if (s = OptionalPodString(metadata, "generateName", "/request/object/metadata/generateName", id.pod_name);
        !s.ok()) {
      return s;
    }
  }
  if (id.pod_name.empty()) id.pod_name = request.name;

  // As Kubernetes' v1 -> internal conversion: serviceAccountName wins, the deprecated
  // serviceAccount alias is used when it is empty, and a pod naming neither runs as
  // "default" (the ServiceAccount admission plugin sets it, but it may be disabled).
  if (s = OptionalPodString(spec, "serviceAccountName", "/request/object/spec/serviceAccountName",
                            id.service_account);
      !s.ok()) {
    return s;
  }
  if (id.service_account.empty()) {
    if (s = OptionalPodString(spec, "serviceAccount", "/request/object/spec/serviceAccount", id.service_account);
        !s.ok()) {
      return s;
    }
  }
  if (id.service_account.empty()) id.service_account = std::string(kDefaultServiceAccount);
  return id;
}

// A 4xx answer: {"error": "..."}. The API server treats it as a failed webhook call
// (failurePolicy decides), which is right for a body that is not a usable request.
AdmissionOutcome Rejection(const Status& status, std::string outcome, const AdmissionRequest* request,
                           const PodIdentity* id) {
  AdmissionOutcome out;
  out.http_status = 400;
  out.outcome = std::move(outcome);
  out.body = "{\"error\":";
  AppendJsonString(out.body, status.message());
  out.body += '}';
  if (request != nullptr) out.log_fields.emplace_back("uid", request->uid);
  if (id != nullptr) {
    out.log_fields.emplace_back("namespace", id->namespace_name);
    out.log_fields.emplace_back("pod", id->pod_name);
    out.log_fields.emplace_back("serviceAccount", id->service_account);
  }
  out.log_fields.emplace_back("outcome", out.outcome);
  // Messages name a JSON pointer and quote at most a short, length-limited
  // apiVersion/kind/operation: never a pod's field values.
  out.log_fields.emplace_back("error", status.message());
  return out;
}

AdmissionResponse ResponseFor(const AdmissionRequest& request) {
  AdmissionResponse response;
  response.api_version = request.api_version;
  response.kind = request.kind;
  response.uid = request.uid;
  response.allowed = true;
  return response;
}

}  // namespace

AdmissionOutcome HandleAdmission(std::string_view body, const AssociationIndex* associations,
                                 const MutationSettings& settings, Random& random) {
  StatusOr<AdmissionRequest> parsed = ParseAdmissionReview(body);
  if (!parsed.ok()) return Rejection(parsed.status(), "bad_request", nullptr, nullptr);
  const AdmissionRequest& request = *parsed;

  AdmissionOutcome out;
  AdmissionResponse response = ResponseFor(request);
  PodIdentity id{request.namespace_name, "", request.name};
  int containers_patched = 0;
  std::string conflict;

  auto finish = [&](std::string outcome) {
    out.outcome = std::move(outcome);
    out.patch_operations = static_cast<int>(response.patch.size());
    out.body = SerializeAdmissionResponse(response);
    out.log_fields.emplace_back("uid", request.uid);
    out.log_fields.emplace_back("namespace", id.namespace_name);
    out.log_fields.emplace_back("pod", id.pod_name);
    out.log_fields.emplace_back("serviceAccount", id.service_account);
    out.log_fields.emplace_back("outcome", out.outcome);
    out.log_fields.emplace_back("containersPatched", containers_patched);
    out.log_fields.emplace_back("patchOperations", out.patch_operations);
    if (!conflict.empty()) out.log_fields.emplace_back("conflict", conflict);
    return std::move(out);
  };

  if (request.operation != "CREATE") return finish("skipped_operation");
  // Only pods themselves: not pods/ephemeralcontainers, pods/binding, ... nor any
  // other kind that happens to be named "Pod".
  if (request.object_kind.kind != "Pod" || !request.object_kind.group.empty() ||
      request.resource.resource != "pods" || !request.resource.group.empty() || !request.sub_resource.empty()) {
    return finish("skipped_kind");
  }
  if (request.object == nullptr) {
    return Rejection(InvalidArgumentError("/request/object: required object for CREATE of a Pod"), "bad_request",
                     &request, nullptr);
  }
  StatusOr<PodIdentity> identified = IdentifyPod(*request.object, request);
  if (!identified.ok()) return Rejection(identified.status(), "bad_request", &request, nullptr);
  id = std::move(identified).value();

  const Association* association =
      associations == nullptr ? nullptr : associations->Find(id.namespace_name, id.service_account);
  if (association == nullptr) return finish("no_association");

  MutationResult result = MutatePod(*request.object, *association, settings, random);
  containers_patched = result.containers_patched;
  response.warnings = std::move(result.warnings);
  switch (result.outcome) {
    case MutationResult::Outcome::kPatched:
      response.patch = std::move(result.patch);
      return finish("patched");
    case MutationResult::Outcome::kAlreadyInjected:
      return finish("already_injected");
    case MutationResult::Outcome::kConflict:
      // Allowed without a patch: a half-injected pod would silently use other
      // credentials; the warning tells the user why nothing was injected.
      conflict = result.error;
      if (response.warnings.empty() && !result.error.empty()) response.warnings.push_back(result.error);
      return finish("conflict");
    case MutationResult::Outcome::kSkippedWindows:
      return finish("skipped_windows");
    case MutationResult::Outcome::kInvalidPod:
      // The API server decoded the object into a typed Pod before calling us, so a
      // malformed one comes from a broken or hostile client: reject the request.
      return Rejection(InvalidArgumentError(result.error.empty() ? "/request/object: not a valid Pod" : result.error),
                       "invalid_pod", &request, &id);
  }
  return finish("already_injected");  // unreachable: every enumerator is handled above
}

}  // namespace podidentity::webhook
