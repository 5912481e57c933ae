// JSON Patch (RFC 6902) operations as the webhook emits them, with RFC 6901 pointer
// escaping. Values are kept as serialised JSON so a patch is a plain value type.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace podidentity::webhook {

struct PatchOp {
  std::string op;          // "add" (the only op the mutator needs), "replace", "remove", "test"
  std::string path;        // an RFC 6901 JSON pointer, already escaped
  std::string value_json;  // the value, serialised; empty for "remove"
  bool operator==(const PatchOp&) const = default;
};

// Escapes one reference token: '~' -> "~0", '/' -> "~1" (RFC 6901 section 3).
std::string EscapeJsonPointerToken(std::string_view token);
// Joins escaped tokens: {"metadata","labels","a/b"} -> "/metadata/labels/a~1b".
std::string JsonPointer(std::initializer_list<std::string_view> tokens);

// Serialises the patch as a JSON array: [{"op":"add","path":"...","value":...}, ...].
std::string SerializePatch(const std::vector<PatchOp>& ops);

}  // namespace podidentity::webhook
