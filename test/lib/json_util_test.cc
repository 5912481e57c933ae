#include "podidentity/json_util.h"

#include <catch2/catch.hpp>
#include <random>
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

TEST_CASE("JsonQuote: runs, DEL, invalid bytes between valid text, round trip through a parser") {
  CHECK(JsonQuote("a\x7f" "b") == R"("a\u007fb")");
  CHECK(JsonQuote(std::string("ok\0ok", 5)) == R"("ok\u0000ok")");
  CHECK(JsonQuote("caf\xc3\xa9 \xff caf\xc3\xa9") == "\"caf\xc3\xa9 \\ufffd caf\xc3\xa9\"");
  CHECK(JsonQuote("\xe2\x82") == R"("\ufffd\ufffd")");  // truncated 3-byte sequence at the end

  // Random byte strings: the output is always strict JSON, and valid UTF-8 input comes
  // back unchanged.
  std::mt19937 rng(20261125);
  const std::string alphabet = std::string("ab\"\\/\n\t\x01\x7f") + "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff\xc0";
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const size_t length = rng() % 40;
    for (size_t i = 0; i < length; ++i) text += alphabet[rng() % alphabet.size()];
    rapidjson::Document doc;
    const std::string quoted = JsonQuote(text);
    INFO("quoted: " << quoted);
    REQUIRE(ParseJsonStrict(quoted, doc).ok());
    REQUIRE(doc.IsString());
    // Only invalid bytes are replaced (U+FFFD does not occur in the alphabet): without a
    // replacement the text survived byte for byte.
    const std::string decoded(doc.GetString(), doc.GetStringLength());
    if (decoded.find("\xef\xbf\xbd") == std::string::npos) {
      CHECK(decoded == text);
    } else {
      CHECK(decoded != text);
    }
  }
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
