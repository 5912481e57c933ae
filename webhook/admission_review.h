// AdmissionReview (admission.k8s.io/v1) codec: parse the request the API server sends
// to a mutating webhook, and serialise the response. Errors name the JSON pointer of
// the offending field.
#pragma once

#include <rapidjson/document.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "json_patch.h"
#include "podidentity/status.h"

namespace podidentity::webhook {

struct GroupVersionKind {
  std::string group, version, kind;
};
struct GroupVersionResource {
  std::string group, version, resource;
};

struct AdmissionRequest {
  std::string api_version;  // echoed in the response ("admission.k8s.io/v1")
  std::string kind;         // echoed in the response ("AdmissionReview")
  std::string uid;
  GroupVersionKind object_kind;        // request.kind
  GroupVersionResource resource;       // request.resource
  std::string sub_resource;            // request.subResource, may be empty
  std::string operation;               // CREATE, UPDATE, DELETE, CONNECT
  std::string namespace_name;          // request.namespace, may be empty
  std::string name;                    // request.name, may be empty (generateName)
  bool dry_run = false;
  // The whole parsed document; `object` points into it (request.object, any JSON value:
  // the handler checks that it is a Pod), or is null when absent or null.
  std::shared_ptr<rapidjson::Document> document;
  const rapidjson::Value* object = nullptr;
};

// Parses an AdmissionReview body. Limits depth to kMaxJsonDepth and rejects duplicate
// keys. Only apiVersion admission.k8s.io/v1 is accepted (the chart registers v1 only).
StatusOr<AdmissionRequest> ParseAdmissionReview(std::string_view body);

struct AdmissionResponse {
  std::string api_version = "admission.k8s.io/v1";
  std::string kind = "AdmissionReview";
  std::string uid;
  bool allowed = true;
  std::vector<PatchOp> patch;  // empty: no patch fields in the response
  std::vector<std::string> warnings;
  // Only for allowed == false: status.code and status.message.
  int status_code = 0;
  std::string status_message;
};

// {"apiVersion":...,"kind":...,"response":{"uid":...,"allowed":...,
//  "patchType":"JSONPatch","patch":"<base64>","warnings":[...]}}
std::string SerializeAdmissionResponse(const AdmissionResponse& response);

std::string Base64Encode(std::string_view data);

}  // namespace podidentity::webhook
