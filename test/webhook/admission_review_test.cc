#include "admission_review.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

#include "podidentity/base64.h"
#include "podidentity/json_util.h"

using podidentity::webhook::AdmissionRequest;
using podidentity::webhook::AdmissionResponse;
using podidentity::webhook::Base64Encode;
using podidentity::webhook::PatchOp;
using podidentity::webhook::SerializePatch;
using podidentity::webhook::ParseAdmissionReview;
using podidentity::webhook::SerializeAdmissionResponse;

namespace {

std::string ReadTestdata(const std::string& name) {
  std::ifstream in(std::string(TESTDATA_DIR) + "/admission/" + name, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The demo review with `edit` applied to its parsed form, serialised again, so each
// bad-input case differs from a real request in exactly one place.
template <typename Edit>
std::string EditedDemo(Edit edit) {
  rapidjson::Document doc;
  REQUIRE(podidentity::ParseJsonStrict(ReadTestdata("demo_pod_create.json"), doc).ok());
  edit(doc, doc.GetAllocator());
  return podidentity::JsonToString(doc);
}

rapidjson::Value& Request(rapidjson::Document& doc) { return doc["request"]; }

std::string ParseError(std::string_view body) {
  auto parsed = ParseAdmissionReview(body);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.status().code() == podidentity::StatusCode::kInvalidArgument);
  return parsed.status().message();
}

}  // namespace

TEST_CASE("ParseAdmissionReview reads a real CREATE request") {
  auto parsed = ParseAdmissionReview(ReadTestdata("demo_pod_create.json"));
  REQUIRE(parsed.ok());
  const AdmissionRequest& r = *parsed;
  CHECK(r.api_version == "admission.k8s.io/v1");
  CHECK(r.kind == "AdmissionReview");
  CHECK(r.uid == "705ab4f5-6393-11e8-b7cc-42010a800002");
  CHECK(r.object_kind.group.empty());
  CHECK(r.object_kind.version == "v1");
  CHECK(r.object_kind.kind == "Pod");
  CHECK(r.resource.group.empty());
  CHECK(r.resource.version == "v1");
  CHECK(r.resource.resource == "pods");
  CHECK(r.sub_resource.empty());
  CHECK(r.operation == "CREATE");
  CHECK(r.namespace_name == "demo-ns");
  CHECK(r.name == "demo-app");
  CHECK_FALSE(r.dry_run);
  REQUIRE(r.object != nullptr);
  REQUIRE(r.object->IsObject());
  // `object` points into the document the request keeps alive.
  CHECK(r.object == &(*r.document)["request"]["object"]);
  CHECK(std::string((*r.object)["metadata"]["name"].GetString()) == "demo-app");
}

TEST_CASE("ParseAdmissionReview keeps the object alive with the request") {
  AdmissionRequest copy;
  {
    auto parsed = ParseAdmissionReview(ReadTestdata("demo_pod_create.json"));
    REQUIRE(parsed.ok());
    copy = *parsed;
  }
  REQUIRE(copy.object != nullptr);
  CHECK(std::string((*copy.object)["spec"]["serviceAccountName"].GetString()) == "demo-sa");
}

TEST_CASE("ParseAdmissionReview: DELETE without an object, subresources, dry run") {
  auto del = ParseAdmissionReview(ReadTestdata("demo_pod_delete.json"));
  REQUIRE(del.ok());
  CHECK(del->operation == "DELETE");
  CHECK(del->object == nullptr);  // "object": null

  auto ephemeral = ParseAdmissionReview(ReadTestdata("ephemeral_containers_update.json"));
  REQUIRE(ephemeral.ok());
  CHECK(ephemeral->sub_resource == "ephemeralcontainers");
  CHECK(ephemeral->operation == "UPDATE");

  auto generated = ParseAdmissionReview(ReadTestdata("generate_name_pod_create.json"));
  REQUIRE(generated.ok());
  CHECK(generated->dry_run);
  CHECK(generated->name.empty());
  CHECK(generated->namespace_name == "demo-ns");

  // request.object is a RawExtension: any value parses; the handler decides whether it
  // is a usable Pod.
  auto array_object = ParseAdmissionReview(EditedDemo([](rapidjson::Document& d, auto&) { Request(d)["object"].SetArray(); }));
  REQUIRE(array_object.ok());
  REQUIRE(array_object->object != nullptr);
  CHECK(array_object->object->IsArray());

  // An absent object is the same as null.
  auto absent = ParseAdmissionReview(EditedDemo([](rapidjson::Document& d, auto&) { Request(d).RemoveMember("object"); }));
  REQUIRE(absent.ok());
  CHECK(absent->object == nullptr);
}

TEST_CASE("ParseAdmissionReview keeps exotic but valid strings exactly") {
  // An escaped NUL and non-ASCII text are valid JSON; lengths are kept, not cut at NUL.
  auto parsed = ParseAdmissionReview(EditedDemo([](rapidjson::Document& d, auto& a) {
    Request(d)["uid"].SetString("a\0b\xc3\xa9", 5, a);
  }));
  REQUIRE(parsed.ok());
  CHECK(parsed->uid == std::string("a\0b\xc3\xa9", 5));
  // Huge integers inside the object are representable as doubles: accepted.
  CHECK(ParseAdmissionReview(EditedDemo([](rapidjson::Document& d, auto& a) {
          rapidjson::Value big;
          big.SetDouble(1e300);
          Request(d)["object"].AddMember("x", big, a);
        })).ok());
  CHECK(ParseAdmissionReview(R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
      "uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1",
      "resource":"pods"},"operation":"CREATE","object":{"n":123456789012345678901234567890}}})")
            .ok());
}

TEST_CASE("ParseAdmissionReview rejects bad input with the JSON pointer of the problem") {
  struct Case {
    const char* name;
    std::string body;
    std::string message;
  };
  std::string deep_object = "{}";
  std::string deep_pointer = "/request/object";
  // root (depth 0) -> request (1) -> object (2) -> 99 nested "a" members reach depth 101.
  for (int i = 0; i < 99; ++i) {
    deep_object = "{\"a\":" + deep_object + "}";
    deep_pointer += "/a";
  }
  std::string deep_body = R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",)"
                          R"("operation":"CREATE","object":)" + deep_object + "}}";
  std::string long_version(200, 'v');

  const Case cases[] = {
      {"empty body", "", "invalid JSON at offset 0: The document is empty."},
      {"not JSON", "not json", "invalid JSON at offset 1: Invalid value."},
      {"trailing content", R"({"apiVersion":"admission.k8s.io/v1"} x)",
       "invalid JSON at offset 37: The document root must not be followed by other values."},
      {"NUL then trailing content", std::string("{}\0{\"x\":1}", 10), "invalid JSON at offset 2: unescaped NUL byte."},
      // Found by the fuzzer: RapidJSON decodes "\udc00" to bytes that are not UTF-8, so
      // the uid could not be echoed byte for byte; the review is refused instead.
      {"uid with an unpaired surrogate escape",
       R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"0000\udc00"}})",
       "string is not valid UTF-8 (unpaired surrogate escape?) at /request/uid"},
      {"JSON but not an object", "[1,2]", "/: must be an AdmissionReview object, got array"},
      {"a JSON string", R"("AdmissionReview")", "/: must be an AdmissionReview object, got string"},
      {"missing apiVersion", EditedDemo([](auto& d, auto&) { d.RemoveMember("apiVersion"); }),
       "/apiVersion: missing"},
      {"wrong apiVersion", ReadTestdata("v1beta1_review.json"),
       R"(/apiVersion: must be admission.k8s.io/v1, got "admission.k8s.io/v1beta1")"},
      {"long apiVersion is cut in the message",
       EditedDemo([&](auto& d, auto& a) { d["apiVersion"].SetString(long_version.c_str(), a); }),
       "/apiVersion: must be admission.k8s.io/v1, got \"" + std::string(64, 'v') + "\"..."},
      {"apiVersion not a string", EditedDemo([](auto& d, auto&) { d["apiVersion"].SetInt(1); }),
       "/apiVersion: must be a string, got number"},
      {"missing kind", EditedDemo([](auto& d, auto&) { d.RemoveMember("kind"); }), "/kind: missing"},
      {"kind null", EditedDemo([](auto& d, auto&) { d["kind"].SetNull(); }), "/kind: must be a string, got null"},
      {"wrong kind", EditedDemo([](auto& d, auto&) { d["kind"].SetString("ConversionReview"); }),
       R"(/kind: must be AdmissionReview, got "ConversionReview")"},
      {"missing request", EditedDemo([](auto& d, auto&) { d.RemoveMember("request"); }), "/request: missing"},
      {"request is null", EditedDemo([](auto& d, auto&) { d["request"].SetNull(); }),
       "/request: must be an object, got null"},
      {"request is an array", EditedDemo([](auto& d, auto&) { d["request"].SetArray(); }),
       "/request: must be an object, got array"},
      {"response instead of request", R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",)"
                                      R"("response":{"uid":"u","allowed":true}})",
       "/request: missing"},
      {"missing uid", EditedDemo([](auto& d, auto&) { Request(d).RemoveMember("uid"); }), "/request/uid: missing"},
      {"uid not a string", EditedDemo([](auto& d, auto&) { Request(d)["uid"].SetInt(42); }),
       "/request/uid: must be a string, got number"},
      {"uid null", EditedDemo([](auto& d, auto&) { Request(d)["uid"].SetNull(); }),
       "/request/uid: must be a string, got null"},
      {"empty uid", EditedDemo([](auto& d, auto&) { Request(d)["uid"].SetString(""); }),
       "/request/uid: must not be empty"},
      {"missing request.kind", EditedDemo([](auto& d, auto&) { Request(d).RemoveMember("kind"); }),
       "/request/kind: missing"},
      {"request.kind a string", EditedDemo([](auto& d, auto&) { Request(d)["kind"].SetString("Pod"); }),
       "/request/kind: must be an object, got string"},
      {"request.kind.group a number", EditedDemo([](auto& d, auto&) { Request(d)["kind"]["group"].SetInt(1); }),
       "/request/kind/group: must be a string, got number"},
      {"request.kind.version an object", EditedDemo([](auto& d, auto&) { Request(d)["kind"]["version"].SetObject(); }),
       "/request/kind/version: must be a string, got object"},
      {"missing request.resource", EditedDemo([](auto& d, auto&) { Request(d).RemoveMember("resource"); }),
       "/request/resource: missing"},
      {"request.kind.kind not a string", EditedDemo([](auto& d, auto&) { Request(d)["kind"]["kind"].SetBool(true); }),
       "/request/kind/kind: must be a string, got boolean"},
      {"request.resource a string", EditedDemo([](auto& d, auto&) { Request(d)["resource"].SetString("pods"); }),
       "/request/resource: must be an object, got string"},
      {"request.resource.group a number", EditedDemo([](auto& d, auto&) { Request(d)["resource"]["group"].SetInt(0); }),
       "/request/resource/group: must be a string, got number"},
      {"request.resource.version a boolean",
       EditedDemo([](auto& d, auto&) { Request(d)["resource"]["version"].SetBool(false); }),
       "/request/resource/version: must be a string, got boolean"},
      {"request.resource.resource an array",
       EditedDemo([](auto& d, auto&) { Request(d)["resource"]["resource"].SetArray(); }),
       "/request/resource/resource: must be a string, got array"},
      {"subResource an array", EditedDemo([](auto& d, auto&) { Request(d).AddMember("subResource", rapidjson::Value(rapidjson::kArrayType), d.GetAllocator()); }),
       "/request/subResource: must be a string, got array"},
      {"missing operation", EditedDemo([](auto& d, auto&) { Request(d).RemoveMember("operation"); }),
       "/request/operation: missing"},
      {"operation a number", EditedDemo([](auto& d, auto&) { Request(d)["operation"].SetInt(1); }),
       "/request/operation: must be a string, got number"},
      {"operation in lower case", EditedDemo([](auto& d, auto&) { Request(d)["operation"].SetString("create"); }),
       R"(/request/operation: must be one of CREATE, UPDATE, DELETE, CONNECT, got "create")"},
      {"unknown operation", EditedDemo([](auto& d, auto&) { Request(d)["operation"].SetString("PATCH"); }),
       R"(/request/operation: must be one of CREATE, UPDATE, DELETE, CONNECT, got "PATCH")"},
      {"namespace not a string", EditedDemo([](auto& d, auto&) { Request(d)["namespace"].SetObject(); }),
       "/request/namespace: must be a string, got object"},
      {"name not a string", EditedDemo([](auto& d, auto&) { Request(d)["name"].SetInt(7); }),
       "/request/name: must be a string, got number"},
      {"dryRun a string", EditedDemo([](auto& d, auto&) { Request(d)["dryRun"].SetString("true"); }),
       "/request/dryRun: must be a boolean, got string"},
      {"duplicate top-level key",
       R"({"apiVersion":"admission.k8s.io/v1","apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})",
       "duplicate key at /apiVersion"},
      {"duplicate key inside the pod",
       R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE",)"
       R"("object":{"spec":{"serviceAccountName":"a","serviceAccountName":"demo-sa"}}}})",
       "duplicate key at /request/object/spec/serviceAccountName"},
      {"too-deep nesting", deep_body, "JSON nesting deeper than 100 at " + deep_pointer},
      {"number too big for a double",
       R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":1e400}})",
       // RapidJSON reports the start or the end of the number depending on the build's
       // parse flags and optimisation; the message is what matters.
       "~: Number too big to be stored in double."},
      {"invalid UTF-8", "{\"apiVersion\":\"admission.k8s.io/v1\xff\"}",
       "invalid JSON at offset 34: Invalid encoding in string."},
      {"lone surrogate escape", R"({"kind":"\ud800"})",
       "invalid JSON at offset 9: The surrogate pair in string is invalid."},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    if (c.message.rfind("~", 0) == 0) {
      const std::string error = ParseError(c.body);
      CHECK(error.rfind("invalid JSON at offset ", 0) == 0);
      CHECK(error.find(c.message.substr(1)) != std::string::npos);
    } else {
      CHECK(ParseError(c.body) == c.message);
    }
  }
}

TEST_CASE("Nesting up to the depth limit is accepted") {
  std::string object = "{}";
  for (int i = 0; i < 98; ++i) object = "{\"a\":" + object + "}";  // deepest value at depth 100
  std::string body = R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",)"
                     R"("kind":{},"resource":{},"operation":"CREATE","object":)" + object + "}}";
  CHECK(ParseAdmissionReview(body).ok());
}

TEST_CASE("Base64Encode is standard base64 with padding (RFC 4648 test vectors)") {
  CHECK(Base64Encode("") == "");
  CHECK(Base64Encode("f") == "Zg==");
  CHECK(Base64Encode("fo") == "Zm8=");
  CHECK(Base64Encode("foo") == "Zm9v");
  CHECK(Base64Encode("foob") == "Zm9vYg==");
  CHECK(Base64Encode("fooba") == "Zm9vYmE=");
  CHECK(Base64Encode("foobar") == "Zm9vYmFy");
  // High bytes use the standard alphabet's '+' and '/', never the URL-safe one.
  CHECK(Base64Encode(std::string("\xfb\xff\xbf", 3)) == "+/+/");
  CHECK(Base64Encode(std::string("\0\0\0", 3)) == "AAAA");
  // No line breaks, however long.
  CHECK(Base64Encode(std::string(3000, 'x')).find('\n') == std::string::npos);
  CHECK(Base64Encode(std::string(3000, 'x')).size() == 4000);
}

TEST_CASE("SerializeAdmissionResponse: allowed, no patch") {
  AdmissionResponse r;
  r.uid = "705ab4f5-6393-11e8-b7cc-42010a800002";
  CHECK(SerializeAdmissionResponse(r) ==
        R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",)"
        R"("response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}})");
}

TEST_CASE("SerializeAdmissionResponse: patch, warnings and escaping") {
  AdmissionResponse r;
  r.uid = "u\"1";
  r.patch = {{"add", "/metadata/labels/eks.amazonaws.com~1pod-identity", R"("enabled")"}};
  r.warnings = {"first", "container \"app\" mounts \\ elsewhere"};
  std::string expected_patch = R"([{"op":"add","path":"/metadata/labels/eks.amazonaws.com~1pod-identity","value":"enabled"}])";
  CHECK(SerializeAdmissionResponse(r) ==
        R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u\"1","allowed":true,)"
        R"("patchType":"JSONPatch","patch":")" + Base64Encode(expected_patch) + R"(",)"
        R"("warnings":["first","container \"app\" mounts \\ elsewhere"]}})");
}

TEST_CASE("SerializeAdmissionResponse: denial carries a status") {
  AdmissionResponse r;
  r.uid = "u";
  r.allowed = false;
  r.status_code = 403;
  r.status_message = "no\nway";
  std::string body = SerializeAdmissionResponse(r);
  CHECK(body == R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,)"
                R"("status":{"code":403,"message":"no\nway"}}})");
  rapidjson::Document doc;
  CHECK(podidentity::ParseJsonStrict(body, doc).ok());
}

TEST_CASE("SerializeAdmissionResponse output is valid JSON for hostile strings") {
  AdmissionResponse r;
  r.uid = std::string("\0\x01\xff\xc3(\"\\", 7);
  r.warnings = {std::string("\xed\xa0\x80", 3)};  // an encoded surrogate: invalid UTF-8
  rapidjson::Document doc;
  REQUIRE(podidentity::ParseJsonStrict(SerializeAdmissionResponse(r), doc).ok());
  CHECK(doc["response"]["uid"].GetStringLength() > 0);
}

TEST_CASE("SerializeAdmissionResponse: the patch decodes back to SerializePatch for every padding length") {
  // Label values of growing length make the serialised patch 3n, 3n+1 and 3n+2 bytes
  // long, so the base64 ends in no, two and one '='.
  bool seen[3] = {false, false, false};
  for (int extra = 0; extra < 3; ++extra) {
    AdmissionResponse r;
    r.uid = "u";
    r.patch = {{"add", "/metadata/labels", "{\"a\":\"" + std::string(static_cast<size_t>(extra), 'x') + "\"}"},
               {"add", "/spec/containers/0/env/-", R"({"name":"N","value":"v"})"}};
    const std::string serialised = SerializePatch(r.patch);
    seen[serialised.size() % 3] = true;
    rapidjson::Document doc;
    REQUIRE(podidentity::ParseJsonStrict(SerializeAdmissionResponse(r), doc).ok());
    const rapidjson::Value& response = doc["response"];
    CHECK(std::string(response["patchType"].GetString()) == "JSONPatch");
    const std::string encoded = response["patch"].GetString();
    CHECK(encoded.size() % 4 == 0);
    auto decoded = podidentity::base64::Decode(encoded);
    REQUIRE(decoded.ok());
    CHECK(*decoded == serialised);
    CHECK_FALSE(response.HasMember("warnings"));
    CHECK_FALSE(response.HasMember("status"));
  }
  CHECK((seen[0] && seen[1] && seen[2]));
}

TEST_CASE("SerializeAdmissionResponse echoes apiVersion, kind and uid as given") {
  AdmissionResponse r;
  r.api_version = "admission.k8s.io/v1";
  r.kind = "AdmissionReview";
  r.uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
  rapidjson::Document doc;
  REQUIRE(podidentity::ParseJsonStrict(SerializeAdmissionResponse(r), doc).ok());
  CHECK(doc.MemberCount() == 3);
  CHECK(std::string(doc["apiVersion"].GetString()) == r.api_version);
  CHECK(std::string(doc["kind"].GetString()) == r.kind);
  CHECK(std::string(doc["response"]["uid"].GetString()) == r.uid);
  CHECK(doc["response"]["allowed"].GetBool());
  // An allowed response without patch or warnings has exactly uid and allowed.
  CHECK(doc["response"].MemberCount() == 2);
}

TEST_CASE("SerializeAdmissionResponse escapes warnings: control characters, quotes, unicode") {
  AdmissionResponse r;
  r.uid = "u";
  r.warnings = {"tab\there\x01\x1f", "quote \" and </script>", "caf\xc3\xa9 \xe2\x9c\x93"};
  const std::string body = SerializeAdmissionResponse(r);
  CHECK(body.find("tab\\there\\u0001\\u001f") != std::string::npos);
  rapidjson::Document doc;
  REQUIRE(podidentity::ParseJsonStrict(body, doc).ok());
  const rapidjson::Value& warnings = doc["response"]["warnings"];
  REQUIRE(warnings.Size() == 3);
  for (rapidjson::SizeType i = 0; i < 3; ++i) {
    CHECK(std::string(warnings[i].GetString(), warnings[i].GetStringLength()) == r.warnings[i]);
  }
}
