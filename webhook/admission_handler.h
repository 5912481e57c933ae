// The admission use case, from request bytes to response bytes, with no sockets:
// parse -> decide whether the request is ours -> look up the association in the
// current snapshot -> mutate -> respond. The server calls it, the fuzzer calls it, and
// the tests call it directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pod_mutator.h"
#include "podidentity/associations.h"
#include "podidentity/log.h"
#include "podidentity/random.h"

namespace podidentity::webhook {

struct AdmissionOutcome {
  int http_status = 200;
  std::string body;          // JSON: an AdmissionReview, or {"error": "..."} for 4xx
  // A short, stable name for logs and metrics: "patched", "already_injected",
  // "conflict", "skipped_windows", "no_association", "skipped_operation",
  // "skipped_kind", "invalid_pod", "bad_request".
  std::string outcome;
  int patch_operations = 0;
  // Fields for the one log line per admission (never the pod body, never a token).
  std::vector<log::Field> log_fields;
};

AdmissionOutcome HandleAdmission(std::string_view body, const AssociationIndex* associations,
                                 const MutationSettings& settings, Random& random);

}  // namespace podidentity::webhook
