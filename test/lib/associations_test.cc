#include "podidentity/associations.h"
#include "test_support.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace podidentity::internal {
// Test seam defined in lib/src/associations.cc: the YAML tree read by the fast reader
// (fast = true; "FALLBACK" when it declines) or by yaml-cpp.
std::string DumpYamlForTest(std::string_view text, bool fast);
}  // namespace podidentity::internal

namespace podidentity {
using podidentity::testing::TempDir;

namespace {

namespace fs = std::filesystem;

constexpr const char* kRole = "arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access";

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

// Sets a file's mtime (and atime) to a fixed instant.
void SetMtime(const fs::path& path, time_t seconds) {
  struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

std::string OneAssociation(const std::string& ns, const std::string& sa, const std::string& role = kRole) {
  return "associations:\n  - namespace: " + ns + "\n    serviceAccount: " + sa + "\n    roleArn: " + role + "\n";
}

// Parses `yaml` expecting failure; returns the error message.
std::string ErrorOf(const std::string& yaml) {
  auto result = ParseAssociations(yaml, "a.yaml");
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == StatusCode::kInvalidArgument);
  return result.status().message();
}

TEST_CASE("associations: a file with every optional field") {
  const std::string yaml = R"(# comment
clusterName: demo
associations:
  - namespace: demo-ns
    serviceAccount: demo-sa
    roleArn: arn:aws:iam::111122223333:role/eks-pod-s3-readonly-access
    targetRoleArn: arn:aws:iam::444455556666:role/data-reader   # optional
    disableSessionTags: true
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'
    tags: {team: data, cost-center: '42'}
  - namespace: other
    serviceAccount: build.bot
    roleArn: "arn:aws-cn:iam::123456789012:role/path/to/builder"
    tags:
      team: build
      empty: ''
)";
  auto result = ParseAssociations(yaml, "a.yaml");
  REQUIRE(result.ok());
  const AssociationIndex& index = *result;
  CHECK(index.cluster_name() == "demo");
  REQUIRE(index.size() == 2);
  const Association* a = index.Find("demo-ns", "demo-sa");
  REQUIRE(a != nullptr);
  CHECK(a->role_arn == kRole);
  CHECK(a->target_role_arn == std::optional<std::string>("arn:aws:iam::444455556666:role/data-reader"));
  CHECK(a->disable_session_tags);
  REQUIRE(a->policy.has_value());
  CHECK(a->policy->starts_with("{\"Version\":\"2012-10-17\""));
  CHECK(a->tags == std::map<std::string, std::string>{{"team", "data"}, {"cost-center", "42"}});

  const Association* b = index.Find("other", "build.bot");
  REQUIRE(b != nullptr);
  CHECK(b->role_arn == "arn:aws-cn:iam::123456789012:role/path/to/builder");
  CHECK_FALSE(b->target_role_arn.has_value());
  CHECK_FALSE(b->disable_session_tags);
  CHECK_FALSE(b->policy.has_value());
  CHECK(b->tags == std::map<std::string, std::string>{{"team", "build"}, {"empty", ""}});
}

TEST_CASE("associations: block scalars, anchors and flow style go through yaml-cpp with the same result") {
  const std::string yaml = R"(clusterName: demo
associations:
- namespace: demo-ns
  serviceAccount: demo-sa
  roleArn: &role arn:aws:iam::111122223333:role/r
  disableSessionTags: yes-not-a-bool-in-yaml-1.2
- {namespace: b, serviceAccount: b, roleArn: *role}
- namespace: c
  serviceAccount: c
  roleArn: *role
  disableSessionTags: true
  policy: |
    {"Version": "2012-10-17", "Statement": []}
)";
  std::string error = ErrorOf(yaml);
  CHECK(error == "a.yaml:6: associations[0].disableSessionTags: must be true or false, not "
                 "'yes-not-a-bool-in-yaml-1.2'");
  std::string fixed = yaml;
  fixed.replace(fixed.find("yes-not-a-bool-in-yaml-1.2"), 26, "false");
  auto result = ParseAssociations(fixed, "a.yaml");
  REQUIRE(result.ok());
  REQUIRE(result->Find("b", "b") != nullptr);
  CHECK(result->Find("b", "b")->role_arn == "arn:aws:iam::111122223333:role/r");
  REQUIRE(result->Find("c", "c") != nullptr);
  CHECK(result->Find("c", "c")->policy == std::optional<std::string>("{\"Version\": \"2012-10-17\", \"Statement\": []}\n"));
}

TEST_CASE("associations: entries streamed before the fast reader gives up are not counted twice") {
  // The fast reader validates entries as it reads them; the anchor in the third
  // entry makes it give up, and yaml-cpp must start over from a clean slate.
  const std::string yaml = "associations:\n"
                           "- namespace: a\n  serviceAccount: a\n  roleArn: arn:aws:iam::111122223333:role/a\n"
                           "- namespace: b\n  serviceAccount: b\n  roleArn: arn:aws:iam::111122223333:role/b\n"
                           "- namespace: c\n  serviceAccount: c\n  roleArn: &r arn:aws:iam::111122223333:role/c\n";
  auto result = ParseAssociations(yaml, "a.yaml");
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  CHECK(result->size() == 3);
  CHECK(result->Find("c", "c") != nullptr);
  // The same without the anchor stays on the fast path (sequence at the key's indent).
  std::string plain = yaml;
  plain.erase(plain.find("&r "), 3);
  REQUIRE(internal::DumpYamlForTest(plain, true) != "FALLBACK");
  auto fast = ParseAssociations(plain, "a.yaml");
  REQUIRE(fast.ok());
  CHECK(fast->size() == 3);
  CHECK(fast->Find("b", "b")->role_arn == "arn:aws:iam::111122223333:role/b");
  // Errors in streamed entries carry the right index.
  std::string bad = plain;
  bad.replace(bad.find("namespace: b"), 12, "namespace: B");
  CHECK(ErrorOf(bad) == "a.yaml:5: associations[1].namespace: 'B' must consist of lower case alphanumeric "
                        "characters or '-' (a DNS-1123 label)");
}

TEST_CASE("associations: the fast reader and yaml-cpp read the same tree") {
  // Every document here is inside the fast reader's subset; yaml-cpp is the reference.
  const std::vector<std::string> docs = {
      "",
      "# only a comment\n\n",
      "clusterName: demo\n",
      "clusterName: demo\nassociations: []\n",
      "clusterName:\nassociations:\n",
      "clusterName: ~\nassociations: null\n",
      OneAssociation("a", "b"),
      "associations:\n- namespace: a\n  serviceAccount: b\n  roleArn: x:y::z  # trailing\n\n- namespace: c\n",
      "associations:\n  - namespace: 'it''s'\n    serviceAccount: \"quoted # not a comment\"\n",
      "associations:\n  - tags: {a: b, 'c d': \"e\", f.g/h: i-j, k: null, n: ''}\n    policy: '{\"a\": [1, 2]}'\n",
      "associations:\n  - tags: {}\n    disableSessionTags: True\n",
      "associations:\n  - tags:\n      team: data\n      x: y z\n    namespace: n\n",
      "associations:\n  - tags:\n    - a\n    - b\n    namespace: n\n",
      "top:\n  nested:\n    deeper: 1\n  back: 2\nother: 3\n",
      "  indented: 1\n  root: 2\n",
      "associations:\n  -   namespace: wide\n      serviceAccount: gap\n",
      "associations:\n  - a\n  - 'b'\n  - c d\n",
      "key: value with: colon-in-middle-no\n",  // ": " inside: the fast reader must decline
      "key: a\n b\n",                          // a multi-line plain scalar: decline
      "key: |\n  text\n",                      // a block scalar: decline
      "key: &a x\nother: *a\n",                // anchors: decline
      "key: \"esc\\n\"\n",                     // escapes: decline
      "---\nkey: v\n",                         // a document marker: decline
      "key:\tv\n",                             // a tab: decline
      "key: v\n  bad: indent\n",               // invalid YAML: decline, yaml-cpp reports it
      "a:\n  - x\n b: y\n",                    // invalid YAML
      "- a\nb: c\n",                           // invalid YAML
  };
  for (const std::string& doc : docs) {
    INFO("document:\n" << doc);
    std::string fast = internal::DumpYamlForTest(doc, true);
    std::string slow = internal::DumpYamlForTest(doc, false);
    if (fast != "FALLBACK") CHECK(fast == slow);
  }
  // The subset really is taken for the common shapes (else the benchmark would miss).
  CHECK(internal::DumpYamlForTest(OneAssociation("a", "b"), true) != "FALLBACK");
  CHECK(internal::DumpYamlForTest("associations:\n  - tags: {a: b}\n    policy: '{}'\n", true) != "FALLBACK");
  // And declined where it must be.
  for (const char* doc : {"key: value with: colon\n", "key: a\n b\n", "key: |\n  text\n", "key: &a x\n",
                          "key: \"esc\\n\"\n", "---\nkey: v\n", "key:\tv\n", "key: v\n  bad: indent\n",
                          "a:\n  - x\n b: y\n", "- a\nb: c\n"}) {
    INFO(doc);
    CHECK(internal::DumpYamlForTest(doc, true) == "FALLBACK");
  }
}

TEST_CASE("associations: empty file and empty associations") {
  for (const char* yaml : {"", "# nothing\n", "clusterName: c\n", "associations: []\n", "associations:\n",
                           "clusterName: c\nassociations: []\n"}) {
    INFO(yaml);
    auto result = ParseAssociations(yaml, "a.yaml");
    REQUIRE(result.ok());
    CHECK(result->size() == 0);
    CHECK(result->Find("a", "b") == nullptr);
  }
  CHECK(ParseAssociations("clusterName: c\n", "a.yaml")->cluster_name() == "c");
  CHECK(ParseAssociations("", "a.yaml")->cluster_name().empty());
}

TEST_CASE("associations: Find hits and misses") {
  std::string yaml = "associations:\n";
  for (int i = 0; i < 100; ++i) {
    yaml += "  - namespace: ns-" + std::to_string(i % 7) + "\n    serviceAccount: sa-" + std::to_string(i) +
            "\n    roleArn: arn:aws:iam::111122223333:role/r-" + std::to_string(i) + "\n";
  }
  auto result = ParseAssociations(yaml, "a.yaml");
  REQUIRE(result.ok());
  REQUIRE(result->size() == 100);
  const Association* hit = result->Find("ns-3", "sa-10");
  REQUIRE(hit != nullptr);
  CHECK(hit->role_arn == "arn:aws:iam::111122223333:role/r-10");
  CHECK(result->Find("ns-4", "sa-10") == nullptr);  // right SA, wrong namespace
  CHECK(result->Find("ns-3", "sa-100") == nullptr);
  CHECK(result->Find("ns-3/sa", "10") == nullptr);  // the '/' separator cannot be forged
  CHECK(result->Find("", "") == nullptr);
  AssociationIndex empty;
  CHECK(empty.Find("a", "b") == nullptr);
}

TEST_CASE("associations: every validation error names source:line and the field") {
  struct Case {
    std::string yaml;
    std::string expected;  // a substring of the message
  };
  const std::vector<Case> cases = {
      {OneAssociation("Demo", "sa"), "a.yaml:2: associations[0].namespace: 'Demo' must consist of lower case"},
      {OneAssociation("-demo", "sa"), "a.yaml:2: associations[0].namespace: '-demo' must start and end"},
      {OneAssociation(std::string(64, 'a'), "sa"), "a.yaml:2: associations[0].namespace: "},
      {OneAssociation("a.b", "sa"), "a.yaml:2: associations[0].namespace: 'a.b' must consist"},
      {OneAssociation("ns", "Sa"), "a.yaml:3: associations[0].serviceAccount: 'Sa' must consist"},
      {OneAssociation("ns", "a..b"), "a.yaml:3: associations[0].serviceAccount: 'a..b' must not have an empty label"},
      {OneAssociation("ns", "a.-b"), "a.yaml:3: associations[0].serviceAccount: 'a.-b' each '.'-separated part"},
      {OneAssociation("ns", "sa", "arn:aws:iam::11112222333:role/r"), "a.yaml:4: associations[0].roleArn: "},
      {"associations:\n  - serviceAccount: sa\n    roleArn: " + std::string(kRole) + "\n",
       "a.yaml:2: associations[0].namespace: is required"},
      {"associations:\n  - namespace: ns\n    roleArn: " + std::string(kRole) + "\n",
       "a.yaml:2: associations[0].serviceAccount: is required"},
      {"associations:\n  - namespace: ns\n    serviceAccount: sa\n", "a.yaml:2: associations[0].roleArn: is required"},
      {OneAssociation("ns", "sa") + "    targetRoleArn: arn:aws:iam::1:role/x\n",
       "a.yaml:5: associations[0].targetRoleArn: 'arn:aws:iam::1:role/x' has account '1'; it must be 12 digits"},
      {OneAssociation("ns", "sa") + "    disableSessionTags: yes\n",
       "a.yaml:5: associations[0].disableSessionTags: must be true or false, not 'yes'"},
      {OneAssociation("ns", "sa") + "    disableSessionTags: 'true'\n",
       "a.yaml:5: associations[0].disableSessionTags: must be true or false, not 'true' (a quoted string)"},
      {OneAssociation("ns", "sa") + "    disableSessionTags: {a: b}\n",
       "a.yaml:5: associations[0].disableSessionTags: must be true or false, not a mapping"},
      {OneAssociation("ns", "sa") + "    policy: '{\"a\": '\n    disableSessionTags: true\n",
       "a.yaml:5: associations[0].policy: not valid JSON"},
      {OneAssociation("ns", "sa") + "    policy: '{\"a\": 1, \"a\": 2}'\n    disableSessionTags: true\n",
       "a.yaml:5: associations[0].policy: not valid JSON: duplicate key at /a"},
      {OneAssociation("ns", "sa") + "    policy: '[1]'\n    disableSessionTags: true\n",
       "a.yaml:5: associations[0].policy: must be a JSON object"},
      {OneAssociation("ns", "sa") + "    policy: '{}'\n",
       "a.yaml:5: associations[0].policy: requires disableSessionTags: true"},
      {OneAssociation("ns", "sa") + "    policy: '{}'\n    disableSessionTags: false\n",
       "a.yaml:5: associations[0].policy: requires disableSessionTags: true"},
      {OneAssociation("ns", "sa") + "    tags: [a, b]\n", "a.yaml:5: associations[0].tags: must be a mapping"},
      {OneAssociation("ns", "sa") + "    tags:\n      team: {a: b}\n",
       "a.yaml:6: associations[0].tags.team: tag value must be a string"},
      {OneAssociation("ns", "sa") + "    tags:\n      team:\n",
       "a.yaml:6: associations[0].tags.team: tag value must be a string"},
      {OneAssociation("ns", "sa") + "    tags:\n      " + std::string(129, 'k') + ": v\n",
       "a.yaml:6: associations[0].tags." + std::string(129, 'k') + ": tag key must be 1 to 128 characters, not 129"},
      {OneAssociation("ns", "sa") + "    tags:\n      k: " + std::string(257, 'v') + "\n",
       "a.yaml:6: associations[0].tags.k: tag value must be at most 256 characters, not 257"},
      {OneAssociation("ns", "sa") + "    tags:\n      '': v\n",
       "a.yaml:6: associations[0].tags.: tag key must be 1 to 128 characters, not 0"},
      {OneAssociation("ns", "sa") + "    namespace: again\n",
       "a.yaml:5: associations[0].namespace: duplicate key (first at line 2)"},
      {OneAssociation("ns", "sa") + "    roleArn: {arn: x}\n", "a.yaml:5: associations[0].roleArn: duplicate key"},
      {"associations:\n  - namespace: {a: b}\n    serviceAccount: sa\n    roleArn: " + std::string(kRole) + "\n",
       "a.yaml:2: associations[0].namespace: must be a string, not a mapping"},
      {"associations:\n  - namespace: [a]\n    serviceAccount: sa\n    roleArn: " + std::string(kRole) + "\n",
       "a.yaml:2: associations[0].namespace: must be a string, not a sequence"},
      {"associations:\n  - namespace:\n    serviceAccount: sa\n    roleArn: " + std::string(kRole) + "\n",
       "a.yaml:2: associations[0].namespace: must be a string, not null"},
      {"associations:\n  - just-a-string\n", "a.yaml:2: associations[0]: must be a mapping, not a scalar"},
      {"associations: {a: b}\n", "a.yaml:1: associations: must be a sequence, not a mapping"},
      {"clusterName: [a]\n", "a.yaml:1: clusterName: must be a string, not a sequence"},
      {"- a\n- b\n", "a.yaml:1: (document): must be a mapping with clusterName and associations, not a sequence"},
      {"just text\n", "a.yaml:1: (document): must be a mapping"},
      {"clusterName: a\nclusterName: b\n", "a.yaml:2: clusterName: duplicate key (first at line 1)"},
      // YAML syntax errors come from yaml-cpp, with the line.
      {"associations:\n  - namespace: a\n   bad: indent\n", "a.yaml:3: "},
      {"associations: [a\n", "a.yaml:"},
      {"key: \"unterminated\n", "a.yaml:"},
  };
  for (const Case& c : cases) {
    INFO("document:\n" << c.yaml);
    std::string error = ErrorOf(c.yaml);
    CHECK_THAT(error, Catch::Contains(c.expected));
  }
}

TEST_CASE("associations: an alias bomb is rejected, not expanded") {
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) yaml += std::string(j ? ", " : "") + "*a" + std::to_string(i - 1);
    yaml += "]\n";
  }
  CHECK_THAT(ErrorOf(yaml), Catch::Contains("aliases expand to more than"));
}

TEST_CASE("associations: unknown keys are errors") {
  CHECK_THAT(ErrorOf("clusterName: c\nassocations: []\n"),
             Catch::Contains("a.yaml:2: assocations: unknown key (expected one of: clusterName, associations)"));
  CHECK_THAT(ErrorOf(OneAssociation("ns", "sa") + "    rolearn: x\n"),
             Catch::Contains("a.yaml:5: associations[0].rolearn: unknown key (expected one of: namespace, "
                             "serviceAccount, roleArn, targetRoleArn, disableSessionTags, policy, tags)"));
}

TEST_CASE("associations: several errors are reported together, one per line") {
  std::string yaml = "associations:\n";
  for (int i = 0; i < 30; ++i) yaml += "  - namespace: BAD\n    serviceAccount: sa-" + std::to_string(i) + "\n    roleArn: " + kRole + "\n";
  std::string error = ErrorOf(yaml);
  CHECK_THAT(error, Catch::StartsWith("a.yaml:2: associations[0].namespace: 'BAD'"));
  CHECK_THAT(error, Catch::Contains("\na.yaml:5: associations[1].namespace: 'BAD'"));
  CHECK_THAT(error, Catch::EndsWith("(10 more errors)"));
}

TEST_CASE("associations: duplicate (namespace, serviceAccount) names both lines") {
  std::string yaml = OneAssociation("ns", "sa") + "  - namespace: other\n    serviceAccount: sa\n    roleArn: " + kRole +
                     "\n  - namespace: ns\n    serviceAccount: sa\n    roleArn: arn:aws:iam::111122223333:role/x\n";
  std::string error = ErrorOf(yaml);
  CHECK(error == "a.yaml:8: associations[2]: duplicate association for namespace 'ns' and serviceAccount 'sa' "
                 "(line 8; first at line 2, associations[0])");
}

TEST_CASE("associations: tag limits") {
  auto with_tags = [](int n) {
    std::string yaml = OneAssociation("ns", "sa") + "    tags:\n";
    for (int i = 0; i < n; ++i) yaml += "      k" + std::to_string(i) + ": v\n";
    return yaml;
  };
  auto fifty = ParseAssociations(with_tags(50), "a.yaml");
  REQUIRE(fifty.ok());
  CHECK(fifty->Find("ns", "sa")->tags.size() == 50);
  CHECK_THAT(ErrorOf(with_tags(51)), Catch::Contains("a.yaml:5: associations[0].tags: 51 tags, at most 50 are allowed"));
  // Boundaries that pass: 128-character key, 256-character value, empty value.
  std::string edge = OneAssociation("ns", "sa") + "    tags:\n      " + std::string(128, 'k') + ": " +
                     std::string(256, 'v') + "\n      e: ''\n";
  REQUIRE(ParseAssociations(edge, "a.yaml").ok());
  // Characters, not bytes: 256 two-byte characters are fine (goes through yaml-cpp).
  std::string utf8;
  for (int i = 0; i < 256; ++i) utf8 += "\xC3\xA9";
  REQUIRE(ParseAssociations(OneAssociation("ns", "sa") + "    tags:\n      k: " + utf8 + "\n", "a.yaml").ok());
}

TEST_CASE("associations: role ARN validator") {
  for (const char* ok : {"arn:aws:iam::111122223333:role/r", "arn:aws-cn:iam::111122223333:role/r",
                         "arn:aws-us-gov:iam::111122223333:role/r", "arn:aws:iam::111122223333:role/a/b/c/name",
                         "arn:aws:iam::111122223333:role/Name_+=,.@-1"}) {
    INFO(ok);
    CHECK(ValidateRoleArn(ok).empty());
  }
  CHECK(ValidateRoleArn("arn:aws:iam::111122223333:role/" + std::string(64, 'r')).empty());
  struct Bad {
    std::string arn;
    std::string problem;
  };
  const std::vector<Bad> bad = {
      {"arn:aws:iam::11112222333:role/r", "has account '11112222333'; it must be 12 digits"},
      {"arn:aws:iam::1111222233334:role/r", "it must be 12 digits"},
      {"arn:aws:iam::11112222333a:role/r", "it must be 12 digits"},
      {"arn:aws:sts::111122223333:role/r", "has service 'sts'; a role ARN's service is iam"},
      {"arn:aws:iam::111122223333:user/r", "is not a role ARN: the resource type is 'user', expected role"},
      {"arn:aws:iam::111122223333:assumed-role/r/s", "the resource type is 'assumed-role'"},
      {"arn:aws-iso:iam::111122223333:role/r", "has partition 'aws-iso'"},
      {"arn:aws:iam:us-east-1:111122223333:role/r", "has region 'us-east-1'"},
      {"arn:aws:iam::111122223333:role/", "must end in a role name of 1 to 64 characters"},
      {"arn:aws:iam::111122223333:role/" + std::string(65, 'r'), "1 to 64 characters"},
      {"arn:aws:iam::111122223333:role/a//b", "has an empty segment in the role path"},
      {"arn:aws:iam::111122223333:role/a/b/", "must end in a role name"},
      {"arn:aws:iam::111122223333:role/na me", "has a role name with ' '"},
      {"arn:aws:iam::111122223333:role/p*th/name", "has a role path with '*'"},
      {"arn:aws:iam::111122223333:role", "is not a role ARN"},
      {"role/r", "is not an ARN"},
      {"", "is not an ARN"},
      {"aws:aws:iam::111122223333:role/r", "is not an ARN"},
  };
  for (const Bad& b : bad) {
    INFO(b.arn);
    CHECK_THAT(ValidateRoleArn(b.arn), Catch::Contains(b.problem));
  }
}

TEST_CASE("associations: DNS-1123 validators") {
  CHECK(ValidateDns1123Label("a").empty());
  CHECK(ValidateDns1123Label("demo-ns-1").empty());
  CHECK(ValidateDns1123Label(std::string(63, 'a')).empty());
  CHECK_FALSE(ValidateDns1123Label(std::string(64, 'a')).empty());
  for (const char* bad : {"", "-a", "a-", "A", "a_b", "a.b", "a b"}) {
    INFO(bad);
    CHECK_FALSE(ValidateDns1123Label(bad).empty());
  }
  CHECK(ValidateDns1123Subdomain("a").empty());
  CHECK(ValidateDns1123Subdomain("a.b-c.d").empty());
  CHECK(ValidateDns1123Subdomain(std::string(253, 'a')).empty());
  CHECK_FALSE(ValidateDns1123Subdomain(std::string(254, 'a')).empty());
  for (const char* bad : {"", ".a", "a.", "a..b", "-a", "a-.b", "A", "a_b", "a/b"}) {
    INFO(bad);
    CHECK_FALSE(ValidateDns1123Subdomain(bad).empty());
  }
}

TEST_CASE("associations: examples/associations.yaml is valid") {
  auto result = LoadAssociationsFile(TESTDATA_DIR "/../../../examples/associations.yaml");
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  CHECK(result->cluster_name() == "demo");
  const Association* a = result->Find("demo-ns", "demo-sa");
  REQUIRE(a != nullptr);
  CHECK(a->role_arn == kRole);
}

TEST_CASE("associations: testdata files") {
  auto full = LoadAssociationsFile(TESTDATA_DIR "/associations/full.yaml");
  INFO(full.status().ToString());
  REQUIRE(full.ok());
  CHECK(full->cluster_name() == "test-cluster");
  REQUIRE(full->size() == 2);
  const Association* a = full->Find("demo-ns", "demo-sa");
  REQUIRE(a != nullptr);
  CHECK(a->target_role_arn == std::optional<std::string>("arn:aws:iam::444455556666:role/data-reader"));
  CHECK(a->disable_session_tags);
  REQUIRE(a->policy.has_value());
  CHECK_THAT(*a->policy, Catch::Contains("\"Action\": \"s3:GetObject\""));
  CHECK(a->tags == std::map<std::string, std::string>{{"team", "data"}, {"env", "prod"}});
  const Association* b = full->Find("ci", "runner.build");
  REQUIRE(b != nullptr);
  CHECK(b->role_arn == "arn:aws-us-gov:iam::123456789012:role/ci/runners/builder");
  CHECK(b->tags == std::map<std::string, std::string>{{"owner", "platform"}});

  const std::string invalid_path = TESTDATA_DIR "/associations/invalid.yaml";
  auto invalid = LoadAssociationsFile(invalid_path);
  REQUIRE_FALSE(invalid.ok());
  CHECK(invalid.status().message() ==
        invalid_path + ":5: associations[0].roleArn: 'arn:aws:iam::111122223333:user/not-a-role' is not a role ARN: "
                       "the resource type is 'user', expected role\n" +
            invalid_path + ":9: associations[1].policy: requires disableSessionTags: true (as EKS requires)\n" +
            invalid_path + ":10: associations[1].sessionTags: unknown key (expected one of: namespace, "
                           "serviceAccount, roleArn, targetRoleArn, disableSessionTags, policy, tags)");
}

TEST_CASE("associations: LoadAssociationsFile reports a missing file") {
  TempDir dir;
  auto result = LoadAssociationsFile((dir.path() / "missing.yaml").string());
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == StatusCode::kNotFound);
  CHECK_THAT(result.status().message(), Catch::Contains("missing.yaml: cannot open"));
}

struct Recorded {
  AssociationStore::ReloadResult result;
  Status status;
  size_t count;
};

TEST_CASE("associations store: load, reload, keep the last good snapshot") {
  TempDir dir;
  fs::path file = dir.path() / "associations.yaml";
  WriteFile(file, OneAssociation("a", "a"));
  std::vector<Recorded> events;
  AssociationStore store(file.string(), [&](AssociationStore::ReloadResult r, const Status& s, size_t n) {
    events.push_back({r, s, n});
  });
  CHECK_FALSE(store.loaded());
  REQUIRE(store.Load().ok());
  REQUIRE(store.loaded());
  auto first = store.Current();
  CHECK(first->Find("a", "a") != nullptr);
  CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kUnchanged);
  CHECK(events.empty());

  SECTION("a content change is reloaded") {
    WriteFile(file, OneAssociation("a", "a") + "  - namespace: b\n    serviceAccount: b\n    roleArn: " + kRole + "\n");
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kReloaded);
    REQUIRE(events.size() == 1);
    CHECK(events[0].result == AssociationStore::ReloadResult::kReloaded);
    CHECK(events[0].status.ok());
    CHECK(events[0].count == 2);
    CHECK(store.Current()->Find("b", "b") != nullptr);
    // A reader holding the old snapshot keeps a consistent view.
    CHECK(first->Find("b", "b") == nullptr);
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kUnchanged);
  }

  SECTION("an invalid file keeps the old snapshot and is reported once") {
    WriteFile(file, OneAssociation("BAD", "a"));
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kFailed);
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kUnchanged);
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kUnchanged);
    REQUIRE(events.size() == 1);
    CHECK(events[0].result == AssociationStore::ReloadResult::kFailed);
    CHECK_THAT(events[0].status.message(), Catch::Contains(file.string() + ":2: associations[0].namespace"));
    CHECK(events[0].count == 1);
    CHECK(store.Current() == first);

    // A different bad file is reported again; a fixed file is loaded.
    WriteFile(file, "nonsense: [\n");
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kFailed);
    REQUIRE(events.size() == 2);
    WriteFile(file, OneAssociation("fixed", "a"));
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kReloaded);
    CHECK(store.Current()->Find("fixed", "a") != nullptr);
  }

  SECTION("a missing file keeps the old snapshot") {
    fs::remove(file);
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kFailed);
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kUnchanged);
    REQUIRE(events.size() == 1);
    CHECK(events[0].status.code() == StatusCode::kNotFound);
    CHECK(events[0].count == 1);
    CHECK(store.Current() == first);
    // When it comes back it is loaded.
    WriteFile(file, OneAssociation("back", "a"));
    CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kReloaded);
    CHECK(store.Current()->Find("back", "a") != nullptr);
  }
}

TEST_CASE("associations store: Load fails on a missing or invalid file") {
  TempDir dir;
  fs::path file = dir.path() / "associations.yaml";
  AssociationStore missing(file.string(), nullptr);
  Status s = missing.Load();
  CHECK(s.code() == StatusCode::kNotFound);
  CHECK_FALSE(missing.loaded());

  WriteFile(file, "associations: 3\n");
  AssociationStore invalid(file.string(), nullptr);
  s = invalid.Load();
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(s.message(), Catch::Contains(file.string() + ":1: associations: must be a sequence"));
  CHECK_FALSE(invalid.loaded());
  // A later valid file is picked up by the reload path too.
  WriteFile(file, OneAssociation("a", "b"));
  CHECK(invalid.ReloadIfChanged() == AssociationStore::ReloadResult::kReloaded);
  CHECK(invalid.loaded());
}

TEST_CASE("associations store: a ConfigMap-style ..data symlink swap is detected") {
  // The kubelet's layout: <dir>/..<timestamp>/associations.yaml, <dir>/..data ->
  // ..<timestamp>, <dir>/associations.yaml -> ..data/associations.yaml. An update
  // writes a new timestamped dir and renames a new ..data_tmp symlink over ..data.
  TempDir dir;
  const fs::path& root = dir.path();
  fs::create_directory(root / "..ts1");
  fs::create_directory(root / "..ts2");
  // Same size and the same mtime: only the inode differs.
  WriteFile(root / "..ts1" / "associations.yaml", OneAssociation("one", "sa"));
  WriteFile(root / "..ts2" / "associations.yaml", OneAssociation("two", "sa"));
  SetMtime(root / "..ts1" / "associations.yaml", 1'700'000'000);
  SetMtime(root / "..ts2" / "associations.yaml", 1'700'000'000);
  fs::create_symlink("..ts1", root / "..data");
  fs::create_symlink("..data/associations.yaml", root / "associations.yaml");

  int reloads = 0;
  AssociationStore store((root / "associations.yaml").string(),
                         [&](AssociationStore::ReloadResult r, const Status&, size_t) {
                           if (r == AssociationStore::ReloadResult::kReloaded) ++reloads;
                         });
  REQUIRE(store.Load().ok());
  CHECK(store.Current()->Find("one", "sa") != nullptr);
  CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kUnchanged);

  fs::create_symlink("..ts2", root / "..data_tmp");
  REQUIRE(std::rename((root / "..data_tmp").c_str(), (root / "..data").c_str()) == 0);
  CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kReloaded);
  CHECK(reloads == 1);
  CHECK(store.Current()->Find("two", "sa") != nullptr);
  CHECK(store.Current()->Find("one", "sa") == nullptr);
  // The kubelet then removes the old dir; nothing changes for us.
  fs::remove_all(root / "..ts1");
  CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kUnchanged);
}

TEST_CASE("associations store: fixed snapshot") {
  std::vector<Association> list(1);
  list[0].namespace_name = "ns";
  list[0].service_account = "sa";
  list[0].role_arn = kRole;
  AssociationStore store(AssociationIndex("fixed", std::move(list)));
  REQUIRE(store.loaded());
  CHECK(store.Load().ok());
  CHECK(store.Current()->cluster_name() == "fixed");
  CHECK(store.Current()->Find("ns", "sa") != nullptr);
  CHECK(store.ReloadIfChanged() == AssociationStore::ReloadResult::kUnchanged);
}

TEST_CASE("associations store: Start/Stop terminates promptly") {
  TempDir dir;
  fs::path file = dir.path() / "associations.yaml";
  WriteFile(file, OneAssociation("a", "a"));
  AssociationStore store(file.string(), nullptr);
  REQUIRE(store.Load().ok());
  // An hour-long interval: Stop must wake the thread rather than wait it out.
  store.Start(std::chrono::hours(1));
  store.Start(std::chrono::hours(1));  // a second Start is a no-op
  auto before = std::chrono::steady_clock::now();
  store.Stop();
  CHECK(std::chrono::steady_clock::now() - before < std::chrono::seconds(10));
  store.Stop();  // idempotent
  // Restartable, and the destructor stops a running watcher.
  store.Start(std::chrono::milliseconds(1));
}

}  // namespace
}  // namespace podidentity
