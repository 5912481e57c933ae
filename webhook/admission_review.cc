#include "admission_review.h"

#include <utility>

#include "constants.h"
#include "podidentity/base64.h"
#include "podidentity/json_util.h"

namespace podidentity::webhook {
namespace {

constexpr std::string_view kAdmissionApiVersion = "admission.k8s.io/v1";
constexpr std::string_view kAdmissionKind = "AdmissionReview";
// Values we quote back in an error are cut to this many bytes, so a hostile body
// cannot make the error (and the log line that carries it) arbitrarily large.
constexpr size_t kMaxQuotedBytes = 64;

std::string_view TypeName(const rapidjson::Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType: return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: return "boolean";
    case rapidjson::kObjectType: return "object";
    case rapidjson::kArrayType: return "array";
    case rapidjson::kStringType: return "string";
    case rapidjson::kNumberType: return "number";
  }
  return "unknown";
}

std::string_view View(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

// A JSON-quoted, length-limited copy of an untrusted string for error messages.
std::string QuoteForError(std::string_view s) {
  if (s.size() <= kMaxQuotedBytes) return JsonQuote(s);
  return JsonQuote(s.substr(0, kMaxQuotedBytes)) + "...";
}

Status FieldError(std::string_view pointer, std::string_view problem) {
  return InvalidArgumentError(std::string(pointer) + ": " + std::string(problem));
}

const rapidjson::Value* Member(const rapidjson::Value& object, std::string_view key) {
  auto it = object.FindMember(rapidjson::Value(rapidjson::StringRef(key.data(), key.size())));
  return it == object.MemberEnd() ? nullptr : &it->value;
}

std::string MustBe(std::string_view expected, const rapidjson::Value& got) {
  return "must be " + std::string(expected) + ", got " + std::string(TypeName(got));
}

// A required string member: present and a string (it may still be empty).
Status RequiredString(const rapidjson::Value& object, std::string_view key, std::string_view pointer,
                      std::string& out) {
  const rapidjson::Value* v = Member(object, key);
  if (v == nullptr) return FieldError(pointer, "missing");
  if (!v->IsString()) return FieldError(pointer, MustBe("a string", *v));
  out.assign(View(*v));
  return Status::Ok();
}

// A required object member.
StatusOr<const rapidjson::Value*> RequiredObject(const rapidjson::Value& object, std::string_view key,
                                                 std::string_view pointer) {
  const rapidjson::Value* v = Member(object, key);
  if (v == nullptr) return FieldError(pointer, "missing");
  if (!v->IsObject()) return FieldError(pointer, MustBe("an object", *v));
  return v;
}

// An optional string member: absent and null (Go's decoder accepts null for a string
// and leaves it empty) both give "".
Status OptionalString(const rapidjson::Value& object, std::string_view key, std::string_view pointer,
                      std::string& out) {
  out.clear();
  const rapidjson::Value* v = Member(object, key);
  if (v == nullptr || v->IsNull()) return Status::Ok();
  if (!v->IsString()) return FieldError(pointer, MustBe("a string", *v));
  out.assign(View(*v));
  return Status::Ok();
}

// request.kind / request.resource: required objects whose three members are optional
// strings (the core group is "").
Status ParseTriple(const rapidjson::Value& request, std::string_view key, std::string_view names[3],
                   std::string* out[3]) {
  std::string pointer = "/request/" + std::string(key);
  StatusOr<const rapidjson::Value*> v = RequiredObject(request, key, pointer);
  if (!v.ok()) return v.status();
  for (int i = 0; i < 3; ++i) {
    Status s = OptionalString(**v, names[i], pointer + "/" + std::string(names[i]), *out[i]);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status ParseRequest(const rapidjson::Value& request, AdmissionRequest& out) {
  Status s = RequiredString(request, "uid", "/request/uid", out.uid);
  if (!s.ok()) return s;
  // The uid is echoed so the API server can match the response to its request.
  if (out.uid.empty()) return FieldError("/request/uid", "must not be empty");

  std::string_view kind_names[3] = {"group", "version", "kind"};
  std::string* kind_out[3] = {&out.object_kind.group, &out.object_kind.version, &out.object_kind.kind};
  if (s = ParseTriple(request, "kind", kind_names, kind_out); !s.ok()) return s;
  std::string_view resource_names[3] = {"group", "version", "resource"};
  std::string* resource_out[3] = {&out.resource.group, &out.resource.version, &out.resource.resource};
  if (s = ParseTriple(request, "resource", resource_names, resource_out); !s.ok()) return s;

  if (s = OptionalString(request, "subResource", "/request/subResource", out.sub_resource); !s.ok()) return s;
  if (s = RequiredString(request, "operation", "/request/operation", out.operation); !s.ok()) return s;
  if (out.operation != "CREATE" && out.operation != "UPDATE" && out.operation != "DELETE" &&
      out.operation != "CONNECT") {
    return FieldError("/request/operation",
                      "must be one of CREATE, UPDATE, DELETE, CONNECT, got " + QuoteForError(out.operation));
  }
  if (s = OptionalString(request, "namespace", "/request/namespace", out.namespace_name); !s.ok()) return s;
  if (s = OptionalString(request, "name", "/request/name", out.name); !s.ok()) return s;

  out.dry_run = false;
  if (const rapidjson::Value* dry_run = Member(request, "dryRun"); dry_run != nullptr && !dry_run->IsNull()) {
    if (!dry_run->IsBool()) {
      return FieldError("/request/dryRun", MustBe("a boolean", *dry_run));
    }
    out.dry_run = dry_run->GetBool();
  }

  // request.object is a RawExtension: any JSON value. DELETE and CONNECT carry none
  // (absent or null). Whether it is a usable Pod is the handler's decision, which
  // answers an unusable one with "allowed" rather than failing the whole request.
  out.object = nullptr;
  if (const rapidjson::Value* object = Member(request, "object"); object != nullptr && !object->IsNull()) {
    out.object = object;
  }
  return Status::Ok();
}

void AppendBool(std::string& out, bool b) { out += b ? "true" : "false"; }

}  // namespace

StatusOr<AdmissionRequest> ParseAdmissionReview(std::string_view body) {
  // RapidJSON takes a NUL byte for the end of the input, so `{...}\0anything` would
  // parse as `{...}`. Valid JSON never holds a raw NUL (strings must escape it).
  if (size_t nul = body.find('\0'); nul != std::string_view::npos) {
    return InvalidArgumentError("invalid JSON at offset " + std::to_string(nul) + ": unescaped NUL byte.");
  }
  AdmissionRequest out;
  out.document = std::make_shared<rapidjson::Document>();
  Status s = ParseJsonStrict(body, *out.document, kMaxJsonDepth);
  if (!s.ok()) return s;
  const rapidjson::Value& root = *out.document;
  if (!root.IsObject()) {
    return FieldError("/", MustBe("an AdmissionReview object", root));
  }

  if (s = RequiredString(root, "apiVersion", "/apiVersion", out.api_version); !s.ok()) return s;
  if (out.api_version != kAdmissionApiVersion) {
    return FieldError("/apiVersion", "must be " + std::string(kAdmissionApiVersion) + ", got " +
                                         QuoteForError(out.api_version));
  }
  if (s = RequiredString(root, "kind", "/kind", out.kind); !s.ok()) return s;
  if (out.kind != kAdmissionKind) {
    return FieldError("/kind", "must be " + std::string(kAdmissionKind) + ", got " + QuoteForError(out.kind));
  }
  StatusOr<const rapidjson::Value*> request = RequiredObject(root, "request", "/request");
  if (!request.ok()) return request.status();
  if (s = ParseRequest(**request, out); !s.ok()) return s;
  return out;
}

std::string SerializeAdmissionResponse(const AdmissionResponse& response) {
  std::string out;
  out.reserve(256);
  out += "{\"apiVersion\":";
  AppendJsonString(out, response.api_version);
  out += ",\"kind\":";
  AppendJsonString(out, response.kind);
  out += ",\"response\":{\"uid\":";
  AppendJsonString(out, response.uid);
  out += ",\"allowed\":";
  AppendBool(out, response.allowed);
  if (!response.patch.empty()) {
    out += ",\"patchType\":\"JSONPatch\",\"patch\":";
    // The base64 alphabet (A-Z a-z 0-9 + / =) never needs escaping in JSON, so the
    // largest part of a big response is copied as it is.
    out += '"';
    out += Base64Encode(SerializePatch(response.patch));
    out += '"';
  }
  if (!response.warnings.empty()) {
    out += ",\"warnings\":[";
    for (size_t i = 0; i < response.warnings.size(); ++i) {
      if (i > 0) out += ',';
      AppendJsonString(out, response.warnings[i]);
    }
    out += ']';
  }
  if (!response.allowed) {
    // metav1.Status: the API server shows message to the user and uses code as the
    // HTTP status of the rejected request.
    out += ",\"status\":{\"code\":";
    out += std::to_string(response.status_code);
    out += ",\"message\":";
    AppendJsonString(out, response.status_message);
    out += '}';
  }
  out += "}}";
  return out;
}

// The API server expects standard, padded base64 (Go's encoding/json for []byte).
std::string Base64Encode(std::string_view data) { return base64::Encode(data); }

}  // namespace podidentity::webhook
