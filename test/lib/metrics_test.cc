#include "podidentity/metrics.h"

#include <catch2/catch.hpp>

using podidentity::MetricsRegistry;

TEST_CASE("MetricsRegistry renders the Prometheus text format") {
  MetricsRegistry registry;
  auto& requests = registry.AddCounter("webhook_requests_total", "Admission requests.", {"outcome"});
  auto& loaded = registry.AddGauge("associations_loaded", "Associations in the current snapshot.");
  auto& latency = registry.AddHistogram("latency_seconds", "Latency.", {0.001, 0.01});
  requests.With({"patched"}).Inc();
  requests.With({"patched"}).Inc();
  requests.With({"a\"b"}).Inc();
  loaded.With({}).Set(3);
  latency.With({}).Observe(0.0005);
  latency.With({}).Observe(0.5);

  std::string text = registry.Render();
  CHECK(text.find("# TYPE webhook_requests_total counter\n") != std::string::npos);
  CHECK(text.find("webhook_requests_total{outcome=\"patched\"} 2\n") != std::string::npos);
  CHECK(text.find("webhook_requests_total{outcome=\"a\\\"b\"} 1\n") != std::string::npos);
  CHECK(text.find("associations_loaded 3\n") != std::string::npos);
  CHECK(text.find("latency_seconds_bucket{le=\"0.001\"} 1\n") != std::string::npos);
  CHECK(text.find("latency_seconds_bucket{le=\"0.01\"} 1\n") != std::string::npos);
  CHECK(text.find("latency_seconds_bucket{le=\"+Inf\"} 2\n") != std::string::npos);
  CHECK(text.find("latency_seconds_count 2\n") != std::string::npos);
}
