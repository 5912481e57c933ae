// libFuzzer target: arbitrary request bytes through the whole admission use case
// (HandleAdmission: parse -> classify -> look up -> mutate -> serialise), with a fixed
// association snapshot and fixed randomness so every crash reproduces. Besides the
// sanitizers' checks it asserts the contract the API server relies on: every answer is
// 200 or 400, a 400 is {"error": "..."}, a 200 is an AdmissionReview that echoes the
// request's uid, always allows, and carries a base64 JSON Patch exactly when patched.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "admission_handler.h"
#include "admission_review.h"
#include "podidentity/associations.h"
#include "podidentity/base64.h"
#include "podidentity/json_util.h"
#include "podidentity/log.h"
#include "podidentity/random.h"

namespace {

using podidentity::Association;
using podidentity::AssociationIndex;

// Aborts with a message libFuzzer prints next to the reproducer.
[[noreturn]] void Violated(std::string_view what, std::string_view body) {
  std::fprintf(stderr, "admission_fuzz invariant violated: %.*s\nresponse body: %.*s\n",
               static_cast<int>(what.size()), what.data(), static_cast<int>(body.size()), body.data());
  std::abort();
}

void Require(bool condition, std::string_view what, std::string_view body) {
  if (!condition) Violated(what, body);
}

Association MakeAssociation(std::string ns, std::string sa) {
  Association a;
  a.namespace_name = std::move(ns);
  a.service_account = std::move(sa);
  a.role_arn = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access";
  return a;
}

// The walkthrough association plus a few more, so pods in the seeds reach the mutator
// whether they name a service account, name none (default) or use the deprecated alias.
const AssociationIndex& Index() {
  static const AssociationIndex index("demo", {MakeAssociation("demo-ns", "demo-sa"),
                                               MakeAssociation("demo-ns", "default"),
                                               MakeAssociation("default", "default"),
                                               MakeAssociation("other-ns", "legacy-sa")});
  return index;
}

// EKS's defaults plus region injection, so that code path is explored too.
const podidentity::webhook::MutationSettings& Settings() {
  static const podidentity::webhook::MutationSettings settings = [] {
    auto s = podidentity::webhook::MutationSettings::Defaults();
    s.region = "us-west-2";
    return s;
  }();
  return settings;
}

bool IsKnownOutcome(std::string_view outcome) {
  for (std::string_view known : {"patched", "already_injected", "conflict", "skipped_windows", "no_association",
                                 "skipped_operation", "skipped_kind", "invalid_pod"}) {
    if (outcome == known) return true;
  }
  return false;
}

std::string_view View(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

void CheckBadRequest(const podidentity::webhook::AdmissionOutcome& out) {
  const std::string& body = out.body;
  Require(out.outcome == "bad_request", "400 with an outcome other than bad_request", body);
  Require(out.patch_operations == 0, "400 with patch operations", body);
  rapidjson::Document doc;
  Require(podidentity::ParseJsonStrict(body, doc).ok(), "400 body is not valid JSON", body);
  Require(doc.IsObject() && doc.MemberCount() == 1 && doc.HasMember("error") && doc["error"].IsString() &&
              doc["error"].GetStringLength() > 0,
          "400 body is not {\"error\": \"...\"}", body);
}

void CheckReview(std::string_view request, const podidentity::webhook::AdmissionOutcome& out) {
  const std::string& body = out.body;
  Require(IsKnownOutcome(out.outcome), "unknown outcome", out.outcome);
  rapidjson::Document doc;
  Require(podidentity::ParseJsonStrict(body, doc).ok(), "200 body is not valid JSON", body);
  Require(doc.IsObject(), "200 body is not an object", body);
  Require(doc.HasMember("apiVersion") && doc["apiVersion"].IsString() &&
              View(doc["apiVersion"]) == "admission.k8s.io/v1",
          "apiVersion not echoed", body);
  Require(doc.HasMember("kind") && doc["kind"].IsString() && View(doc["kind"]) == "AdmissionReview",
          "kind not echoed", body);
  Require(doc.HasMember("response") && doc["response"].IsObject(), "no response object", body);
  const rapidjson::Value& response = doc["response"];
  Require(response.HasMember("uid") && response["uid"].IsString() && response["uid"].GetStringLength() > 0,
          "response.uid missing or empty", body);
  Require(response.HasMember("allowed") && response["allowed"].IsBool() && response["allowed"].GetBool(),
          "response not allowed", body);
  Require(!response.HasMember("status"), "status on an allowed response", body);

  // The uid is echoed byte for byte: the request parsed, so its strings are valid UTF-8.
  auto parsed = podidentity::webhook::ParseAdmissionReview(request);
  Require(parsed.ok(), "200 for a request the codec rejects", body);
  Require(View(response["uid"]) == parsed->uid, "response.uid differs from request.uid", body);

  const bool has_patch = response.HasMember("patch");
  Require(has_patch == (out.outcome == "patched"), "patch present iff outcome is patched", body);
  Require(has_patch == response.HasMember("patchType"), "patchType without patch or the reverse", body);
  if (has_patch) {
    Require(response["patchType"].IsString() && View(response["patchType"]) == "JSONPatch", "patchType", body);
    Require(response["patch"].IsString(), "patch is not a string", body);
    auto decoded = podidentity::base64::Decode(View(response["patch"]));
    Require(decoded.ok(), "patch is not valid padded base64", body);
    rapidjson::Document patch;
    Require(podidentity::ParseJsonStrict(*decoded, patch).ok(), "decoded patch is not JSON", *decoded);
    Require(patch.IsArray() && patch.Size() > 0, "decoded patch is not a non-empty array", *decoded);
    Require(static_cast<int>(patch.Size()) == out.patch_operations, "patch_operations differs", *decoded);
    for (const auto& op : patch.GetArray()) {
      Require(op.IsObject() && op.HasMember("op") && op["op"].IsString() && View(op["op"]) == "add",
              "patch operation other than add", *decoded);
      Require(op.HasMember("path") && op["path"].IsString() && op["path"].GetStringLength() > 0 &&
                  op["path"].GetString()[0] == '/',
              "patch path is not a JSON pointer", *decoded);
      Require(op.HasMember("value"), "add without a value", *decoded);
    }
  } else {
    Require(out.patch_operations == 0, "patch_operations without a patch", body);
  }
  if (response.HasMember("warnings")) {
    const rapidjson::Value& warnings = response["warnings"];
    Require(warnings.IsArray() && warnings.Size() > 0, "warnings present but empty", body);
    for (const auto& w : warnings.GetArray()) Require(w.IsString(), "warning is not a string", body);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view request(reinterpret_cast<const char*>(data), size);
  podidentity::FixedRandom random(0.5);
  const podidentity::webhook::AdmissionOutcome out =
      podidentity::webhook::HandleAdmission(request, &Index(), Settings(), random);

  if (out.http_status == 400) {
    CheckBadRequest(out);
  } else if (out.http_status == 200) {
    CheckReview(request, out);
  } else {
    Violated("http_status is neither 200 nor 400", out.body);
  }

  // The log line built from the outcome's fields is valid JSON whatever the input held.
  const std::string line =
      podidentity::log::FormatLine(podidentity::log::Level::kInfo, "admission", out.log_fields, "2026-01-01T00:00:00Z");
  rapidjson::Document log_line;
  Require(podidentity::ParseJsonStrict(line, log_line).ok() && log_line.IsObject(), "log line is not JSON", line);
  return 0;
}
