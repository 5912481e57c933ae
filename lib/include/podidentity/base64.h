// Base64 (RFC 4648): the standard alphabet with padding, and the URL-safe alphabet
// without padding that JWS compact serialisation uses. Decoding is strict: any
// character outside the alphabet, wrong padding or non-zero trailing bits is an
// error, so one token has exactly one encoding (no malleability).
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "podidentity/status.h"

namespace podidentity::base64 {

// Standard alphabet (+ /), padded with '=' to a multiple of 4.
std::string Encode(std::string_view bytes);
// URL-safe alphabet (- _), no padding (RFC 7515 section 2 "base64url").
std::string EncodeUrl(std::string_view bytes);

// Standard alphabet; the length must be a multiple of 4 with correct '=' padding.
// No whitespace is accepted.
StatusOr<std::string> Decode(std::string_view text);
// URL-safe alphabet without padding: '=' is rejected, as is a length of 4n+1.
StatusOr<std::string> DecodeUrl(std::string_view text);

}  // namespace podidentity::base64
