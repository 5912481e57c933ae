#include "podidentity/base64.h"

#include <array>
#include <cstdint>

namespace podidentity::base64 {
namespace {

constexpr std::string_view kStandardAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrlAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr int8_t kInvalid = -1;

// Reverse lookup table for one alphabet, built at compile time.
constexpr std::array<int8_t, 256> ReverseTable(std::string_view alphabet) {
  std::array<int8_t, 256> table{};
  for (auto& entry : table) entry = kInvalid;
  for (size_t i = 0; i < alphabet.size(); ++i) {
    table[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
  }
  return table;
}

constexpr std::array<int8_t, 256> kStandardReverse = ReverseTable(kStandardAlphabet);
constexpr std::array<int8_t, 256> kUrlReverse = ReverseTable(kUrlAlphabet);

std::string EncodeWith(std::string_view bytes, std::string_view alphabet, bool pad) {
  const size_t full = bytes.size() / 3;
  const size_t rest = bytes.size() % 3;
  const size_t length = full * 4 + (rest == 0 ? 0 : pad ? 4 : rest + 1);
  std::string out(length, '\0');  // sized once, then written through a pointer
  char* p = out.data();
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  for (size_t k = 0; k < full; ++k, in += 3) {
    const uint32_t v = (uint32_t{in[0]} << 16) | (uint32_t{in[1]} << 8) | uint32_t{in[2]};
    *p++ = alphabet[(v >> 18) & 63];
    *p++ = alphabet[(v >> 12) & 63];
    *p++ = alphabet[(v >> 6) & 63];
    *p++ = alphabet[v & 63];
  }
  if (rest != 0) {
    const uint32_t v = (uint32_t{in[0]} << 16) | (rest == 2 ? uint32_t{in[1]} << 8 : 0);
    *p++ = alphabet[(v >> 18) & 63];
    *p++ = alphabet[(v >> 12) & 63];
    if (rest == 2) *p++ = alphabet[(v >> 6) & 63];
    if (pad) {
      *p++ = '=';
      if (rest == 1) *p++ = '=';
    }
  }
  return out;
}

// Decodes unpadded text (length % 4 != 1) with the given table.
StatusOr<std::string> DecodeUnpadded(std::string_view text, const std::array<int8_t, 256>& table) {
  if (text.size() % 4 == 1) return InvalidArgumentError("base64: impossible length");
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const int8_t v = table[static_cast<unsigned char>(text[i])];
    if (v == kInvalid) return InvalidArgumentError("base64: invalid character at offset " + std::to_string(i));
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be zero; otherwise two encodings would decode to the same bytes.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return InvalidArgumentError("base64: non-zero trailing bits");
  }
  return out;
}

}  // namespace

std::string Encode(std::string_view bytes) { return EncodeWith(bytes, kStandardAlphabet, true); }
std::string EncodeUrl(std::string_view bytes) { return EncodeWith(bytes, kUrlAlphabet, false); }

StatusOr<std::string> Decode(std::string_view text) {
  if (text.size() % 4 != 0) return InvalidArgumentError("base64: length is not a multiple of 4");
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') {
    padding = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  }
  // Padding only at the very end: DecodeUnpadded rejects any '=' left in the body.
  return DecodeUnpadded(text.substr(0, text.size() - padding), kStandardReverse);
}

StatusOr<std::string> DecodeUrl(std::string_view text) { return DecodeUnpadded(text, kUrlReverse); }

}  // namespace podidentity::base64
