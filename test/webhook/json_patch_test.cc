#include "json_patch.h"

#include <catch2/catch.hpp>

using podidentity::webhook::EscapeJsonPointerToken;
using podidentity::webhook::JsonPointer;
using podidentity::webhook::PatchOp;
using podidentity::webhook::SerializePatch;

TEST_CASE("RFC 6901 escaping of reference tokens") {
  CHECK(EscapeJsonPointerToken("plain") == "plain");
  CHECK(EscapeJsonPointerToken("eks.amazonaws.com/pod-identity") == "eks.amazonaws.com~1pod-identity");
  CHECK(EscapeJsonPointerToken("a~b") == "a~0b");
  // "~1" must become "~01", not "~1" or "/" (escape '~' before interpreting '/').
  CHECK(EscapeJsonPointerToken("~1") == "~01");
  CHECK(EscapeJsonPointerToken("/~") == "~1~0");
  CHECK(EscapeJsonPointerToken("") == "");
}

TEST_CASE("JsonPointer joins escaped tokens") {
  CHECK(JsonPointer({"metadata", "labels", "eks.amazonaws.com/pod-identity"}) ==
        "/metadata/labels/eks.amazonaws.com~1pod-identity");
  CHECK(JsonPointer({"spec", "containers", "0", "env", "-"}) == "/spec/containers/0/env/-");
  CHECK(JsonPointer({""}) == "/");
}

TEST_CASE("SerializePatch writes RFC 6902 operations") {
  CHECK(SerializePatch({}) == "[]");
  std::vector<PatchOp> ops = {
      {"add", "/spec/volumes/-", R"({"name":"v"})"},
      {"add", "/metadata/labels/a~1\"b", R"("enabled")"},
      {"remove", "/spec/x", ""},
  };
  CHECK(SerializePatch(ops) ==
        R"([{"op":"add","path":"/spec/volumes/-","value":{"name":"v"}},)"
        R"({"op":"add","path":"/metadata/labels/a~1\"b","value":"enabled"},)"
        R"({"op":"remove","path":"/spec/x"}])");
}
