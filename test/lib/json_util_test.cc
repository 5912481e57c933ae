#include "podidentity/json_util.h"

#include <catch2/catch.hpp>
#include <string>

using podidentity::JsonQuote;
using podidentity::ParseJsonStrict;

TEST_CASE("JsonQuote escapes control characters, quotes and invalid UTF-8") {
  CHECK(JsonQuote("a\"b\\c") == R"("a\"b\\c")");
  CHECK(JsonQuote("line\nnext\t\x01") == R"("line\nnext\t\u0001")");
  CHECK(JsonQuote("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
  CHECK(JsonQuote("bad\xff") == R"("bad\ufffd")");
  CHECK(JsonQuote("\xc0\xaf") == R"("\ufffd\ufffd")");  // overlong '/'
}

TEST_CASE("ParseJsonStrict rejects duplicates, depth bombs, garbage and trailing data") {
  rapidjson::Document doc;
  CHECK(ParseJsonStrict(R"({"a":{"b":1}})", doc).ok());

  auto dup = ParseJsonStrict(R"({"a":{"b/c":1,"b/c":2}})", doc);
  CHECK_FALSE(dup.ok());
  CHECK(dup.message() == "duplicate key at /a/b~1c");

  std::string deep(200, '[');
  deep += std::string(200, ']');
  auto too_deep = ParseJsonStrict(deep, doc, 64);
  CHECK_FALSE(too_deep.ok());
  CHECK(too_deep.message().find("deeper than 64") != std::string::npos);

  CHECK_FALSE(ParseJsonStrict("{", doc).ok());
  CHECK_FALSE(ParseJsonStrict("{} {}", doc).ok());
  CHECK_FALSE(ParseJsonStrict("\"\xff\"", doc).ok());

  // Escapes that decode to a lone surrogate pass RapidJSON's byte validation; we reject them.
  auto lone = ParseJsonStrict(R"({"request":{"uid":"a\udc00b"}})", doc);
  CHECK_FALSE(lone.ok());
  CHECK(lone.message().find("/request/uid") != std::string::npos);
  CHECK_FALSE(ParseJsonStrict(R"({"k\ud800":1})", doc).ok());
  CHECK_FALSE(ParseJsonStrict(R"(["\ud800"])", doc).ok());
  // A proper pair and the NUL escape are fine.
  CHECK(ParseJsonStrict(R"(["\ud83d\ude00","a\u0000b"])", doc).ok());
  CHECK(doc[1].GetStringLength() == 3);
}
