// The one place where agent errors become HTTP answers. Status codes follow EKS's
// pod identity agent: 400 for a missing, malformed, invalid or expired token (and for
// the broker's AccessDenied / InvalidToken / ExpiredToken, which EKS Auth answers with
// 400 and EKS's agent passes through), 403 for a request to a host the agent does not
// serve, 404 when the service account has no association, 429 when throttled, 500 for
// broker failures and 503 when the broker is unreachable. The body is always
// {"code": ..., "message": ...}; it never holds a token or a credential.
#pragma once

#include <string>

#include "podidentity/exchange.h"

namespace podidentity::agent {

struct HttpError {
  int status = 500;
  // Stable snake_case cause: the exchange's reason ("token_expired", "no_association",
  // "broker_access_denied", ...) or the server's ("missing_token", "wrong_host", ...).
  std::string code;
  std::string message;  // what was wrong, for the pod's SDK error message
  std::string Body() const;  // {"code":...,"message":...}
};

HttpError MapExchangeError(const ExchangeError& error);

// Errors the server raises before the exchange runs.
HttpError MissingTokenError();
HttpError WrongHostError(std::string_view host);
HttpError ThrottledError();
HttpError NotFoundPathError(std::string_view path);
HttpError MethodNotAllowedError(std::string_view method);

}  // namespace podidentity::agent
