// Metrics: a small Prometheus registry (counters, gauges, histograms, with labels)
// rendered in the text exposition format (version 0.0.4) on /metrics.
// Thread-safety: updating a metric is lock-free (atomics); creating a labelled child
// takes the family's mutex once, after which callers may keep the reference (children
// are never destroyed while the registry lives). Render() is safe concurrently.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace podidentity {

using LabelValues = std::vector<std::string>;

class Counter {
 public:
  void Inc(double by = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double by);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  // Cumulative counts per bucket (last one is +Inf), sum and count.
  std::vector<uint64_t> CumulativeCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  const std::vector<double>& UpperBounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1 (for +Inf)
  std::atomic<double> sum_{0.0};
  std::atomic<uint64_t> count_{0};
};

// A named metric with a fixed list of label names and one child per label-value tuple.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {})
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}
  // Returns the child for these label values (same count as label names), creating it.
  T& With(const LabelValues& values);
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Snapshot of the children, for rendering.
  std::vector<std::pair<LabelValues, const T*>> Children() const;

 private:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;                                // guards children_
  std::map<LabelValues, std::unique_ptr<T>> children_;
};

class MetricsRegistry {
 public:
  Family<Counter>& AddCounter(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Gauge>& AddGauge(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help, std::vector<double> bounds,
                                  std::vector<std::string> labels = {});
  // Prometheus text format. Families appear in registration order.
  std::string Render() const;

 private:
  mutable std::mutex mu_;  // guards the three vectors (registration happens at start-up)
  std::vector<std::unique_ptr<Family<Counter>>> counters_;
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_;
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_;
  std::vector<std::pair<char, size_t>> order_;  // ('c'|'g'|'h', index)
};

// Latency buckets in seconds suited to sub-millisecond handlers.
std::vector<double> LatencyBucketsSeconds();

}  // namespace podidentity
