// The pod mutator: a pure function from (pod, association, settings, randomness) to
// the JSON patch that injects EKS Pod Identity, or to a reason for not patching.
// No sockets, files or clocks. The rules are listed in README.md ("Mutation rules").
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "json_patch.h"
#include "podidentity/associations.h"
#include "podidentity/random.h"

namespace podidentity::webhook {

// What is injected. Every default is EKS's (see constants.h).
struct MutationSettings {
  std::string audience;
  std::string volume_name;
  std::string mount_path;
  std::string token_file_name;
  int64_t token_expiration_seconds;  // >= kMinTokenExpirationSeconds
  std::string credentials_uri;
  std::optional<std::string> region;  // when set: AWS_REGION + AWS_DEFAULT_REGION

  static MutationSettings Defaults();
  // mount_path + "/" + token_file_name
  std::string TokenFilePath() const;
};

struct MutationResult {
  enum class Outcome {
    kPatched,          // patch is non-empty
    kAlreadyInjected,  // everything is already there: no patch
    kConflict,         // a conflict would break credentials: no patch, a warning
    kSkippedWindows,   // Windows pod: no patch
    kInvalidPod,       // the object is not a usable Pod: no patch, error says why
  };
  Outcome outcome = Outcome::kAlreadyInjected;
  std::vector<PatchOp> patch;
  std::vector<std::string> warnings;  // admission warnings (shown by kubectl)
  std::string error;                  // for kInvalidPod / kConflict: what was wrong
  int containers_patched = 0;         // containers + init containers that got a mount or env
};

std::string_view OutcomeName(MutationResult::Outcome outcome);

// `pod` is the admission request's object. `association` must be the one for the pod's
// (namespace, service account). `random` picks the token-expiration jitter.
MutationResult MutatePod(const rapidjson::Value& pod, const Association& association,
                         const MutationSettings& settings, Random& random);

// True for `spec.os.name: windows` or nodeSelector `kubernetes.io/os: windows`.
bool IsWindowsPod(const rapidjson::Value& pod);

}  // namespace podidentity::webhook
