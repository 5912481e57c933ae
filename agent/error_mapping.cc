#include "error_mapping.h"

#include "podidentity/json_util.h"

namespace podidentity::agent {

std::string HttpError::Body() const {
  std::string body = "{\"code\":";
  AppendJsonString(body, code);
  body += ",\"message\":";
  AppendJsonString(body, message);
  body += '}';
  return body;
}

HttpError MapExchangeError(const ExchangeError& error) {
  const std::string& message = error.status.message();
  switch (error.status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kUnauthenticated:
      // A token we rejected ("token_expired", ...) or one the broker rejected.
      return {400, error.reason.empty() ? "InvalidToken" : error.reason, message};
    case StatusCode::kPermissionDenied:
      return {400, "AccessDenied", message};
    case StatusCode::kNotFound:
      return {404, error.reason == "no_association" ? "NoAssociation" : error.reason, message};
    case StatusCode::kResourceExhausted:
      return {429, error.reason.empty() ? "Throttling" : error.reason, message};
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
      return {503, error.reason.empty() ? "ServiceUnavailable" : error.reason, message};
    case StatusCode::kOk:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kInternal:
      break;
  }
  return {500, error.reason.empty() ? "InternalError" : error.reason, message};
}

HttpError MissingTokenError() {
  return {400, "MissingToken", "the Authorization header must hold the pod's projected service account token"};
}

HttpError WrongHostError(std::string_view host) {
  return {403, "AccessDenied",
          "called through an address the agent does not serve (Host: " + std::string(host.substr(0, 256)) +
              "); use the address in AWS_CONTAINER_CREDENTIALS_FULL_URI"};
}

HttpError ThrottledError() { return {429, "Throttling", "too many requests from this client; retry later"}; }

HttpError NotFoundPathError(std::string_view path) {
  return {404, "NotFound", "no such path: " + std::string(path.substr(0, 256)) + " (use GET /v1/credentials)"};
}

HttpError MethodNotAllowedError(std::string_view method) {
  return {405, "MethodNotAllowed", "method " + std::string(method.substr(0, 16)) + " not allowed; use GET"};
}

}  // namespace podidentity::agent
