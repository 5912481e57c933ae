// Reading STS's XML answers with pugixml: element lookup by local name (AWS documents
// carry a default namespace, some servers use a prefix) and trimmed element text.
// Private to libpodidentity. Stateless functions: thread-safe.
#pragma once

#include <pugixml.hpp>

#include <string>
#include <string_view>

namespace podidentity::internal {

// Element name without a namespace prefix ("sts:Credentials" -> "Credentials").
inline std::string_view LocalName(const pugi::xml_node& node) {
  const std::string_view name = node.name();
  const size_t colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

// The first child element whose local name is `name`; a null node when there is none
// (pugixml's null nodes answer every query with another null node or "").
inline pugi::xml_node Child(const pugi::xml_node& parent, std::string_view name) {
  for (pugi::xml_node child = parent.first_child(); child; child = child.next_sibling()) {
    if (child.type() == pugi::node_element && LocalName(child) == name) return child;
  }
  return {};
}

// The text of Child(parent, name) without surrounding ASCII whitespace: a pretty-printed
// document ("<AccessKeyId>\n  ASIA...\n</AccessKeyId>") means the same as a compact
// one, and no STS value (key, token, ARN, timestamp, code) has meaningful edge spaces.
inline std::string ChildText(const pugi::xml_node& parent, std::string_view name) {
  std::string_view text = Child(parent, name).text().as_string();
  constexpr std::string_view kSpace = " \t\r\n\f\v";
  const size_t first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  text = text.substr(first, text.find_last_not_of(kSpace) - first + 1);
  return std::string(text);
}

}  // namespace podidentity::internal
