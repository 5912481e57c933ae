#include "json_patch.h"

#include "podidentity/json_util.h"

namespace podidentity::webhook {

std::string EscapeJsonPointerToken(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (char c : token) {
    // Order matters only when decoding; encoding each character independently is exact.
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

std::string JsonPointer(std::initializer_list<std::string_view> tokens) {
  std::string out;
  for (std::string_view t : tokens) {
    out += '/';
    out += EscapeJsonPointerToken(t);
  }
  return out;
}

std::string SerializePatch(const std::vector<PatchOp>& ops) {
  std::string out = "[";
  for (size_t i = 0; i < ops.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"op\":";
    AppendJsonString(out, ops[i].op);
    out += ",\"path\":";
    AppendJsonString(out, ops[i].path);
    if (!ops[i].value_json.empty()) {
      out += ",\"value\":";
      out += ops[i].value_json;
    }
    out += '}';
  }
  out += ']';
  return out;
}

}  // namespace podidentity::webhook
