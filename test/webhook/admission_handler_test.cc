#include "admission_handler.h"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../fixtures/fixture_case.h"
#include "admission_review.h"
#include "json_patch.h"
#include "pod_mutator.h"
#include "podidentity/base64.h"
#include "podidentity/json_util.h"
#include "podidentity/random.h"

namespace {

using podidentity::Association;
using podidentity::AssociationIndex;
using podidentity::FixedRandom;
using podidentity::webhook::AdmissionOutcome;
using podidentity::webhook::HandleAdmission;
using podidentity::webhook::MutationSettings;

constexpr const char* kDemoRole = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access";

Association MakeAssociation(std::string ns, std::string sa) {
  Association a;
  a.namespace_name = std::move(ns);
  a.service_account = std::move(sa);
  a.role_arn = kDemoRole;
  return a;
}

AssociationIndex DemoIndex() {
  return AssociationIndex("demo", {MakeAssociation("demo-ns", "demo-sa"), MakeAssociation("demo-ns", "default"),
                                   MakeAssociation("other-ns", "legacy-sa")});
}

std::string ReadAdmissionTestdata(const std::string& name) {
  std::ifstream in(std::string(TESTDATA_DIR) + "/admission/" + name, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

rapidjson::Document Parse(std::string_view text) {
  rapidjson::Document doc;
  podidentity::Status s = podidentity::ParseJsonStrict(text, doc);
  INFO(s.message());
  REQUIRE(s.ok());
  return doc;
}

// The walkthrough pod, as a string, so each case changes one thing in it.
const char* const kDemoPod = R"({"apiVersion":"v1","kind":"Pod",
  "metadata":{"name":"demo-app","namespace":"demo-ns"},
  "spec":{"serviceAccountName":"demo-sa","containers":[{"name":"demo-app","image":"amazon/aws-cli:latest",
    "command":["sleep","36000"],"env":[{"name":"DATABASE_PASSWORD","value":"hunter2-do-not-log"}]}]}})";

// A v1 AdmissionReview for CREATE of a pod, with the request's fields overridable.
struct Review {
  std::string uid = "705ab4f5-6393-11e8-b7cc-42010a800002";
  std::string kind_group, kind_version = "v1", kind = "Pod";
  std::string resource = "pods";
  std::optional<std::string> sub_resource;
  std::string operation = "CREATE";
  std::string namespace_name = "demo-ns";
  std::optional<std::string> name = "demo-app";
  std::optional<bool> dry_run;
  std::optional<std::string> object_json = kDemoPod;  // nullopt: no "object" member

  std::string Json() const {
    std::string out = R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":)";
    out += podidentity::JsonQuote(uid);
    out += R"(,"kind":{"group":)" + podidentity::JsonQuote(kind_group) +
           R"(,"version":)" + podidentity::JsonQuote(kind_version) + R"(,"kind":)" + podidentity::JsonQuote(kind) +
           R"(},"resource":{"group":)" + podidentity::JsonQuote(kind_group) + R"(,"version":"v1","resource":)" +
           podidentity::JsonQuote(resource) + "}";
    if (sub_resource) out += R"(,"subResource":)" + podidentity::JsonQuote(*sub_resource);
    out += R"(,"operation":)" + podidentity::JsonQuote(operation);
    out += R"(,"namespace":)" + podidentity::JsonQuote(namespace_name);
    if (name) out += R"(,"name":)" + podidentity::JsonQuote(*name);
    if (dry_run) out += std::string(R"(,"dryRun":)") + (*dry_run ? "true" : "false");
    if (object_json) out += R"(,"object":)" + *object_json;
    out += "}}";
    return out;
  }
};

// The demo pod with one edit applied to its parsed form.
template <typename Edit>
std::string EditedPod(Edit edit) {
  rapidjson::Document pod = Parse(kDemoPod);
  edit(pod, pod.GetAllocator());
  return podidentity::JsonToString(pod);
}

// The decoded answer to one admission.
struct Answer {
  AdmissionOutcome outcome;
  rapidjson::Document body;
  std::optional<rapidjson::Document> patch;  // decoded from base64, when present
  std::vector<std::string> warnings;

  const rapidjson::Value& response() const { return body["response"]; }
  bool allowed() const { return response()["allowed"].GetBool(); }
  std::string uid() const { return response()["uid"].GetString(); }
};

Answer Handle(const std::string& body, const AssociationIndex* index,
              const MutationSettings& settings = MutationSettings::Defaults(), double fraction = 0.5) {
  FixedRandom random(fraction);
  Answer a;
  a.outcome = HandleAdmission(body, index, settings, random);
  INFO(a.outcome.body);
  a.body = Parse(a.outcome.body);
  REQUIRE(a.body.IsObject());
  if (a.outcome.http_status != 200) return a;
  REQUIRE(a.body.HasMember("response"));
  const rapidjson::Value& r = a.body["response"];
  REQUIRE(r["allowed"].IsBool());
  if (r.HasMember("patch")) {
    REQUIRE(r.HasMember("patchType"));
    CHECK(std::string(r["patchType"].GetString()) == "JSONPatch");
    auto decoded = podidentity::base64::Decode(r["patch"].GetString());
    REQUIRE(decoded.ok());
    a.patch = Parse(*decoded);
    REQUIRE(a.patch->IsArray());
  } else {
    CHECK_FALSE(r.HasMember("patchType"));
  }
  if (r.HasMember("warnings")) {
    REQUIRE(r["warnings"].IsArray());
    CHECK(r["warnings"].Size() > 0);  // never an empty list
    for (const auto& w : r["warnings"].GetArray()) a.warnings.emplace_back(w.GetString(), w.GetStringLength());
  }
  return a;
}

// A log field's value rendered as text (strings as is, numbers and bools printed).
std::optional<std::string> LogField(const AdmissionOutcome& outcome, std::string_view key) {
  for (const auto& f : outcome.log_fields) {
    if (f.key != key) continue;
    if (const auto* s = std::get_if<std::string>(&f.value)) return *s;
    if (const auto* i = std::get_if<int64_t>(&f.value)) return std::to_string(*i);
    if (const auto* b = std::get_if<bool>(&f.value)) return *b ? "true" : "false";
    return "?";
  }
  return std::nullopt;
}

// Checks a 200 answer without a patch: allowed, the uid echoed, the outcome named.
void CheckAllowedWithoutPatch(const Answer& a, std::string_view outcome) {
  CHECK(a.outcome.http_status == 200);
  CHECK(a.outcome.outcome == outcome);
  CHECK(a.allowed());
  CHECK_FALSE(a.patch.has_value());
  CHECK(a.outcome.patch_operations == 0);
  CHECK(LogField(a.outcome, "outcome") == std::string(outcome));
  CHECK(LogField(a.outcome, "patch_operations") == "0");
}

bool HasOp(const rapidjson::Value& patch, std::string_view op, std::string_view path) {
  for (const auto& p : patch.GetArray()) {
    if (std::string_view(p["op"].GetString()) == op && std::string_view(p["path"].GetString()) == path) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("HandleAdmission patches the walkthrough pod and echoes the review") {
  const AssociationIndex index = DemoIndex();
  const Answer a = Handle(Review{}.Json(), &index);
  REQUIRE(a.outcome.http_status == 200);
  CHECK(a.outcome.outcome == "patched");
  CHECK(std::string(a.body["apiVersion"].GetString()) == "admission.k8s.io/v1");
  CHECK(std::string(a.body["kind"].GetString()) == "AdmissionReview");
  CHECK(a.uid() == "705ab4f5-6393-11e8-b7cc-42010a800002");
  CHECK(a.allowed());
  CHECK_FALSE(a.response().HasMember("warnings"));
  CHECK_FALSE(a.response().HasMember("status"));

  // The decoded patch is exactly what the mutator produces for this pod.
  REQUIRE(a.patch.has_value());
  rapidjson::Document pod = Parse(kDemoPod);
  FixedRandom random(0.5);
  auto expected = podidentity::webhook::MutatePod(pod, MakeAssociation("demo-ns", "demo-sa"),
                                                  MutationSettings::Defaults(), random);
  CHECK(podidentity::JsonToString(*a.patch) == podidentity::webhook::SerializePatch(expected.patch));
  CHECK(a.outcome.patch_operations == static_cast<int>(a.patch->Size()));
  CHECK(HasOp(*a.patch, "add", "/metadata/labels"));
  CHECK(HasOp(*a.patch, "add", "/spec/volumes"));
  CHECK(HasOp(*a.patch, "add", "/spec/containers/0/volumeMounts"));
  CHECK(HasOp(*a.patch, "add", "/spec/containers/0/env/-"));
  // FixedRandom(0.5): the middle of the jitter range [79200, 86400].
  bool saw_expiration = false;
  for (const auto& op : a.patch->GetArray()) {
    if (std::string_view(op["path"].GetString()) != "/spec/volumes") continue;
    const auto& token = op["value"][0]["projected"]["sources"][0]["serviceAccountToken"];
    CHECK(token["expirationSeconds"].GetInt64() == 82800);
    saw_expiration = true;
  }
  CHECK(saw_expiration);

  // The log line's fields: who, what, how much; never the pod body.
  CHECK(LogField(a.outcome, "uid") == "705ab4f5-6393-11e8-b7cc-42010a800002");
  CHECK(LogField(a.outcome, "namespace") == "demo-ns");
  CHECK(LogField(a.outcome, "pod") == "demo-app");
  CHECK(LogField(a.outcome, "service_account") == "demo-sa");
  CHECK(LogField(a.outcome, "outcome") == "patched");
  CHECK(LogField(a.outcome, "containers_patched") == "1");
  CHECK(LogField(a.outcome, "patch_operations") == std::to_string(a.patch->Size()));
  CHECK_FALSE(LogField(a.outcome, "error").has_value());
  for (const auto& f : a.outcome.log_fields) {
    if (const auto* s = std::get_if<std::string>(&f.value)) {
      INFO(f.key);
      CHECK(s->find("hunter2") == std::string::npos);
      CHECK(s->find("amazon/aws-cli") == std::string::npos);
    }
  }
}

TEST_CASE("HandleAdmission echoes exotic uids and stays valid JSON") {
  const AssociationIndex index = DemoIndex();
  Review r;
  r.uid = "a\"b\\c\n\x01\xc3\xa9";
  const Answer a = Handle(r.Json(), &index);
  CHECK(a.outcome.outcome == "patched");
  CHECK(a.uid() == r.uid);
  CHECK(LogField(a.outcome, "uid") == r.uid);
}

TEST_CASE("HandleAdmission answers 400 with a JSON error for what is not an AdmissionReview") {
  const AssociationIndex index = DemoIndex();
  struct Case {
    const char* name;
    std::string body;
    std::string error;
  };
  Review no_uid;
  no_uid.uid = "";
  const Case cases[] = {
      {"empty", "", "invalid JSON at offset 0: The document is empty."},
      {"not JSON", "<xml/>", "invalid JSON at offset 0: Invalid value."},
      {"v1beta1", ReadAdmissionTestdata("v1beta1_review.json"),
       R"(/apiVersion: must be admission.k8s.io/v1, got "admission.k8s.io/v1beta1")"},
      {"an array", "[]", "/: must be an AdmissionReview object, got array"},
      {"empty uid", no_uid.Json(), "/request/uid: must not be empty"},
      {"no request", R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})", "/request: missing"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    const Answer a = Handle(c.body, &index);
    CHECK(a.outcome.http_status == 400);
    CHECK(a.outcome.outcome == "bad_request");
    CHECK(a.outcome.patch_operations == 0);
    REQUIRE(a.body["error"].IsString());
    CHECK(std::string(a.body["error"].GetString()) == c.error);
    CHECK(a.body.MemberCount() == 1);
    CHECK(LogField(a.outcome, "outcome") == "bad_request");
    CHECK(LogField(a.outcome, "error") == c.error);
  }
}

TEST_CASE("HandleAdmission skips every operation but CREATE") {
  const AssociationIndex index = DemoIndex();
  for (const char* op : {"UPDATE", "DELETE", "CONNECT"}) {
    INFO(op);
    Review r;
    r.operation = op;
    const Answer a = Handle(r.Json(), &index);
    CheckAllowedWithoutPatch(a, "skipped_operation");
    CHECK(a.uid() == r.uid);
  }
  const Answer del = Handle(ReadAdmissionTestdata("demo_pod_delete.json"), &index);
  CheckAllowedWithoutPatch(del, "skipped_operation");
  // An UPDATE of the ephemeralcontainers subresource is not ours either.
  CheckAllowedWithoutPatch(Handle(ReadAdmissionTestdata("ephemeral_containers_update.json"), &index),
                           "skipped_operation");
}

TEST_CASE("HandleAdmission skips what is not a core/v1 Pod created through pods") {
  const AssociationIndex index = DemoIndex();
  CheckAllowedWithoutPatch(Handle(ReadAdmissionTestdata("configmap_create.json"), &index), "skipped_kind");

  Review other_group;
  other_group.kind_group = "example.com";
  Review other_version;
  other_version.kind_version = "v2";
  Review deployment;
  deployment.kind = "Deployment";
  Review other_resource;
  other_resource.resource = "podtemplates";
  Review subresource;
  subresource.sub_resource = "binding";
  Review ephemeral;
  ephemeral.sub_resource = "ephemeralcontainers";
  for (const Review* r : {&other_group, &other_version, &deployment, &other_resource, &subresource, &ephemeral}) {
    INFO(r->Json());
    CheckAllowedWithoutPatch(Handle(r->Json(), &index), "skipped_kind");
  }
}

TEST_CASE("HandleAdmission allows an unusable pod without a patch and says why in the log") {
  const AssociationIndex index = DemoIndex();
  struct Case {
    const char* name;
    std::optional<std::string> object;
    std::string error;
  };
  const Case cases[] = {
      {"no object", std::nullopt, "/request/object: required object"},
      {"object null", "null", "/request/object: required object"},
      {"object an array", "[]", "/request/object: must be an object"},
      {"object a string", R"("{}")", "/request/object: must be an object"},
      {"metadata a string", EditedPod([](auto& p, auto&) { p["metadata"].SetString("x"); }),
       "/request/object/metadata: must be an object"},
      {"spec an array", EditedPod([](auto& p, auto&) { p["spec"].SetArray(); }),
       "/request/object/spec: must be an object"},
      {"namespace a number", EditedPod([](auto& p, auto&) { p["metadata"]["namespace"].SetInt(3); }),
       "/request/object/metadata/namespace: must be a string"},
      {"serviceAccountName a boolean", EditedPod([](auto& p, auto&) { p["spec"]["serviceAccountName"].SetBool(true); }),
       "/request/object/spec/serviceAccountName: must be a string"},
      // Found by the mutator, which names pointers relative to the pod.
      {"no containers", EditedPod([](auto& p, auto&) { p["spec"].RemoveMember("containers"); }),
       "/request/object/spec/containers: required array"},
      {"container without a name",
       EditedPod([](auto& p, auto&) { p["spec"]["containers"][0].RemoveMember("name"); }),
       "/request/object/spec/containers/0/name: required non-empty string"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Review r;
    r.object_json = c.object;
    const Answer a = Handle(r.Json(), &index);
    CheckAllowedWithoutPatch(a, "invalid_pod");
    CHECK(a.uid() == r.uid);
    CHECK(a.warnings.empty());
    CHECK(LogField(a.outcome, "error") == c.error);
    CHECK(LogField(a.outcome, "namespace") == "demo-ns");
  }
}

TEST_CASE("HandleAdmission without an association allows the pod unchanged") {
  const AssociationIndex index = DemoIndex();
  const AssociationIndex empty;
  Review other_sa;
  other_sa.object_json = EditedPod([](auto& p, auto&) { p["spec"]["serviceAccountName"].SetString("other-sa"); });
  Review other_ns;
  other_ns.namespace_name = "other-ns";
  other_ns.object_json = EditedPod([](auto& p, auto&) { p["metadata"].RemoveMember("namespace"); });

  const Answer a = Handle(other_sa.Json(), &index);
  CheckAllowedWithoutPatch(a, "no_association");
  CHECK(LogField(a.outcome, "service_account") == "other-sa");
  const Answer b = Handle(other_ns.Json(), &index);
  CheckAllowedWithoutPatch(b, "no_association");
  CHECK(LogField(b.outcome, "namespace") == "other-ns");
  CheckAllowedWithoutPatch(Handle(Review{}.Json(), &empty), "no_association");
  // No snapshot loaded yet: nothing to inject, never a failure.
  CheckAllowedWithoutPatch(Handle(Review{}.Json(), nullptr), "no_association");
}

TEST_CASE("HandleAdmission: which service account and namespace a pod has") {
  const AssociationIndex index = DemoIndex();
  SECTION("the deprecated spec.serviceAccount is used when serviceAccountName is absent") {
    Review r;
    r.namespace_name = "other-ns";
    r.object_json = EditedPod([](auto& p, auto& alloc) {
      p["metadata"]["namespace"].SetString("other-ns");
      p["spec"].RemoveMember("serviceAccountName");
      p["spec"].AddMember("serviceAccount", "legacy-sa", alloc);
    });
    const Answer a = Handle(r.Json(), &index);
    CHECK(a.outcome.outcome == "patched");
    CHECK(LogField(a.outcome, "service_account") == "legacy-sa");
  }
  SECTION("serviceAccountName wins over serviceAccount") {
    Review r;
    r.object_json = EditedPod([](auto& p, auto& alloc) { p["spec"].AddMember("serviceAccount", "legacy-sa", alloc); });
    const Answer a = Handle(r.Json(), &index);
    CHECK(a.outcome.outcome == "patched");
    CHECK(LogField(a.outcome, "service_account") == "demo-sa");
  }
  SECTION("a pod naming no service account runs as default") {
    Review r;
    r.object_json = EditedPod([](auto& p, auto&) { p["spec"].RemoveMember("serviceAccountName"); });
    const Answer a = Handle(r.Json(), &index);
    CHECK(a.outcome.outcome == "patched");
    CHECK(LogField(a.outcome, "service_account") == "default");
    // An empty serviceAccountName is the same as none.
    Review empty;
    empty.object_json = EditedPod([](auto& p, auto&) { p["spec"]["serviceAccountName"].SetString(""); });
    CHECK(Handle(empty.Json(), &index).outcome.outcome == "patched");
  }
  SECTION("the object's namespace is used when it has one") {
    Review r;
    r.namespace_name = "elsewhere";
    const Answer a = Handle(r.Json(), &index);
    CHECK(a.outcome.outcome == "patched");
    CHECK(LogField(a.outcome, "namespace") == "demo-ns");
  }
  SECTION("a generateName-only pod without a namespace uses the request's, and a dry run is still patched") {
    const Answer a = Handle(ReadAdmissionTestdata("generate_name_pod_create.json"), &index);
    REQUIRE(a.outcome.outcome == "patched");
    REQUIRE(a.patch.has_value());
    CHECK(HasOp(*a.patch, "add", "/metadata/labels/eks.amazonaws.com~1pod-identity"));
    CHECK(HasOp(*a.patch, "add", "/spec/volumes"));
    CHECK(LogField(a.outcome, "namespace") == "demo-ns");
    CHECK(LogField(a.outcome, "pod") == "demo-app-7c9d8b6f5-");
    CHECK(LogField(a.outcome, "service_account") == "default");
    CHECK(LogField(a.outcome, "dry_run") == "true");
  }
  SECTION("dryRun false and true give the same patch") {
    Review dry;
    dry.dry_run = true;
    Review wet;
    wet.dry_run = false;
    const Answer a = Handle(dry.Json(), &index);
    const Answer b = Handle(wet.Json(), &index);
    REQUIRE(a.patch.has_value());
    REQUIRE(b.patch.has_value());
    CHECK(podidentity::JsonToString(*a.patch) == podidentity::JsonToString(*b.patch));
    CHECK_FALSE(LogField(b.outcome, "dry_run").has_value());
  }
  SECTION("a pod with neither name nor generateName is logged with the request's name") {
    Review r;
    r.name = "from-request";
    r.object_json = EditedPod([](auto& p, auto&) { p["metadata"].RemoveMember("name"); });
    CHECK(LogField(Handle(r.Json(), &index).outcome, "pod") == "from-request");
  }
}

TEST_CASE("HandleAdmission skips Windows pods") {
  const AssociationIndex index = DemoIndex();
  Review os_name;
  os_name.object_json = EditedPod([](auto& p, auto& alloc) {
    rapidjson::Value os(rapidjson::kObjectType);
    os.AddMember("name", "windows", alloc);
    p["spec"].AddMember("os", os, alloc);
  });
  Review selector;
  selector.object_json = EditedPod([](auto& p, auto& alloc) {
    rapidjson::Value nodes(rapidjson::kObjectType);
    nodes.AddMember("kubernetes.io/os", "windows", alloc);
    p["spec"].AddMember("nodeSelector", nodes, alloc);
  });
  CheckAllowedWithoutPatch(Handle(os_name.Json(), &index), "skipped_windows");
  CheckAllowedWithoutPatch(Handle(selector.Json(), &index), "skipped_windows");
}

TEST_CASE("HandleAdmission: an already injected pod gets no patch") {
  const AssociationIndex index = DemoIndex();
  // A pod that already carries our volume, mounts, env and label (reinvocation).
  auto fixture = podidentity::fixtures::LoadFixtureCase(std::filesystem::path(TESTDATA_DIR) / "pods/already-injected");
  REQUIRE(fixture.ok());
  Review r;
  r.object_json = podidentity::JsonToString(fixture->pod);
  const Answer a = Handle(r.Json(), &index);
  CheckAllowedWithoutPatch(a, "already_injected");
  CHECK(a.warnings.empty());
}

TEST_CASE("HandleAdmission: a conflict allows the pod without a patch and warns") {
  const AssociationIndex index = DemoIndex();
  Review r;
  // A container whose name needs escaping mounts another volume at our path.
  r.object_json = EditedPod([](auto& p, auto& alloc) {
    rapidjson::Value& c = p["spec"]["containers"][0];
    c["name"].SetString("we\"ird\\name");
    rapidjson::Value mounts(rapidjson::kArrayType);
    rapidjson::Value mount(rapidjson::kObjectType);
    mount.AddMember("name", "other", alloc);
    mount.AddMember("mountPath", "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount", alloc);
    mounts.PushBack(mount, alloc);
    c.AddMember("volumeMounts", mounts, alloc);
  });
  const Answer a = Handle(r.Json(), &index);
  CheckAllowedWithoutPatch(a, "conflict");
  REQUIRE(a.warnings.size() == 1);
  CHECK(a.warnings[0].find("container \"we\"ird\\name\" mounts volume \"other\"") != std::string::npos);
  CHECK(a.warnings[0].rfind("pod identity not injected: ", 0) == 0);
  REQUIRE(LogField(a.outcome, "conflict").has_value());
  CHECK(LogField(a.outcome, "conflict")->find("we\"ird\\name") != std::string::npos);
  CHECK(LogField(a.outcome, "containers_patched") == "0");
}

TEST_CASE("HandleAdmission agrees with the mutator on every pod fixture") {
  const std::filesystem::path root = std::filesystem::path(TESTDATA_DIR) / "pods";
  const auto dirs = podidentity::fixtures::ListFixtureCases(root);
  REQUIRE(dirs.size() >= 10);
  for (const auto& dir : dirs) {
    auto loaded = podidentity::fixtures::LoadFixtureCase(dir);
    INFO(dir.string() << ": " << loaded.status().message());
    REQUIRE(loaded.ok());
    const auto& c = *loaded;
    const AssociationIndex index("demo", {c.association});
    Review r;
    r.namespace_name = c.association.namespace_name;
    r.name = std::nullopt;
    r.object_json = podidentity::JsonToString(c.pod);
    const Answer a = Handle(r.Json(), &index, c.settings, c.random_fraction);
    CHECK(a.outcome.http_status == 200);
    CHECK(a.outcome.outcome == c.expected_outcome);
    CHECK(a.allowed());

    FixedRandom random(c.random_fraction);
    auto expected = podidentity::webhook::MutatePod(c.pod, c.association, c.settings, random);
    if (expected.patch.empty()) {
      CHECK_FALSE(a.patch.has_value());
    } else {
      REQUIRE(a.patch.has_value());
      CHECK(podidentity::JsonToString(*a.patch) == podidentity::webhook::SerializePatch(expected.patch));
    }
    if (c.expected_warning_substring) {
      REQUIRE_FALSE(a.warnings.empty());
      CHECK(a.warnings[0].find(*c.expected_warning_substring) != std::string::npos);
    } else {
      CHECK(a.warnings.empty());
    }
  }
}
