#include "pod_mutator.h"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "../fixtures/fixture_case.h"
#include "constants.h"
#include "json_patch.h"
#include "podidentity/json_util.h"
#include "podidentity/random.h"

namespace {

using podidentity::Association;
using podidentity::FixedRandom;
using podidentity::Random;
using podidentity::webhook::MutatePod;
using podidentity::webhook::MutationResult;
using podidentity::webhook::MutationSettings;
using podidentity::webhook::OutcomeName;
using podidentity::webhook::PatchOp;
using Outcome = MutationResult::Outcome;

rapidjson::Document Parse(const std::string& text) {
  rapidjson::Document doc;
  podidentity::Status s = podidentity::ParseJsonStrict(text, doc);
  INFO(s.message());
  REQUIRE(s.ok());
  return doc;
}

Association DemoAssociation() {
  Association a;
  a.namespace_name = "demo-ns";
  a.service_account = "demo-sa";
  a.role_arn = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access";
  return a;
}

MutationResult Mutate(const std::string& pod_json, const MutationSettings& settings = MutationSettings::Defaults(),
                      double fraction = 0.5) {
  rapidjson::Document pod = Parse(pod_json);
  FixedRandom random(fraction);
  return MutatePod(pod, DemoAssociation(), settings, random);
}

// --- A strict RFC 6902 applier for "add" (the only operation the mutator may emit) ---

// Decodes an RFC 6901 pointer into reference tokens; fails on a bad "~" escape.
bool DecodePointer(const std::string& pointer, std::vector<std::string>& tokens, std::string& error) {
  tokens.clear();
  if (pointer.empty()) return true;
  if (pointer[0] != '/') {
    error = "pointer must start with '/': " + pointer;
    return false;
  }
  std::string token;
  for (size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens.push_back(token);
      token.clear();
    } else if (pointer[i] == '~') {
      if (i + 1 >= pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1')) {
        error = "bad '~' escape in " + pointer;
        return false;
      }
      token += pointer[i + 1] == '0' ? '~' : '/';
      ++i;
    } else {
      token += pointer[i];
    }
  }
  return true;
}

// An array index per RFC 6901: "0" or digits without a leading zero.
bool ParseIndex(const std::string& token, size_t& index) {
  if (token.empty() || token.size() > 9 || (token.size() > 1 && token[0] == '0')) return false;
  for (char c : token) {
    if (c < '0' || c > '9') return false;
  }
  index = std::stoul(token);
  return true;
}

// Applies `patch` to `doc`. Strict: only "add"; the parent must exist; an array index
// must be "-" or within [0, size]; the root cannot be replaced.
bool ApplyPatch(rapidjson::Document& doc, const std::vector<PatchOp>& patch, std::string& error) {
  auto& alloc = doc.GetAllocator();
  for (const PatchOp& op : patch) {
    if (op.op != "add") {
      error = "unexpected op " + op.op;
      return false;
    }
    std::vector<std::string> tokens;
    if (!DecodePointer(op.path, tokens, error)) return false;
    if (tokens.empty()) {
      error = "add must not replace the whole pod";
      return false;
    }
    rapidjson::Document value(&alloc);
    if (value.Parse(op.value_json.c_str()).HasParseError()) {
      error = "value is not JSON: " + op.value_json;
      return false;
    }
    rapidjson::Value* parent = &doc;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      const std::string& t = tokens[i];
      size_t index = 0;
      if (parent->IsObject()) {
        const rapidjson::Value key(rapidjson::StringRef(t.data(), t.size()));
        if (!parent->HasMember(key)) {
          error = "missing parent '" + t + "' in " + op.path;
          return false;
        }
        parent = &(*parent)[key];
      } else if (parent->IsArray() && ParseIndex(t, index) && index < parent->Size()) {
        parent = &(*parent)[static_cast<rapidjson::SizeType>(index)];
      } else {
        error = "cannot descend into '" + t + "' in " + op.path;
        return false;
      }
    }
    const std::string& last = tokens.back();
    rapidjson::Value copy(value, alloc);
    if (parent->IsObject()) {
      const rapidjson::Value key(rapidjson::StringRef(last.data(), last.size()));
      if (parent->HasMember(key)) {
        (*parent)[key] = copy;  // RFC 6902 4.1: add on an existing member replaces its value
      } else {
        parent->AddMember(rapidjson::Value(last.c_str(), alloc), copy, alloc);
      }
    } else if (parent->IsArray()) {
      size_t index = 0;
      if (last == "-") {
        parent->PushBack(copy, alloc);
      } else if (ParseIndex(last, index) && index <= parent->Size()) {
        parent->PushBack(rapidjson::Value(), alloc);
        for (size_t k = parent->Size() - 1; k > index; --k) {
          (*parent)[static_cast<rapidjson::SizeType>(k)] = (*parent)[static_cast<rapidjson::SizeType>(k - 1)];
        }
        (*parent)[static_cast<rapidjson::SizeType>(index)] = copy;
      } else {
        error = "bad array index '" + last + "' in " + op.path;
        return false;
      }
    } else {
      error = "parent is not a container in " + op.path;
      return false;
    }
  }
  return true;
}

void CheckPatchShape(const std::vector<PatchOp>& patch) {
  // Never a whole container or container list: only what is missing is added.
  static const std::regex whole_container(R"(^/spec/(initContainers|containers)(/[0-9]+)?$)");
  for (const PatchOp& op : patch) {
    INFO(op.path);
    CHECK(op.op == "add");
    CHECK_FALSE(std::regex_match(op.path, whole_container));
  }
}

}  // namespace

TEST_CASE("pod_mutator: Strict test applier: rejects what an API server would reject") {
  rapidjson::Document doc = Parse(R"({"a":{"list":[1,2]}})");
  std::string error;
  CHECK_FALSE(ApplyPatch(doc, {{"add", "/missing/x", "1"}}, error));
  CHECK_FALSE(ApplyPatch(doc, {{"add", "/a/list/3", "1"}}, error));
  CHECK_FALSE(ApplyPatch(doc, {{"add", "/a/list/01", "1"}}, error));
  CHECK_FALSE(ApplyPatch(doc, {{"replace", "/a", "1"}}, error));
  CHECK_FALSE(ApplyPatch(doc, {{"add", "/a/~2", "1"}}, error));
  REQUIRE(ApplyPatch(doc, {{"add", "/a/list/-", "3"}, {"add", "/a/list/0", "0"}, {"add", "/a/b~1c", "true"}}, error));
  CHECK(podidentity::JsonToString(doc) == R"({"a":{"list":[0,1,2,3],"b/c":true}})");
}

TEST_CASE("pod_mutator: Pod fixtures: outcome, warnings and the patched pod") {
  const std::filesystem::path root = std::filesystem::path(TESTDATA_DIR) / "pods";
  const auto dirs = podidentity::fixtures::ListFixtureCases(root);
  REQUIRE(dirs.size() >= 25);
  for (const auto& dir : dirs) {
    DYNAMIC_SECTION(dir.filename().string()) {
      auto loaded = podidentity::fixtures::LoadFixtureCase(dir);
      INFO(loaded.status().message());
      REQUIRE(loaded.ok());
      podidentity::fixtures::FixtureCase& c = *loaded;
      FixedRandom random(c.random_fraction);
      const MutationResult result = MutatePod(c.pod, c.association, c.settings, random);
      INFO("error: " << result.error);
      CHECK(OutcomeName(result.outcome) == c.expected_outcome);
      if (c.expected_warning_substring) {
        bool found = false;
        for (const std::string& w : result.warnings) found = found || w.find(*c.expected_warning_substring) != std::string::npos;
        CHECK(found);
        CHECK_FALSE(result.error.empty());
      } else {
        CHECK(result.warnings.empty());
      }
      CheckPatchShape(result.patch);

      if (!c.expected) {
        CHECK(result.patch.empty());
        CHECK(result.outcome != Outcome::kPatched);
        continue;
      }
      REQUIRE(result.outcome == Outcome::kPatched);
      REQUIRE_FALSE(result.patch.empty());
      CHECK(result.containers_patched > 0);
      rapidjson::Document patched;
      patched.CopyFrom(c.pod, patched.GetAllocator());
      std::string error;
      INFO("patch: " << podidentity::webhook::SerializePatch(result.patch));
      REQUIRE(ApplyPatch(patched, result.patch, error));
      INFO("apply error: " << error);
      INFO("got:      " << podidentity::JsonToString(patched));
      INFO("expected: " << podidentity::JsonToString(*c.expected));
      CHECK(patched == *c.expected);

      // Reinvocation on our own result finds nothing left to do.
      FixedRandom again_random(c.random_fraction);
      const MutationResult again = MutatePod(patched, c.association, c.settings, again_random);
      CHECK(again.outcome == Outcome::kAlreadyInjected);
      CHECK(again.patch.empty());
    }
  }
}

TEST_CASE("pod_mutator: The demo pod gets exactly these operations, in this order") {
  const MutationResult r = Mutate(R"({"apiVersion":"v1","kind":"Pod",
      "metadata":{"name":"demo-app","namespace":"demo-ns"},
      "spec":{"serviceAccountName":"demo-sa","containers":[{"name":"demo-app","image":"amazon/aws-cli:latest",
      "command":["sleep","36000"]}]}})",
                                  MutationSettings::Defaults(), 0.0);
  REQUIRE(r.outcome == Outcome::kPatched);
  CHECK(r.containers_patched == 1);
  const std::vector<PatchOp> expected = {
      {"add", "/metadata/labels", R"({"eks.amazonaws.com/pod-identity":"enabled"})"},
      {"add", "/spec/volumes",
       R"([{"name":"eks-pod-identity-token","projected":{"defaultMode":420,"sources":[{"serviceAccountToken":{"audience":"pods.eks.amazonaws.com","expirationSeconds":79200,"path":"eks-pod-identity-token"}}]}}])"},
      {"add", "/spec/containers/0/volumeMounts",
       R"([{"name":"eks-pod-identity-token","mountPath":"/var/run/secrets/pods.eks.amazonaws.com/serviceaccount","readOnly":true}])"},
      {"add", "/spec/containers/0/env",
       R"([{"name":"AWS_CONTAINER_CREDENTIALS_FULL_URI","value":"http://169.254.170.23/v1/credentials"},{"name":"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE","value":"/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"}])"},
  };
  CHECK(r.patch == expected);
  CHECK(r.warnings.empty());
  CHECK(r.error.empty());
}

TEST_CASE("pod_mutator: Label key is escaped in the pointer, and existing arrays are appended with /-") {
  const MutationResult r = Mutate(R"({"metadata":{"labels":{"a":"b"}},"spec":{"volumes":[],
      "containers":[{"name":"c","env":[],"volumeMounts":[]}]}})");
  REQUIRE(r.outcome == Outcome::kPatched);
  REQUIRE(r.patch.size() == 5);
  CHECK(r.patch[0] == PatchOp{"add", "/metadata/labels/eks.amazonaws.com~1pod-identity", R"("enabled")"});
  CHECK(r.patch[1].path == "/spec/volumes/-");
  CHECK(r.patch[2].path == "/spec/containers/0/volumeMounts/-");
  CHECK(r.patch[3].path == "/spec/containers/0/env/-");
  CHECK(r.patch[3].value_json.find(podidentity::webhook::kEnvCredentialsFullUri) != std::string::npos);
  CHECK(r.patch[4].path == "/spec/containers/0/env/-");
  CHECK(r.patch[4].value_json.find(podidentity::webhook::kEnvAuthorizationTokenFile) != std::string::npos);
}

TEST_CASE("pod_mutator: A pod without metadata gets metadata with our label") {
  const MutationResult r = Mutate(R"({"spec":{"containers":[{"name":"c"}]}})");
  REQUIRE(r.outcome == Outcome::kPatched);
  CHECK(r.patch[0] == PatchOp{"add", "/metadata", R"({"labels":{"eks.amazonaws.com/pod-identity":"enabled"}})"});
}

namespace {
// Records the range asked for, returns a fixed point of it.
class RecordingRandom final : public Random {
 public:
  int64_t Uniform(int64_t low, int64_t high) override {
    ++calls;
    last_low = low;
    last_high = high;
    return low;
  }
  int calls = 0;
  int64_t last_low = 0, last_high = 0;
};

int64_t ExpirationOf(const MutationResult& r) {
  for (const PatchOp& op : r.patch) {
    if (op.path.rfind("/spec/volumes", 0) != 0) continue;
    rapidjson::Document v = Parse(op.value_json);
    const rapidjson::Value& volume = v.IsArray() ? v[0] : v;
    return volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"].GetInt64();
  }
  FAIL("no volume in the patch");
  return 0;
}
}  // namespace

TEST_CASE("pod_mutator: Token expiration jitter: default spread over 79200..86400 s, custom used as given") {
  const std::string pod = R"({"spec":{"containers":[{"name":"c"}]}})";
  CHECK(ExpirationOf(Mutate(pod, MutationSettings::Defaults(), 0.0)) == 79200);
  CHECK(ExpirationOf(Mutate(pod, MutationSettings::Defaults(), 1.0)) == 86400);
  CHECK(ExpirationOf(Mutate(pod, MutationSettings::Defaults(), 0.5)) == 82800);

  rapidjson::Document doc = Parse(pod);
  RecordingRandom recording;
  MutationResult r = MutatePod(doc, DemoAssociation(), MutationSettings::Defaults(), recording);
  CHECK(recording.calls == 1);
  CHECK(recording.last_low == podidentity::webhook::kJitterMinSeconds);
  CHECK(recording.last_high == podidentity::webhook::kDefaultTokenExpirationSeconds);

  MutationSettings custom = MutationSettings::Defaults();
  custom.token_expiration_seconds = 600;
  RecordingRandom unused;
  r = MutatePod(doc, DemoAssociation(), custom, unused);
  CHECK(unused.calls == 0);
  CHECK(ExpirationOf(r) == 600);
}

TEST_CASE("pod_mutator: skip-containers: comma-separated, spaces trimmed, empty names ignored") {
  auto patched_paths = [](const std::string& annotation) {
    const MutationResult r = Mutate(R"({"metadata":{"annotations":{"eks.amazonaws.com/skip-containers":)" +
                                    podidentity::JsonQuote(annotation) + R"(}},"spec":{"containers":[
        {"name":"a"},{"name":"b"},{"name":"c d"}],"initContainers":[{"name":"i"}]}})");
    std::vector<std::string> containers;
    for (const PatchOp& op : r.patch) {
      if (op.path.size() > 7 && op.path.ends_with("/volumeMounts")) containers.push_back(op.path);
    }
    return containers;
  };
  using V = std::vector<std::string>;
  CHECK(patched_paths("") == V{"/spec/containers/0/volumeMounts", "/spec/containers/1/volumeMounts",
                               "/spec/containers/2/volumeMounts", "/spec/initContainers/0/volumeMounts"});
  CHECK(patched_paths(" a , i") == V{"/spec/containers/1/volumeMounts", "/spec/containers/2/volumeMounts"});
  CHECK(patched_paths(",,b,\t,") == V{"/spec/containers/0/volumeMounts", "/spec/containers/2/volumeMounts",
                                      "/spec/initContainers/0/volumeMounts"});
  // Names are matched whole: "c" does not skip "c d", and "c d" (inner space) does.
  CHECK(patched_paths("c,A").size() == 4);
  CHECK(patched_paths(" c d ") == V{"/spec/containers/0/volumeMounts", "/spec/containers/1/volumeMounts",
                                    "/spec/initContainers/0/volumeMounts"});
  CHECK(patched_paths("a,b,c d,i").empty());
}

TEST_CASE("pod_mutator: Region: added only when configured, only to containers setting neither variable") {
  const std::string pod = R"({"spec":{"containers":[{"name":"a"},
      {"name":"b","env":[{"name":"AWS_DEFAULT_REGION","value":"x"}]}]}})";
  MutationResult r = Mutate(pod);
  for (const PatchOp& op : r.patch) CHECK(op.value_json.find("AWS_REGION") == std::string::npos);

  MutationSettings settings = MutationSettings::Defaults();
  settings.region = "eu-central-1";
  r = Mutate(pod, settings);
  REQUIRE(r.outcome == Outcome::kPatched);
  std::string all = podidentity::webhook::SerializePatch(r.patch);
  CHECK(all.find(R"({"op":"add","path":"/spec/containers/0/env","value":[{"name":"AWS_CONTAINER_CREDENTIALS_FULL_URI")") !=
        std::string::npos);
  CHECK(all.find(R"({"name":"AWS_REGION","value":"eu-central-1"},{"name":"AWS_DEFAULT_REGION","value":"eu-central-1"}]})") !=
        std::string::npos);
  // Container b: the two credential variables appended, no region.
  int b_env_ops = 0;
  for (const PatchOp& op : r.patch) {
    if (op.path == "/spec/containers/1/env/-") {
      ++b_env_ops;
      CHECK(op.value_json.find("REGION") == std::string::npos);
    }
  }
  CHECK(b_env_ops == 2);
}

TEST_CASE("pod_mutator: Already injected: our volume may differ in expiration and mode, and a trailing slash in mountPath") {
  const MutationResult r = Mutate(R"({"spec":{
      "volumes":[{"name":"eks-pod-identity-token","projected":{"sources":[{"configMap":{"name":"ca"}},
          {"serviceAccountToken":{"audience":"pods.eks.amazonaws.com","expirationSeconds":3600,"path":"eks-pod-identity-token"}}]}}],
      "containers":[{"name":"c",
          "volumeMounts":[{"name":"eks-pod-identity-token","mountPath":"/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/"}],
          "env":[{"name":"AWS_CONTAINER_CREDENTIALS_FULL_URI","value":"http://example/"}]}]}})");
  CHECK(r.outcome == Outcome::kAlreadyInjected);
  CHECK(r.patch.empty());
  CHECK(r.containers_patched == 0);
}

TEST_CASE("pod_mutator: Conflicts: every conflict is reported, nothing is patched") {
  const MutationResult r = Mutate(R"({"spec":{
      "volumes":[{"name":"eks-pod-identity-token","secret":{"secretName":"x"}}],
      "containers":[{"name":"a","volumeMounts":[{"name":"eks-pod-identity-token","mountPath":"/elsewhere"}]},
                    {"name":"b","volumeMounts":[{"name":"other","mountPath":"/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"}]},
                    {"name":"c"}]}})");
  CHECK(r.outcome == Outcome::kConflict);
  CHECK(r.patch.empty());
  REQUIRE(r.warnings.size() == 3);
  CHECK(r.warnings[0].find("volume \"eks-pod-identity-token\" already exists") != std::string::npos);
  CHECK(r.warnings[1].find("container \"a\" mounts volume \"eks-pod-identity-token\" at \"/elsewhere\"") !=
        std::string::npos);
  CHECK(r.warnings[2].find("container \"b\" mounts volume \"other\"") != std::string::npos);
  CHECK(r.error.find("/elsewhere") != std::string::npos);
  CHECK(r.error.find("\"other\"") != std::string::npos);
}

TEST_CASE("pod_mutator: A skipped container's mounts are not conflicts") {
  const MutationResult r = Mutate(R"({"metadata":{"annotations":{"eks.amazonaws.com/skip-containers":"legacy"}},
      "spec":{"containers":[{"name":"app"},
      {"name":"legacy","volumeMounts":[{"name":"old","mountPath":"/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"}]}]}})");
  CHECK(r.outcome == Outcome::kPatched);
  CHECK(r.containers_patched == 1);
}

TEST_CASE("pod_mutator: Windows pods are skipped") {
  using podidentity::webhook::IsWindowsPod;
  CHECK(IsWindowsPod(Parse(R"({"spec":{"os":{"name":"windows"}}})")));
  CHECK(IsWindowsPod(Parse(R"({"spec":{"nodeSelector":{"kubernetes.io/os":"windows"}}})")));
  CHECK_FALSE(IsWindowsPod(Parse(R"({"spec":{"os":{"name":"linux"},"nodeSelector":{"kubernetes.io/os":"linux"}}})")));
  CHECK_FALSE(IsWindowsPod(Parse(R"({"spec":{"nodeSelector":{"os":"windows"}}})")));
  CHECK_FALSE(IsWindowsPod(Parse(R"({"spec":{"os":"windows"}})")));
  CHECK_FALSE(IsWindowsPod(Parse(R"([])")));
  const MutationResult r = Mutate(R"({"spec":{"os":{"name":"windows"},"containers":[{"name":"c"}]}})");
  CHECK(r.outcome == Outcome::kSkippedWindows);
  CHECK(r.patch.empty());
}

TEST_CASE("pod_mutator: JSON null counts as absent") {
  const MutationResult r = Mutate(R"({"metadata":{"labels":null},"spec":{"volumes":null,"initContainers":null,
      "containers":[{"name":"c","env":null,"volumeMounts":null}]}})");
  REQUIRE(r.outcome == Outcome::kPatched);
  CHECK(r.patch[0].path == "/metadata/labels");
  CHECK(r.patch[1].path == "/spec/volumes");
  CHECK(r.patch[2].path == "/spec/containers/0/volumeMounts");
  CHECK(r.patch[3].path == "/spec/containers/0/env");
}

TEST_CASE("pod_mutator: Settings values are JSON-escaped in the patch") {
  MutationSettings settings = MutationSettings::Defaults();
  settings.region = "us-\"east\"-1\\";
  settings.volume_name = "vol\n";
  const MutationResult r = Mutate(R"({"spec":{"containers":[{"name":"c"}]}})", settings);
  REQUIRE(r.outcome == Outcome::kPatched);
  rapidjson::Document patch = Parse(podidentity::webhook::SerializePatch(r.patch));
  CHECK(std::string(patch[1]["value"][0]["name"].GetString()) == "vol\n");
  CHECK(std::string(patch[3]["value"][2]["value"].GetString()) == "us-\"east\"-1\\");
}

TEST_CASE("pod_mutator: Invalid pods: the error names the JSON pointer") {
  struct Case {
    const char* pod;
    const char* error;
  };
  const Case cases[] = {
      {R"([])", ": must be an object"},
      {R"({})", "/spec: required object"},
      {R"({"spec":[]})", "/spec: must be an object"},
      {R"({"spec":{}})", "/spec/containers: required array"},
      {R"({"spec":{"containers":{}}})", "/spec/containers: must be an array"},
      {R"({"spec":{"containers":[1]}})", "/spec/containers/0: must be an object"},
      {R"({"spec":{"containers":[{}]}})", "/spec/containers/0/name: required non-empty string"},
      {R"({"spec":{"containers":[{"name":""}]}})", "/spec/containers/0/name: required non-empty string"},
      {R"({"spec":{"containers":[{"name":"a"},{"name":"b","env":{}}]}})", "/spec/containers/1/env: must be an array"},
      {R"({"spec":{"containers":[{"name":"a","env":[{"value":"x"}]}]}})", "/spec/containers/0/env/0/name: required"},
      {R"({"spec":{"containers":[{"name":"a","volumeMounts":[{"name":"v"}]}]}})",
       "/spec/containers/0/volumeMounts/0/mountPath: required"},
      {R"({"spec":{"containers":[{"name":"a"}],"initContainers":[{"name":7}]}})",
       "/spec/initContainers/0/name: required"},
      {R"({"spec":{"containers":[{"name":"a"}],"volumes":[{}]}})", "/spec/volumes/0/name: required"},
      {R"({"spec":{"containers":[{"name":"a"}],"volumes":"x"}})", "/spec/volumes: must be an array"},
      {R"({"metadata":[],"spec":{"containers":[{"name":"a"}]}})", "/metadata: must be an object"},
      {R"({"metadata":{"labels":"x"},"spec":{"containers":[{"name":"a"}]}})", "/metadata/labels: must be an object"},
      {R"({"metadata":{"annotations":{"eks.amazonaws.com/skip-containers":1}},"spec":{"containers":[{"name":"a"}]}})",
       "/metadata/annotations/eks.amazonaws.com~1skip-containers: must be a string"},
  };
  for (const Case& c : cases) {
    INFO(c.pod);
    const MutationResult r = Mutate(c.pod);
    CHECK(r.outcome == Outcome::kInvalidPod);
    CHECK(r.patch.empty());
    CHECK_THAT(r.error, Catch::StartsWith(c.error));
  }
}

TEST_CASE("pod_mutator: Defaults, token file path and outcome names") {
  const MutationSettings s = MutationSettings::Defaults();
  CHECK(s.audience == "pods.eks.amazonaws.com");
  CHECK(s.volume_name == "eks-pod-identity-token");
  CHECK(s.token_expiration_seconds == 86400);
  CHECK(s.credentials_uri == "http://169.254.170.23/v1/credentials");
  CHECK_FALSE(s.region.has_value());
  CHECK(s.TokenFilePath() == "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token");
  CHECK(OutcomeName(Outcome::kPatched) == "patched");
  CHECK(OutcomeName(Outcome::kAlreadyInjected) == "already_injected");
  CHECK(OutcomeName(Outcome::kConflict) == "conflict");
  CHECK(OutcomeName(Outcome::kSkippedWindows) == "skipped_windows");
  CHECK(OutcomeName(Outcome::kInvalidPod) == "invalid_pod");
}
