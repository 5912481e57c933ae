#include "podidentity/associations.h"

#include <sys/stat.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "podidentity/json_util.h"

namespace podidentity {
namespace {

// ---------------------------------------------------------------------------------
// A small YAML tree. Both front ends below build it, and the validator reads only it,
// so the two front ends cannot disagree on validation.
//
// Why two front ends: yaml-cpp 0.7 scans ~6 MB/s, so 100k associations (~10 MB) take
// ~1.6 s even with its event API, far over the 300 ms budget. The fast front end
// reads the plain block-style subset that people and generators actually write and
// gives up (returns nullopt) on anything else, which then goes through yaml-cpp.
// It never accepts a document yaml-cpp would read differently: when unsure, give up.
struct YamlNode {
  enum class Kind : unsigned char { kNull, kScalar, kMap, kSeq };
  Kind kind = Kind::kNull;
  bool plain = false;     // an unquoted scalar (only those can be booleans or null)
  bool streamed = false;  // kSeq whose elements went to an ItemSink instead of `items`
  int line = 0;        // 1-based
  std::string scalar;
  // kSeq: the elements. kMap: key, value, key, value, ... (one vector, not two: this
  // tree is built for every entry of a 100k-entry file, and allocations dominate).
  std::vector<YamlNode> items;
};

bool IsPlainNull(std::string_view s) { return s == "~" || s == "null" || s == "Null" || s == "NULL"; }

YamlNode MakeScalar(std::string value, bool plain, int line) {
  YamlNode n;
  if (plain && IsPlainNull(value)) {
    n.kind = YamlNode::Kind::kNull;
  } else {
    n.kind = YamlNode::Kind::kScalar;
    n.scalar = std::move(value);
  }
  n.plain = plain;
  n.line = line;
  return n;
}

// Receives the elements of the top-level `associations` sequence one by one while the
// fast reader reads, so each is validated and freed before the next is read: a 100k
// file then never holds its whole tree in memory (page faults were a third of the
// load time).
class ItemSink {
 public:
  virtual ~ItemSink() = default;
  virtual void Reserve(size_t items) = 0;
  virtual void Add(YamlNode& item) = 0;
};

// ----------------------------- fast front end -------------------------------------

class FastYamlReader {
 public:
  // With a sink, the top-level `associations` elements go to it (see ItemSink).
  explicit FastYamlReader(std::string_view text, ItemSink* sink = nullptr) : text_(text), sink_(sink) {}

  // The document's root, or nullopt when the text is outside the subset.
  std::optional<YamlNode> Read() {
    if (!SplitLines()) return std::nullopt;
    YamlNode root;  // a document without content is null, as in yaml-cpp
    root.line = 1;
    if (lines_.empty()) return root;
    if (!ParseBlock(lines_[0].indent, root, /*is_root=*/true)) return std::nullopt;
    if (pos_ != lines_.size()) return std::nullopt;
    return root;
  }

 private:
  struct Line {
    int indent;
    int number;
    std::string_view content;  // from the first non-space character, no line break
  };

  bool SplitLines() {
    // Tabs, CR, control characters, non-ASCII (UTF-8 or a BOM) and anything that
    // might be a directive or document marker: leave them to yaml-cpp.
    for (char ch : text_) {
      auto c = static_cast<unsigned char>(ch);
      if (c == '\n') continue;
      if (c < 0x20 || c >= 0x7F) return false;
    }
    lines_.reserve(text_.size() / 24 + 1);
    int number = 0;
    size_t start = 0;
    while (start < text_.size()) {
      size_t end = text_.find('\n', start);
      if (end == std::string_view::npos) end = text_.size();
      std::string_view raw = text_.substr(start, end - start);
      start = end + 1;
      ++number;
      size_t indent = raw.find_first_not_of(' ');
      if (indent == std::string_view::npos) continue;  // blank
      std::string_view content = raw.substr(indent);
      if (content[0] == '#') continue;  // comment line
      if (indent == 0 && (content.starts_with("---") || content.starts_with("...") || content[0] == '%')) {
        return false;
      }
      lines_.push_back(Line{static_cast<int>(indent), number, content});
    }
    return true;
  }

  static bool IsSeqEntry(std::string_view content) {
    return content[0] == '-' && (content.size() == 1 || content[1] == ' ');
  }

  static bool IsKeyChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '/' || c == '-';
  }

  // Splits "key: rest" / "key:"; false when the content is not such a line.
  static bool SplitKey(std::string_view content, std::string_view& key, std::string_view& rest) {
    char first = content[0];
    if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') || (first >= '0' && first <= '9') ||
          first == '_')) {
      return false;
    }
    size_t i = 1;
    while (i < content.size() && IsKeyChar(content[i])) ++i;
    if (i == content.size() || content[i] != ':') return false;
    if (i + 1 < content.size() && content[i + 1] != ' ') return false;
    key = content.substr(0, i);
    rest = content.substr(i + 1);
    size_t skip = rest.find_first_not_of(' ');
    rest = skip == std::string_view::npos ? std::string_view() : rest.substr(skip);
    return true;
  }

  // True when `rest` is empty or a comment preceded by whitespace.
  static bool OnlyComment(std::string_view rest) {
    size_t skip = rest.find_first_not_of(' ');
    if (skip == std::string_view::npos) return true;
    return skip > 0 && rest[skip] == '#';
  }

  // A single-line quoted scalar at the start of `s`; `consumed` is its length.
  static bool ReadQuoted(std::string_view s, std::string& out, size_t& consumed) {
    char quote = s[0];
    out.clear();
    for (size_t i = 1; i < s.size(); ++i) {
      char c = s[i];
      if (quote == '\'' && c == '\'') {
        if (i + 1 < s.size() && s[i + 1] == '\'') {
          out += '\'';
          ++i;
          continue;
        }
        consumed = i + 1;
        return true;
      }
      if (quote == '"') {
        if (c == '\\') return false;  // escapes: leave to yaml-cpp
        if (c == '"') {
          consumed = i + 1;
          return true;
        }
      }
      out += c;
    }
    return false;  // not closed on this line (a multi-line scalar)
  }

  // A scalar or flow collection written after "key: " or "- ".
  static bool ReadInlineValue(std::string_view s, int line, YamlNode& out) {
    char c = s[0];
    if (c == '\'' || c == '"') {
      std::string value;
      size_t consumed = 0;
      if (!ReadQuoted(s, value, consumed) || !OnlyComment(s.substr(consumed))) return false;
      out = MakeScalar(std::move(value), false, line);
      return true;
    }
    if (c == '{') return ReadFlowMap(s, line, out);
    if (c == '[') {
      size_t close = s.find_first_not_of(' ', 1);
      if (close == std::string_view::npos || s[close] != ']' || !OnlyComment(s.substr(close + 1))) return false;
      out = YamlNode{};
      out.kind = YamlNode::Kind::kSeq;
      out.line = line;
      return true;
    }
    // Indicators that start something other than a plain scalar (or need care).
    if (std::string_view("-?:,]}#&*!|>%@`").find(c) != std::string_view::npos) return false;
    // A plain scalar ends at " #" (a comment); ": " or a final ':' would make it a key.
    size_t end = s.size();
    size_t hash = s.find(" #");
    if (hash != std::string_view::npos) end = hash;
    std::string_view value = s.substr(0, end);
    while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
    if (value.find(": ") != std::string_view::npos || value.back() == ':') return false;
    out = MakeScalar(std::string(value), true, line);
    return true;
  }

  static bool IsFlowPlainChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '/' || c == '-' || c == '=' || c == '+' || c == '@';
  }

  // A flow scalar inside "{...}": quoted, or plain from a conservative character set.
  static bool ReadFlowScalar(std::string_view s, size_t& i, int line, YamlNode& out) {
    if (i >= s.size()) return false;
    if (s[i] == '\'' || s[i] == '"') {
      std::string value;
      size_t consumed = 0;
      if (!ReadQuoted(s.substr(i), value, consumed)) return false;
      i += consumed;
      out = MakeScalar(std::move(value), false, line);
      return true;
    }
    size_t start = i;
    while (i < s.size() && IsFlowPlainChar(s[i])) ++i;
    if (i == start || s[start] == '-') return false;
    out = MakeScalar(std::string(s.substr(start, i - start)), true, line);
    return true;
  }

  static bool ReadFlowMap(std::string_view s, int line, YamlNode& out) {
    out = YamlNode{};
    out.kind = YamlNode::Kind::kMap;
    out.line = line;
    auto skip_spaces = [&](size_t& i) {
      while (i < s.size() && s[i] == ' ') ++i;
    };
    size_t i = 1;
    skip_spaces(i);
    if (i < s.size() && s[i] == '}') return OnlyComment(s.substr(i + 1));
    while (true) {
      YamlNode key, value;
      if (!ReadFlowScalar(s, i, line, key)) return false;
      if (i + 1 >= s.size() || s[i] != ':' || s[i + 1] != ' ') return false;
      i += 2;
      skip_spaces(i);
      if (!ReadFlowScalar(s, i, line, value)) return false;
      out.items.push_back(std::move(key));
      out.items.push_back(std::move(value));
      skip_spaces(i);
      if (i >= s.size()) return false;
      if (s[i] == '}') return OnlyComment(s.substr(i + 1));
      if (s[i] != ',') return false;
      ++i;
      skip_spaces(i);
    }
  }

  // The block node whose first line is lines_[pos_] at exactly `indent`.
  bool ParseBlock(int indent, YamlNode& out, bool is_root = false) {
    if (IsSeqEntry(lines_[pos_].content)) return ParseSequence(indent, out, nullptr);
    return ParseMapping(indent, out, is_root);
  }

  // Children are collected on scratch_ and moved into an exactly sized vector, so a
  // node costs one allocation instead of one per doubling.
  void TakeChildren(size_t base, YamlNode& out) {
    out.items.reserve(scratch_.size() - base);
    std::move(scratch_.begin() + static_cast<std::ptrdiff_t>(base), scratch_.end(), std::back_inserter(out.items));
    scratch_.erase(scratch_.begin() + static_cast<std::ptrdiff_t>(base), scratch_.end());
  }

  bool ParseMapping(int indent, YamlNode& out, bool is_root = false) {
    out = YamlNode{};
    out.kind = YamlNode::Kind::kMap;
    out.line = lines_[pos_].number;
    const size_t base = scratch_.size();
    while (pos_ < lines_.size() && lines_[pos_].indent >= indent) {
      const Line& line = lines_[pos_];
      if (line.indent != indent || IsSeqEntry(line.content)) return false;
      std::string_view key, rest;
      if (!SplitKey(line.content, key, rest)) return false;
      scratch_.push_back(MakeScalar(std::string(key), true, line.number));
      ItemSink* sink = is_root && key == "associations" ? sink_ : nullptr;
      YamlNode value;
      ++pos_;
      if (!rest.empty() && rest[0] != '#') {
        if (!ReadInlineValue(rest, line.number, value)) return false;
        // A deeper line next would continue a multi-line scalar.
        if (pos_ < lines_.size() && lines_[pos_].indent > indent) return false;
      } else if (pos_ < lines_.size() && lines_[pos_].indent > indent) {
        int child_indent = lines_[pos_].indent;
        if (IsSeqEntry(lines_[pos_].content)) {
          if (!ParseSequence(child_indent, value, sink)) return false;
        } else if (!ParseMapping(child_indent, value)) {
          return false;
        }
      } else if (pos_ < lines_.size() && lines_[pos_].indent == indent && IsSeqEntry(lines_[pos_].content)) {
        // A sequence may sit at its key's own indentation.
        if (!ParseSequence(indent, value, sink)) return false;
      } else {
        value.line = line.number;  // "key:" with nothing: null
      }
      scratch_.push_back(std::move(value));
    }
    TakeChildren(base, out);
    return true;
  }

  bool ParseSequence(int indent, YamlNode& out, ItemSink* sink) {
    out = YamlNode{};
    out.kind = YamlNode::Kind::kSeq;
    out.line = lines_[pos_].number;
    const size_t base = scratch_.size();
    if (sink) {
      out.streamed = true;
      size_t entries = 0;
      for (size_t i = pos_; i < lines_.size() && lines_[i].indent >= indent; ++i) {
        entries += lines_[i].indent == indent && IsSeqEntry(lines_[i].content);
      }
      sink->Reserve(entries);
    }
    while (pos_ < lines_.size() && lines_[pos_].indent == indent && IsSeqEntry(lines_[pos_].content)) {
      Line& line = lines_[pos_];
      size_t skip = line.content.find_first_not_of(' ', 1);
      if (skip == std::string_view::npos) return false;  // "-" alone: nested block, rare
      std::string_view rest = line.content.substr(skip);
      YamlNode item;
      std::string_view key, after;
      if (IsSeqEntry(rest)) return false;  // "- - x"
      if (SplitKey(rest, key, after)) {
        // "- key: value": a mapping whose keys are aligned with this first key.
        line.indent += static_cast<int>(skip);
        line.content = rest;
        if (!ParseMapping(line.indent, item)) return false;
      } else {
        if (rest[0] == '#' || !ReadInlineValue(rest, line.number, item)) return false;
        ++pos_;
        if (pos_ < lines_.size() && lines_[pos_].indent > indent) return false;
      }
      if (sink) {
        sink->Add(item);
      } else {
        scratch_.push_back(std::move(item));
      }
    }
    TakeChildren(base, out);
    return pos_ >= lines_.size() || lines_[pos_].indent <= indent;
  }

  std::string_view text_;
  ItemSink* sink_;
  std::vector<Line> lines_;
  std::vector<YamlNode> scratch_;
  size_t pos_ = 0;
};

// ----------------------------- yaml-cpp front end ---------------------------------

// Builds a YamlNode from yaml-cpp's events. Aliases are expanded by copying, with a
// budget so that an alias bomb ("billion laughs") fails instead of exhausting memory.
class TreeBuilder : public YAML::EventHandler {
 public:
  static constexpr size_t kMaxAliasNodes = 1'000'000;

  std::optional<YamlNode> root;

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    YamlNode n;
    n.line = mark.line + 1;
    n.plain = true;
    Add(std::move(n), anchor, 1);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {  // yaml-cpp reports unknown aliases itself; be safe
      throw YAML::ParserException(mark, "unknown alias");
    }
    alias_nodes_ += it->second.second;
    if (alias_nodes_ > kMaxAliasNodes) {
      throw YAML::ParserException(mark, "aliases expand to more than " + std::to_string(kMaxAliasNodes) + " nodes");
    }
    Add(YamlNode(it->second.first), 0, it->second.second);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    // Plain scalars carry the non-specific tag "?"; quoted ones "!".
    Add(MakeScalar(value, tag == "?", mark.line + 1), anchor, 1);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(YamlNode::Kind::kSeq, mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(YamlNode::Kind::kMap, mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct OpenNode {
    YamlNode node;
    YAML::anchor_t anchor;
    size_t first_node;  // nodes_ when opened, for the subtree's size
  };

  void Open(YamlNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
    OpenNode o;
    o.node.kind = kind;
    o.node.line = mark.line + 1;
    o.anchor = anchor;
    o.first_node = ++nodes_;
    stack_.push_back(std::move(o));
  }

  void Close() {
    OpenNode o = std::move(stack_.back());
    stack_.pop_back();
    Place(std::move(o.node), o.anchor, nodes_ - o.first_node + 1);
  }

  void Add(YamlNode n, YAML::anchor_t anchor, size_t size) {
    nodes_ += size;
    Place(std::move(n), anchor, size);
  }

  void Place(YamlNode n, YAML::anchor_t anchor, size_t size) {
    if (anchor != 0) anchors_[anchor] = {n, size};
    if (stack_.empty()) {
      root = std::move(n);
      return;
    }
    YamlNode& parent = stack_.back().node;
    // yaml-cpp marks an empty value ("key:") at the next token; the key's line is
    // where the user looks.
    if (parent.kind == YamlNode::Kind::kMap && parent.items.size() % 2 == 1 && n.kind == YamlNode::Kind::kNull) {
      n.line = parent.items.back().line;
    }
    parent.items.push_back(std::move(n));
  }

  std::vector<OpenNode> stack_;
  std::unordered_map<YAML::anchor_t, std::pair<YamlNode, size_t>> anchors_;
  size_t nodes_ = 0;        // in the tree so far, to size anchored subtrees
  size_t alias_nodes_ = 0;  // added by alias expansion
};

std::string Prefix(std::string_view source, int line) {
  std::string out(source);
  out += ':';
  out += std::to_string(line);
  out += ": ";
  return out;
}

StatusOr<YamlNode> ReadWithYamlCpp(std::string_view text, std::string_view source) {
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    TreeBuilder builder;
    if (!parser.HandleNextDocument(builder)) {
      YamlNode empty;
      empty.line = 1;
      return empty;
    }
    TreeBuilder rest;
    if (parser.HandleNextDocument(rest)) {
      int line = rest.root ? rest.root->line : 1;
      return InvalidArgumentError(Prefix(source, line) + "more than one YAML document");
    }
    if (!builder.root) {
      YamlNode empty;
      empty.line = 1;
      return empty;
    }
    return std::move(*builder.root);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return InvalidArgumentError(std::string(source) + ": " + e.msg);
    return InvalidArgumentError(Prefix(source, e.mark.line + 1) + e.msg);
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string(source) + ": cannot parse YAML: " + e.what());
  }
}

// ----------------------------- validation -----------------------------------------

constexpr size_t kMaxErrors = 20;
constexpr size_t kMaxTags = 50;            // EKS: at most 50 tags per resource
constexpr size_t kMaxTagKeyChars = 128;    // EKS tag key: 1..128 characters
constexpr size_t kMaxTagValueChars = 256;  // EKS tag value: 0..256 characters
constexpr long kNoIndex = -1;

// The path of a field, e.g. associations[2].tags.team. Kept in parts and only turned
// into text for an error, so valid entries cost no string building.
struct Field {
  long index = kNoIndex;  // associations[index], if any
  std::string_view key;
  std::string_view sub;  // a tag's key

  std::string ToString() const {
    std::string out;
    if (index != kNoIndex) out = "associations[" + std::to_string(index) + "]";
    if (!key.empty()) {
      if (!out.empty()) out += '.';
      out += key;
    }
    if (sub.data() != nullptr) {  // a tag key, which may be empty
      out += '.';
      out += sub;
    }
    return out.empty() ? "(document)" : out;
  }
  Field With(std::string_view tag_key) const { return Field{index, key, tag_key}; }
};

class Validator {
 public:
  explicit Validator(std::string_view source) : source_(source) {}

  void Error(int line, const Field& field, std::string_view problem) {
    ++error_count_;
    if (errors_.size() >= kMaxErrors) return;
    std::string e = Prefix(source_, line);
    e += field.ToString();
    e += ": ";
    e += problem;
    errors_.emplace_back(line, std::move(e));
  }

  bool failed() const { return error_count_ > 0; }

  // The errors in file order (entries can be checked before the keys above them).
  Status ToStatus() const {
    std::vector<std::pair<int, std::string>> sorted = errors_;
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string msg;
    for (const auto& e : sorted) {
      if (!msg.empty()) msg += '\n';
      msg += e.second;
    }
    if (error_count_ > errors_.size()) {
      msg += "\n(" + std::to_string(error_count_ - errors_.size()) + " more errors)";
    }
    return InvalidArgumentError(std::move(msg));
  }

 private:
  std::string_view source_;
  std::vector<std::pair<int, std::string>> errors_;  // (line, message)
  size_t error_count_ = 0;
};

const char* KindName(YamlNode::Kind kind) {
  switch (kind) {
    case YamlNode::Kind::kNull: return "null";
    case YamlNode::Kind::kScalar: return "a scalar";
    case YamlNode::Kind::kMap: return "a mapping";
    case YamlNode::Kind::kSeq: return "a sequence";
  }
  return "?";
}

std::string Quoted(std::string_view value) {
  constexpr size_t kMax = 80;
  std::string out = "'";
  out += value.substr(0, kMax);
  if (value.size() > kMax) out += "...";
  out += "'";
  return out;
}

// Number of Unicode characters (EKS counts characters, not bytes).
size_t CharCount(std::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

// Checks the keys of a mapping: scalar, known, not repeated. Calls
// on_key(position in `known`, value, field, key line) for each good key.
template <typename Fn>
void ForEachKey(Validator& v, YamlNode& map, long index, std::initializer_list<std::string_view> known, Fn on_key) {
  std::array<int, 8> seen_line{};  // indexed by position in `known`
  for (size_t i = 0; i + 1 < map.items.size(); i += 2) {
    const YamlNode& key = map.items[i];
    if (key.kind != YamlNode::Kind::kScalar) {
      v.Error(key.line, Field{index, {}, {}}, std::string("key must be a string, not ") + KindName(key.kind));
      continue;
    }
    Field field{index, key.scalar, {}};
    size_t k = 0;
    for (std::string_view name : known) {
      if (name == key.scalar) break;
      ++k;
    }
    if (k == known.size()) {
      std::string expected;
      for (std::string_view name : known) {
        if (!expected.empty()) expected += ", ";
        expected += name;
      }
      v.Error(key.line, field, "unknown key (expected one of: " + expected + ")");
      continue;
    }
    if (seen_line[k] != 0) {
      v.Error(key.line, field, "duplicate key (first at line " + std::to_string(seen_line[k]) + ")");
      continue;
    }
    seen_line[k] = key.line;
    on_key(k, map.items[i + 1], field, key.line);
  }
}

// A string field. Returns false (after reporting) when it is not a scalar.
bool ReadString(Validator& v, YamlNode& node, const Field& field, std::string& out) {
  if (node.kind != YamlNode::Kind::kScalar) {
    v.Error(node.line, field, std::string("must be a string, not ") + KindName(node.kind));
    return false;
  }
  out = std::move(node.scalar);
  return true;
}

// Reads a string and checks it with `validate` (one of the public validators).
void ReadValidated(Validator& v, YamlNode& node, const Field& field, std::string& out,
                   std::string (*validate)(std::string_view)) {
  if (!ReadString(v, node, field, out)) return;
  std::string problem = validate(out);
  if (!problem.empty()) v.Error(node.line, field, Quoted(out) + " " + problem);
}

void ReadTags(Validator& v, YamlNode& value, const Field& field, int key_line, Association& a) {
  if (value.kind == YamlNode::Kind::kNull) return;  // optional
  if (value.kind != YamlNode::Kind::kMap) {
    v.Error(value.line, field, std::string("must be a mapping of strings, not ") + KindName(value.kind));
    return;
  }
  size_t count = value.items.size() / 2;
  if (count > kMaxTags) {
    v.Error(key_line, field, std::to_string(count) + " tags, at most " + std::to_string(kMaxTags) + " are allowed");
  }
  for (size_t t = 0; t + 1 < value.items.size(); t += 2) {
    YamlNode& tk = value.items[t];
    YamlNode& tv = value.items[t + 1];
    if (tk.kind != YamlNode::Kind::kScalar) {
      v.Error(tk.line, field, std::string("tag key must be a string, not ") + KindName(tk.kind));
      continue;
    }
    Field tag_field = field.With(tk.scalar);
    size_t key_chars = CharCount(tk.scalar);
    if (key_chars < 1 || key_chars > kMaxTagKeyChars) {
      v.Error(tk.line, tag_field,
              "tag key must be 1 to " + std::to_string(kMaxTagKeyChars) + " characters, not " +
                  std::to_string(key_chars));
    }
    if (tv.kind != YamlNode::Kind::kScalar) {
      v.Error(tv.line, tag_field, std::string("tag value must be a string (use '' for empty), not ") + KindName(tv.kind));
      continue;
    }
    size_t value_chars = CharCount(tv.scalar);
    if (value_chars > kMaxTagValueChars) {
      v.Error(tv.line, tag_field,
              "tag value must be at most " + std::to_string(kMaxTagValueChars) + " characters, not " +
                  std::to_string(value_chars));
    }
    if (!a.tags.emplace(tk.scalar, std::move(tv.scalar)).second) v.Error(tk.line, tag_field, "duplicate tag key");
  }
}

void ValidateAssociation(Validator& v, YamlNode& item, long index, Association& a) {
  if (item.kind != YamlNode::Kind::kMap) {
    v.Error(item.line, Field{index, {}, {}}, std::string("must be a mapping, not ") + KindName(item.kind));
    return;
  }
  enum : size_t { kNamespace, kServiceAccount, kRoleArn, kTargetRoleArn, kDisableSessionTags, kPolicy, kTags };
  bool have_namespace = false, have_service_account = false, have_role = false;
  int policy_line = 0;
  ForEachKey(v, item, index,
             {"namespace", "serviceAccount", "roleArn", "targetRoleArn", "disableSessionTags", "policy", "tags"},
             [&](size_t key, YamlNode& value, const Field& field, int key_line) {
               switch (key) {
                 case kNamespace:
                   have_namespace = true;
                   ReadValidated(v, value, field, a.namespace_name, &ValidateDns1123Label);
                   break;
                 case kServiceAccount:
                   have_service_account = true;
                   ReadValidated(v, value, field, a.service_account, &ValidateDns1123Subdomain);
                   break;
                 case kRoleArn:
                   have_role = true;
                   ReadValidated(v, value, field, a.role_arn, &ValidateRoleArn);
                   break;
                 case kTargetRoleArn:
                   if (value.kind == YamlNode::Kind::kNull) break;  // optional
                   ReadValidated(v, value, field, a.target_role_arn.emplace(), &ValidateRoleArn);
                   break;
                 case kDisableSessionTags: {
                   if (value.kind == YamlNode::Kind::kNull) break;  // optional, default false
                   const std::string& s = value.scalar;
                   bool scalar = value.kind == YamlNode::Kind::kScalar;
                   // YAML 1.2 core schema booleans; only unquoted ones are booleans.
                   if (scalar && value.plain && (s == "true" || s == "True" || s == "TRUE")) {
                     a.disable_session_tags = true;
                   } else if (scalar && value.plain && (s == "false" || s == "False" || s == "FALSE")) {
                     a.disable_session_tags = false;
                   } else if (scalar) {
                     v.Error(value.line, field,
                             "must be true or false, not " + Quoted(s) + (value.plain ? "" : " (a quoted string)"));
                   } else {
                     v.Error(value.line, field, std::string("must be true or false, not ") + KindName(value.kind));
                   }
                   break;
                 }
                 case kPolicy: {
                   if (value.kind == YamlNode::Kind::kNull) break;  // optional
                   std::string policy;
                   if (!ReadString(v, value, field, policy)) break;
                   policy_line = value.line;
                   rapidjson::Document doc;
                   Status parsed = ParseJsonStrict(policy, doc);
                   if (!parsed.ok()) {
                     v.Error(value.line, field, "not valid JSON: " + parsed.message());
                   } else if (!doc.IsObject()) {
                     v.Error(value.line, field, "must be a JSON object (an IAM policy document)");
                   }
                   a.policy = std::move(policy);
                   break;
                 }
                 case kTags:
                   ReadTags(v, value, field, key_line, a);
                   break;
                 default:
                   break;
               }
             });
  if (!have_namespace) v.Error(item.line, Field{index, "namespace", {}}, "is required");
  if (!have_service_account) v.Error(item.line, Field{index, "serviceAccount", {}}, "is required");
  if (!have_role) v.Error(item.line, Field{index, "roleArn", {}}, "is required");
  if (a.policy && !a.disable_session_tags) {
    v.Error(policy_line, Field{index, "policy", {}}, "requires disableSessionTags: true (as EKS requires)");
  }
}

// Validates a whole document into an AssociationIndex. Association entries arrive
// either through Add() (streamed by the fast reader) or from the tree in Finish().
class DocumentValidator : public ItemSink {
 public:
  explicit DocumentValidator(std::string_view source) : v_(source) {}

  void Reserve(size_t items) override {
    associations_.reserve(associations_.size() + items);
    lines_.reserve(lines_.size() + items);
  }

  void Add(YamlNode& item) override {
    lines_.push_back(item.line);
    auto index = static_cast<long>(associations_.size());
    ValidateAssociation(v_, item, index, associations_.emplace_back());
    item = YamlNode{};  // free as we go: the tree is as big as the result
  }

  StatusOr<AssociationIndex> Finish(YamlNode& root) {
    std::string cluster_name;
    if (root.kind == YamlNode::Kind::kNull) return AssociationIndex();  // an empty file
    if (root.kind != YamlNode::Kind::kMap) {
      v_.Error(root.line, Field{},
               std::string("must be a mapping with clusterName and associations, not ") + KindName(root.kind));
      return v_.ToStatus();
    }
    ForEachKey(v_, root, kNoIndex, {"clusterName", "associations"},
               [&](size_t key, YamlNode& value, const Field& field, int) {
                 if (key == 0) {
                   if (value.kind != YamlNode::Kind::kNull) ReadString(v_, value, field, cluster_name);
                   return;
                 }
                 if (value.kind == YamlNode::Kind::kNull || value.streamed) return;
                 if (value.kind != YamlNode::Kind::kSeq) {
                   v_.Error(value.line, field, std::string("must be a sequence, not ") + KindName(value.kind));
                   return;
                 }
                 Reserve(value.items.size());
                 for (YamlNode& item : value.items) Add(item);
               });
    if (v_.failed()) return v_.ToStatus();
    CheckDuplicates();
    if (v_.failed()) return v_.ToStatus();
    return AssociationIndex(std::move(cluster_name), std::move(associations_));
  }

 private:
  // Sorting 64-bit hashes finds equal (namespace, serviceAccount) pairs without a
  // second hash map of strings (the index builds one; building two cost ~30 ms per
  // 100k entries).
  void CheckDuplicates() {
    std::vector<std::pair<size_t, size_t>> hashes;  // (hash, index)
    hashes.reserve(associations_.size());
    std::hash<std::string_view> hash;
    for (size_t i = 0; i < associations_.size(); ++i) {
      const Association& a = associations_[i];
      size_t h = hash(a.namespace_name) ^ (hash(a.service_account) * 0x9E3779B97F4A7C15ULL);
      hashes.emplace_back(h, i);
    }
    std::sort(hashes.begin(), hashes.end());
    for (size_t start = 0; start < hashes.size();) {
      size_t end = start + 1;
      while (end < hashes.size() && hashes[end].first == hashes[start].first) ++end;
      for (size_t j = start + 1; j < end; ++j) {
        const Association& dup = associations_[hashes[j].second];
        for (size_t k = start; k < j; ++k) {
          size_t first = hashes[k].second;
          const Association& a = associations_[first];
          if (a.namespace_name != dup.namespace_name || a.service_account != dup.service_account) continue;
          size_t i = hashes[j].second;
          v_.Error(lines_[i], Field{static_cast<long>(i), {}, {}},
                   "duplicate association for namespace " + Quoted(dup.namespace_name) + " and serviceAccount " +
                       Quoted(dup.service_account) + " (line " + std::to_string(lines_[i]) + "; first at line " +
                       std::to_string(lines_[first]) + ", associations[" + std::to_string(first) + "])");
          break;
        }
      }
      start = end;
    }
  }

  Validator v_;
  std::vector<Association> associations_;
  std::vector<int> lines_;  // of each association, for duplicate messages
};

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// IAM names and paths: [\w+=,.@-].
bool IsIamChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '+' ||
         c == '=' || c == ',' || c == '.' || c == '@' || c == '-';
}

void AppendYamlDump(const YamlNode& n, std::string& out);

}  // namespace

// --------------------------------- public API -------------------------------------

AssociationIndex::AssociationIndex(std::string cluster_name, std::vector<Association> associations)
    : cluster_name_(std::move(cluster_name)), associations_(std::move(associations)) {
  by_key_.reserve(associations_.size());
  std::string key;
  for (size_t i = 0; i < associations_.size(); ++i) {
    key = associations_[i].namespace_name;
    key += '/';
    key += associations_[i].service_account;
    by_key_.emplace(key, i);  // the first one wins (ParseAssociations rejects duplicates)
  }
}

const Association* AssociationIndex::Find(std::string_view namespace_name, std::string_view service_account) const {
  // One buffer per thread, so the request path does not allocate once it is warm.
  thread_local std::string key;
  key.assign(namespace_name);
  key += '/';
  key += service_account;
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &associations_[it->second];
}

StatusOr<AssociationIndex> ParseAssociations(std::string_view yaml_text, std::string_view source_name) {
  {
    DocumentValidator validator(source_name);
    std::optional<YamlNode> root = FastYamlReader(yaml_text, &validator).Read();
    if (root) return validator.Finish(*root);
  }
  // Outside the fast reader's subset (it may have streamed some entries already, so
  // start over with a fresh validator).
  StatusOr<YamlNode> root = ReadWithYamlCpp(yaml_text, source_name);
  if (!root.ok()) return root.status();
  DocumentValidator validator(source_name);
  return validator.Finish(*root);
}

StatusOr<AssociationIndex> LoadAssociationsFile(const std::string& path) {
  constexpr size_t kMaxFileBytes = size_t{256} << 20;
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    int err = errno;
    if (err == ENOENT) return NotFoundError(path + ": cannot open: " + std::strerror(err));
    return UnavailableError(path + ": cannot open: " + std::strerror(err));
  }
  // Size the buffer once (growing a 10 MB string by doubling costs page faults).
  std::string text;
  struct stat st {};
  if (::fstat(::fileno(file.get()), &st) == 0 && st.st_size > 0) {
    text.reserve(std::min(static_cast<size_t>(st.st_size), kMaxFileBytes) + 1);
  }
  char buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) {
    text.append(buffer, n);
    if (text.size() > kMaxFileBytes) {
      return ResourceExhaustedError(path + ": larger than " + std::to_string(kMaxFileBytes) + " bytes");
    }
  }
  if (std::ferror(file.get())) return UnavailableError(path + ": read error");
  return ParseAssociations(text, path);
}

std::string ValidateDns1123Label(std::string_view value) {
  if (value.empty()) return "must not be empty";
  if (value.size() > 63) return "must be at most 63 characters (a DNS-1123 label)";
  for (char c : value) {
    if (!IsLowerAlnum(c) && c != '-') {
      return "must consist of lower case alphanumeric characters or '-' (a DNS-1123 label)";
    }
  }
  if (!IsLowerAlnum(value.front()) || !IsLowerAlnum(value.back())) {
    return "must start and end with a lower case alphanumeric character (a DNS-1123 label)";
  }
  return "";
}

std::string ValidateDns1123Subdomain(std::string_view value) {
  if (value.empty()) return "must not be empty";
  if (value.size() > 253) return "must be at most 253 characters (a DNS-1123 subdomain)";
  size_t start = 0;
  while (true) {
    size_t dot = value.find('.', start);
    std::string_view label = value.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return "must not have an empty label (a DNS-1123 subdomain)";
    for (char c : label) {
      if (!IsLowerAlnum(c) && c != '-') {
        return "must consist of lower case alphanumeric characters, '-' or '.' (a DNS-1123 subdomain)";
      }
    }
    if (!IsLowerAlnum(label.front()) || !IsLowerAlnum(label.back())) {
      return "each '.'-separated part must start and end with a lower case alphanumeric character (a DNS-1123 "
             "subdomain)";
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return "";
}

std::string ValidateRoleArn(std::string_view value) {
  constexpr std::string_view kExpected = " (expected arn:<aws|aws-cn|aws-us-gov>:iam::<12-digit account>:role/<name>)";
  if (value.size() > 2048) return "is longer than 2048 characters";
  // arn:partition:service:region:account:resource
  std::array<std::string_view, 6> parts;
  size_t start = 0;
  for (size_t i = 0; i < 5; ++i) {
    size_t colon = value.find(':', start);
    if (colon == std::string_view::npos) return "is not an ARN" + std::string(kExpected);
    parts[i] = value.substr(start, colon - start);
    start = colon + 1;
  }
  parts[5] = value.substr(start);
  if (parts[0] != "arn") return "is not an ARN" + std::string(kExpected);
  if (parts[1] != "aws" && parts[1] != "aws-cn" && parts[1] != "aws-us-gov") {
    return "has partition " + Quoted(parts[1]) + "; it must be aws, aws-cn or aws-us-gov";
  }
  if (parts[2] != "iam") return "has service " + Quoted(parts[2]) + "; a role ARN's service is iam";
  if (!parts[3].empty()) return "has region " + Quoted(parts[3]) + "; IAM ARNs have no region";
  bool digits = parts[4].size() == 12;
  for (char c : parts[4]) digits = digits && c >= '0' && c <= '9';
  if (!digits) return "has account " + Quoted(parts[4]) + "; it must be 12 digits";
  std::string_view resource = parts[5];
  if (!resource.starts_with("role/")) {
    size_t slash = resource.find('/');
    return "is not a role ARN: the resource type is " + Quoted(resource.substr(0, slash)) + ", expected role";
  }
  std::string_view path_and_name = resource.substr(5);
  size_t last_slash = path_and_name.rfind('/');
  std::string_view name = last_slash == std::string_view::npos ? path_and_name : path_and_name.substr(last_slash + 1);
  if (name.empty() || name.size() > 64) return "must end in a role name of 1 to 64 characters";
  for (char c : name) {
    if (!IsIamChar(c)) return "has a role name with " + Quoted(std::string_view(&c, 1)) + "; allowed: A-Z a-z 0-9 _+=,.@-";
  }
  if (last_slash != std::string_view::npos) {
    std::string_view path = path_and_name.substr(0, last_slash);
    if (path.size() + 2 > 512) return "has a role path longer than 512 characters";
    size_t s = 0;
    while (true) {
      size_t slash = path.find('/', s);
      std::string_view segment = path.substr(s, slash == std::string_view::npos ? std::string_view::npos : slash - s);
      if (segment.empty()) return "has an empty segment in the role path";
      for (char c : segment) {
        if (!IsIamChar(c)) return "has a role path with " + Quoted(std::string_view(&c, 1)) + "; allowed: A-Z a-z 0-9 _+=,.@-";
      }
      if (slash == std::string_view::npos) break;
      s = slash + 1;
    }
  }
  return "";
}

// --------------------------------- store ------------------------------------------

AssociationStore::AssociationStore(AssociationIndex fixed) {
  current_.store(std::make_shared<const AssociationIndex>(std::move(fixed)));
}

AssociationStore::AssociationStore(std::string path, ReloadCallback on_reload)
    : path_(std::move(path)), on_reload_(std::move(on_reload)) {}

AssociationStore::~AssociationStore() { Stop(); }

AssociationStore::FileIdentity AssociationStore::Identify() const {
  FileIdentity id;
  struct stat st {};
  // stat, not lstat: follow `associations.yaml -> ..data/associations.yaml` and the
  // `..data -> ..<timestamp>` symlink a ConfigMap update swaps.
  if (::stat(path_.c_str(), &st) != 0) return id;
  id.exists = true;
  id.device = static_cast<unsigned long long>(st.st_dev);
  id.inode = static_cast<unsigned long long>(st.st_ino);
  id.size = static_cast<unsigned long long>(st.st_size);
  id.mtime_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1'000'000'000LL + st.st_mtim.tv_nsec;
  return id;
}

Status AssociationStore::Load() {
  if (path_.empty()) return Status::Ok();  // the fixed snapshot
  std::lock_guard<std::mutex> lock(reload_mu_);
  // Identify before reading: a change after this point is then seen by the next check.
  FileIdentity id = Identify();
  StatusOr<AssociationIndex> index = LoadAssociationsFile(path_);
  if (!index.ok()) return index.status();
  current_.store(std::make_shared<const AssociationIndex>(std::move(index).value()));
  last_identity_ = id;
  last_failed_identity_.reset();
  return Status::Ok();
}

AssociationStore::ReloadResult AssociationStore::ReloadIfChanged() {
  if (path_.empty()) return ReloadResult::kUnchanged;
  std::lock_guard<std::mutex> lock(reload_mu_);
  FileIdentity id = Identify();
  if (id == last_identity_ || (last_failed_identity_ && id == *last_failed_identity_)) {
    return ReloadResult::kUnchanged;
  }
  auto current = current_.load();
  size_t current_size = current ? current->size() : 0;
  Status status;
  if (!id.exists) {
    status = NotFoundError(path_ + ": file not found; keeping the last good associations");
  } else {
    StatusOr<AssociationIndex> index = LoadAssociationsFile(path_);
    if (index.ok()) {
      auto next = std::make_shared<const AssociationIndex>(std::move(index).value());
      size_t n = next->size();
      current_.store(std::move(next));
      last_identity_ = id;
      last_failed_identity_.reset();
      if (on_reload_) on_reload_(ReloadResult::kReloaded, Status::Ok(), n);
      return ReloadResult::kReloaded;
    }
    status = index.status();
  }
  last_failed_identity_ = id;
  if (on_reload_) on_reload_(ReloadResult::kFailed, status, current_size);
  return ReloadResult::kFailed;
}

void AssociationStore::Start(std::chrono::milliseconds interval) {
  watcher_.Start(interval, [this] { ReloadIfChanged(); });
}

void AssociationStore::Stop() { watcher_.Stop(); }

// ------------------------------- test seam ----------------------------------------

namespace {

void AppendYamlDump(const YamlNode& n, std::string& out) {
  out += '@';
  out += std::to_string(n.line);
  switch (n.kind) {
    case YamlNode::Kind::kNull: out += "~"; break;
    case YamlNode::Kind::kScalar:
      out += n.plain ? "=" : "\"=";
      out += n.scalar;
      out += ';';
      break;
    case YamlNode::Kind::kSeq:
      out += '[';
      for (const auto& item : n.items) AppendYamlDump(item, out);
      out += ']';
      break;
    case YamlNode::Kind::kMap:
      out += '{';
      for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
        AppendYamlDump(n.items[i], out);
        out += ':';
        AppendYamlDump(n.items[i + 1], out);
      }
      out += '}';
      break;
  }
}

}  // namespace

namespace internal {

// For tests only (declared in associations_test.cc): the tree each front end reads,
// so a test can prove the fast reader and yaml-cpp agree. "FALLBACK" when the fast
// reader declines the document; "ERROR: ..." when yaml-cpp rejects it.
std::string DumpYamlForTest(std::string_view text, bool fast) {
  if (fast) {
    std::optional<YamlNode> node = FastYamlReader(text).Read();
    if (!node) return "FALLBACK";
    std::string out;
    AppendYamlDump(*node, out);
    return out;
  }
  StatusOr<YamlNode> node = ReadWithYamlCpp(text, "test");
  if (!node.ok()) return "ERROR: " + node.status().message();
  std::string out;
  AppendYamlDump(*node, out);
  return out;
}

}  // namespace internal
}  // namespace podidentity
