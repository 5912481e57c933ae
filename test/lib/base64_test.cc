// Base64: RFC 4648 test vectors for both alphabets, and the strictness that keeps one
// token to one encoding (padding, alphabet, trailing bits, impossible lengths).
#include "podidentity/base64.h"

#include <catch2/catch.hpp>

namespace b64 = podidentity::base64;

TEST_CASE("base64 encodes the RFC 4648 vectors", "[base64]") {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""},         {"f", "Zg=="},        {"fo", "Zm8="},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    CHECK(b64::Encode(plain) == encoded);
    std::string unpadded = encoded;
    while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
    CHECK(b64::EncodeUrl(plain) == unpadded);
    auto decoded = b64::Decode(encoded);
    REQUIRE(decoded.ok());
    CHECK(*decoded == plain);
    auto url_decoded = b64::DecodeUrl(unpadded);
    REQUIRE(url_decoded.ok());
    CHECK(*url_decoded == plain);
  }
}

TEST_CASE("base64url uses - and _ where standard uses + and /", "[base64]") {
  const std::string bytes("\xfb\xff\xbf", 3);
  CHECK(b64::Encode(bytes) == "+/+/");
  CHECK(b64::EncodeUrl(bytes) == "-_-_");
  CHECK(*b64::DecodeUrl("-_-_") == bytes);
  CHECK_FALSE(b64::DecodeUrl("+/+/").ok());
  CHECK_FALSE(b64::Decode("-_-_").ok());
}

TEST_CASE("base64 round-trips every byte value", "[base64]") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 37) {
    const std::string part = all.substr(0, n);
    CHECK(*b64::Decode(b64::Encode(part)) == part);
    CHECK(*b64::DecodeUrl(b64::EncodeUrl(part)) == part);
  }
}

TEST_CASE("base64url decoding is strict", "[base64]") {
  CHECK_FALSE(b64::DecodeUrl("Zg==").ok());   // padding
  CHECK_FALSE(b64::DecodeUrl("Zm8=").ok());
  CHECK_FALSE(b64::DecodeUrl("Z").ok());      // 4n+1 characters cannot be base64
  CHECK_FALSE(b64::DecodeUrl("Zm9v Yg").ok());  // whitespace
  CHECK_FALSE(b64::DecodeUrl("Zm9v\nYg").ok());
  CHECK_FALSE(b64::DecodeUrl("Zm.v").ok());
  CHECK_FALSE(b64::DecodeUrl(std::string("Zm\0v", 4)).ok());
  CHECK_FALSE(b64::DecodeUrl("Zh").ok());     // "f" is Zg; Zh has non-zero trailing bits
  CHECK_FALSE(b64::DecodeUrl("Zm9=").ok());
  CHECK(b64::DecodeUrl("Zg").ok());
}

TEST_CASE("standard base64 decoding is strict about padding", "[base64]") {
  CHECK_FALSE(b64::Decode("Zg").ok());      // missing padding
  CHECK_FALSE(b64::Decode("Zg=").ok());
  CHECK_FALSE(b64::Decode("Z===").ok());
  CHECK_FALSE(b64::Decode("Zg=a").ok());    // padding in the middle
  CHECK_FALSE(b64::Decode("Zm=v").ok());
  CHECK_FALSE(b64::Decode("Zh==").ok());    // non-zero trailing bits
  CHECK_FALSE(b64::Decode("====").ok());
  CHECK(b64::Decode("").ok());
}
