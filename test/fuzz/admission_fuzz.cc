// libFuzzer target: request bytes -> HandleAdmission -> response bytes, with a fixed
// association index and fixed randomness. Invariants checked on every input: the HTTP
// status is 200 or 400, a 200 body is a JSON AdmissionReview response that carries a
// uid, and a 400 body is a JSON object with an "error". Crashes, leaks, UB and hangs are
// found by the sanitizers and libFuzzer itself.
#include <rapidjson/document.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "admission_handler.h"
#include "podidentity/associations.h"
#include "podidentity/log.h"
#include "podidentity/random.h"

namespace {

const podidentity::AssociationIndex& Associations() {
  static const podidentity::AssociationIndex index(
      "fuzz", {
                  {"demo-ns", "demo-sa", "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access", std::nullopt,
                   false, std::nullopt, {}},
                  {"demo-ns", "default", "arn:aws:iam::111122223333:role/default", std::nullopt, false, std::nullopt, {}},
                  {"kube-system", "sa", "arn:aws-cn:iam::111122223333:role/x", std::nullopt, false, std::nullopt, {}},
              });
  return index;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  podidentity::log::SetSink([](std::string_view) {});  // keep the fuzzer's output readable
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const podidentity::webhook::MutationSettings settings = [] {
    auto s = podidentity::webhook::MutationSettings::Defaults();
    s.region = "eu-west-1";
    return s;
  }();
  podidentity::FixedRandom random(0.5);
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const podidentity::webhook::AdmissionOutcome outcome =
      podidentity::webhook::HandleAdmission(body, &Associations(), settings, random);
  if (outcome.http_status != 200 && outcome.http_status != 400) std::abort();
  rapidjson::Document response;
  response.Parse(outcome.body.data(), outcome.body.size());
  if (response.HasParseError() || !response.IsObject()) std::abort();
  if (outcome.http_status == 200) {
    const auto r = response.FindMember("response");
    if (r == response.MemberEnd() || !r->value.IsObject() || !r->value.HasMember("uid")) std::abort();
  } else if (!response.HasMember("error")) {
    std::abort();
  }
  return 0;
}
