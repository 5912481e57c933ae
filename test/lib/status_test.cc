#include "podidentity/status.h"

#include <catch2/catch.hpp>

using podidentity::InvalidArgumentError;
using podidentity::Status;
using podidentity::StatusCode;
using podidentity::StatusOr;

TEST_CASE("Status carries a code and a message") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.ToString() == "OK");
  Status bad = InvalidArgumentError("namespace: must be a DNS-1123 label");
  CHECK_FALSE(bad.ok());
  CHECK(bad.code() == StatusCode::kInvalidArgument);
  CHECK(bad.ToString() == "INVALID_ARGUMENT: namespace: must be a DNS-1123 label");
}

TEST_CASE("StatusOr holds a value or an error") {
  StatusOr<int> value = 42;
  REQUIRE(value.ok());
  CHECK(*value == 42);
  StatusOr<int> error = podidentity::NotFoundError("no association");
  CHECK_FALSE(error.ok());
  CHECK(error.status().code() == StatusCode::kNotFound);
  CHECK(error.status().message() == "no association");
}
