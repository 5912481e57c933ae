// A scripted HttpClient for unit tests: records every request and answers from a
// handler the test supplies. Thread-safe (mu_ guards requests_).
#pragma once

#include <functional>
#include <mutex>
#include <vector>

#include "podidentity/http_client.h"

namespace podidentity::testing {

class FakeHttpClient final : public HttpClient {
 public:
  using Handler = std::function<StatusOr<HttpResponse>(const HttpRequest&)>;
  explicit FakeHttpClient(Handler handler) : handler_(std::move(handler)) {}

  StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(request);
    }
    return handler_(request);
  }
  std::vector<HttpRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  Handler handler_;
  mutable std::mutex mu_;
  std::vector<HttpRequest> requests_;
};

}  // namespace podidentity::testing
