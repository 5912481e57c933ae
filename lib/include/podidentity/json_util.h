// Small JSON helpers shared by the logger, the metrics and the codecs: string
// escaping for hand-built JSON and a strict parse of a document with a size and
// depth limit and duplicate-key rejection (RapidJSON accepts duplicate keys).
#pragma once

#include <rapidjson/document.h>

#include <string>
#include <string_view>

#include "podidentity/status.h"

namespace podidentity {

// Appends `s` as a quoted JSON string (RFC 8259 escaping; invalid UTF-8 bytes are
// replaced with U+FFFD so the output is always valid JSON).
void AppendJsonString(std::string& out, std::string_view s);
std::string JsonQuote(std::string_view s);

// Parses `text` into `doc`. Rejects: invalid JSON, trailing content, nesting deeper
// than `max_depth`, an object with a duplicate key, and a string or key that does not
// decode to valid UTF-8 (e.g. an unpaired surrogate escape "\udc00", which RapidJSON
// itself lets through). The message names the JSON pointer of the offending value.
Status ParseJsonStrict(std::string_view text, rapidjson::Document& doc, int max_depth = 64);

// Serialises a value compactly.
std::string JsonToString(const rapidjson::Value& value);

}  // namespace podidentity
