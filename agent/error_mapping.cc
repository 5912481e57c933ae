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

namespace {

std::string Reason(const ExchangeError& error, std::string_view fallback) {
  return error.reason.empty() ? std::string(fallback) : error.reason;
}

}  // namespace

HttpError MapExchangeError(const ExchangeError& error) {
  const std::string& message = error.status.message();
  switch (error.status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kUnauthenticated:
      // A token we rejected ("token_expired", ...) or one the broker rejected.
      return {400, Reason(error, "invalid_token"), message};
    case StatusCode::kPermissionDenied:
      return {400, Reason(error, "access_denied"), message};
    case StatusCode::kNotFound:
      return {404, Reason(error, "not_found"), message};
    case StatusCode::kResourceExhausted:
      return {429, Reason(error, "throttled"), message};
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
      return {503, Reason(error, "unavailable"), message};
    case StatusCode::kOk:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kInternal:
      break;
  }
  return {500, Reason(error, "internal_error"), message};
}

HttpError MissingTokenError() {
  return {400, "missing_token", "the Authorization header must hold the pod's projected service account token"};
}

HttpError WrongHostError(std::string_view host) {
  return {403, "wrong_host",
          "called through an address the agent does not serve (Host: " + std::string(host.substr(0, 256)) +
              "); use the address in AWS_CONTAINER_CREDENTIALS_FULL_URI"};
}

HttpError ThrottledError() { return {429, "throttled", "too many requests from this client; retry later"}; }

HttpError NotFoundPathError(std::string_view path) {
  return {404, "not_found", "no such path: " + std::string(path.substr(0, 256)) + " (use GET /v1/credentials)"};
}

HttpError MethodNotAllowedError(std::string_view method) {
  return {405, "method_not_allowed", "method " + std::string(method.substr(0, 16)) + " not allowed; use GET"};
}

}  // namespace podidentity::agent
