#include "podidentity/json_util.h"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <array>
#include <cstdio>
#include <string>
#include <unordered_set>
#include <vector>

namespace podidentity {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; }
  else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; }
  else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; }
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// True when every byte of `s` belongs to a valid UTF-8 sequence (no surrogates).
bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {  // ASCII: the common case
      ++i;
      continue;
    }
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string EscapePointerToken(std::string_view token) {
  std::string out;
  for (char c : token) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

// One step of the path from the root to the value being checked. The JSON pointer is
// only built when there is something to report, so a valid document costs no strings.
struct PathStep {
  std::string_view key;  // object member name (when !is_index)
  size_t index = 0;      // array index (when is_index)
  bool is_index = false;
};

std::string PointerOf(const std::vector<PathStep>& path) {
  if (path.empty()) return "/";
  std::string pointer;
  for (const PathStep& step : path) {
    pointer += '/';
    pointer += step.is_index ? std::to_string(step.index) : EscapePointerToken(step.key);
  }
  return pointer;
}

// Objects up to this many members are checked for duplicate keys by comparing with the
// earlier names (no allocation); larger ones use a hash set.
constexpr rapidjson::SizeType kLinearDuplicateScan = 16;

Status CheckTree(const rapidjson::Value& v, int depth, int max_depth, std::vector<PathStep>& path) {
  if (depth > max_depth) {
    return InvalidArgumentError("JSON nesting deeper than " + std::to_string(max_depth) + " at " + PointerOf(path));
  }
  if (v.IsObject()) {
    const rapidjson::SizeType count = v.MemberCount();
    std::unordered_set<std::string_view> seen;
    if (count > kLinearDuplicateScan) seen.reserve(count);
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      const std::string_view key(it->name.GetString(), it->name.GetStringLength());
      path.push_back({key, 0, false});
      if (!IsValidUtf8(key)) {
        return InvalidArgumentError("key is not valid UTF-8 (unpaired surrogate escape?) at " + PointerOf(path));
      }
      bool duplicate = false;
      if (count <= kLinearDuplicateScan) {
        for (auto earlier = v.MemberBegin(); earlier != it && !duplicate; ++earlier) {
          duplicate = std::string_view(earlier->name.GetString(), earlier->name.GetStringLength()) == key;
        }
      } else {
        duplicate = !seen.insert(key).second;
      }
      if (duplicate) return InvalidArgumentError("duplicate key at " + PointerOf(path));
      if (Status s = CheckTree(it->value, depth + 1, max_depth, path); !s.ok()) return s;
      path.pop_back();
    }
  } else if (v.IsString()) {
    // The parser validates the raw bytes, but a \uXXXX escape can still decode to a lone
    // surrogate (RapidJSON accepts "\udc00"), which is not a Unicode scalar value: such a
    // string could not be echoed back byte for byte, so the document is rejected.
    if (!IsValidUtf8({v.GetString(), v.GetStringLength()})) {
      return InvalidArgumentError("string is not valid UTF-8 (unpaired surrogate escape?) at " + PointerOf(path));
    }
  } else if (v.IsArray()) {
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      path.push_back({{}, i, true});
      if (Status s = CheckTree(v[i], depth + 1, max_depth, path); !s.ok()) return s;
      path.pop_back();
    }
  }
  return Status::Ok();
}

// Bytes that are copied into a JSON string as they are: printable ASCII except '"' and '\\'.
constexpr std::array<bool, 256> kPlainJsonByte = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x7F; ++c) plain[static_cast<size_t>(c)] = c != '"' && c != '\\';
  return plain;
}();

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  // Bytes that need no escaping are copied in runs; only escapes and invalid UTF-8
  // interrupt a run (patches and base64 payloads are long runs of plain ASCII).
  size_t run = 0;
  auto flush = [&](size_t end) {
    out.append(s.data() + run, end - run);
  };
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (kPlainJsonByte[c]) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(s, i);
      if (n != 0) {  // valid UTF-8 is copied as it is
        i += n;
        continue;
      }
      flush(i);
      out += "\\ufffd";
      run = ++i;
      continue;
    }
    flush(i);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      }
    }
    run = ++i;
  }
  flush(s.size());
  out += '"';
}

std::string JsonQuote(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

Status ParseJsonStrict(std::string_view text, rapidjson::Document& doc, int max_depth) {
  // Iterative parsing: deep nesting cannot overflow the stack before our depth check.
  doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  if (doc.HasParseError()) {
    return InvalidArgumentError(std::string("invalid JSON at offset ") + std::to_string(doc.GetErrorOffset()) +
                                ": " + rapidjson::GetParseError_En(doc.GetParseError()));
  }
  std::vector<PathStep> path;
  return CheckTree(doc, 0, max_depth, path);
}

std::string JsonToString(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace podidentity
