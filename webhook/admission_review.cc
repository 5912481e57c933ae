#include "admission_review.h"

#include <utility>

#include "constants.h"
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

// A required string member: present and a string (it may still be empty).
Status RequiredString(const rapidjson::Value& object, std::string_view key, std::string_view pointer,
                      std::string& out) {
  const rapidjson::Value* v = Member(object, key);
  if (v == nullptr || !v->IsString()) return FieldError(pointer, "required string");
  out.assign(View(*v));
  return Status::Ok();
}

// An optional string member: absent and null (Go's decoder accepts null for a string
// and leaves it empty) both give "".
Status OptionalString(const rapidjson::Value& object, std::string_view key, std::string_view pointer,
                      std::string& out) {
  out.clear();
  const rapidjson::Value* v = Member(object, key);
  if (v == nullptr || v->IsNull()) return Status::Ok();
  if (!v->IsString()) return FieldError(pointer, std::string("must be a string, got ") + std::string(TypeName(*v)));
  out.assign(View(*v));
  return Status::Ok();
}

// request.kind / request.resource: required objects whose three members are optional
// strings (the core group is "").
Status ParseTriple(const rapidjson::Value& request, std::string_view key, std::string_view names[3],
                   std::string* out[3]) {
  std::string pointer = "/request/" + std::string(key);
  const rapidjson::Value* v = Member(request, key);
  if (v == nullptr || !v->IsObject()) return FieldError(pointer, "required object");
  for (int i = 0; i < 3; ++i) {
    Status s = OptionalString(*v, names[i], pointer + "/" + std::string(names[i]), *out[i]);
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
      return FieldError("/request/dryRun", std::string("must be a boolean, got ") + std::string(TypeName(*dry_run)));
    }
    out.dry_run = dry_run->GetBool();
  }

  // DELETE and CONNECT carry no object; whatever is there must at least be an object,
  // since the API server sends a serialised Kubernetes object or nothing.
  out.object = nullptr;
  if (const rapidjson::Value* object = Member(request, "object"); object != nullptr && !object->IsNull()) {
    if (!object->IsObject()) {
      return FieldError("/request/object", std::string("must be an object, got ") + std::string(TypeName(*object)));
    }
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
    return FieldError("/", std::string("must be an AdmissionReview object, got ") + std::string(TypeName(root)));
  }

  const rapidjson::Value* api_version = Member(root, "apiVersion");
  if (api_version == nullptr || !api_version->IsString()) return FieldError("/apiVersion", "required string");
  if (View(*api_version) != kAdmissionApiVersion) {
    return FieldError("/apiVersion", "must be " + std::string(kAdmissionApiVersion) + ", got " +
                                         QuoteForError(View(*api_version)));
  }
  out.api_version.assign(View(*api_version));

  const rapidjson::Value* kind = Member(root, "kind");
  if (kind == nullptr || !kind->IsString()) return FieldError("/kind", "required string");
  if (View(*kind) != kAdmissionKind) {
    return FieldError("/kind", "must be " + std::string(kAdmissionKind) + ", got " + QuoteForError(View(*kind)));
  }
  out.kind.assign(View(*kind));

  const rapidjson::Value* request = Member(root, "request");
  if (request == nullptr || !request->IsObject()) return FieldError("/request", "required object");
  if (s = ParseRequest(*request, out); !s.ok()) return s;
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
    // Base64 output is plain ASCII, but quoting keeps this one code path for strings.
    AppendJsonString(out, Base64Encode(SerializePatch(response.patch)));
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

std::string Base64Encode(std::string_view data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(data[k])); };
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t n = byte(i) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

}  // namespace podidentity::webhook
