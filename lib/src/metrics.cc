#include "podidentity/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace podidentity {
namespace {

void AtomicAdd(std::atomic<double>& a, double by) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + by, std::memory_order_relaxed)) {
  }
}

std::string FormatDouble(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  // Shortest text that reads back as the same double: 0.00025, not 0.00025000000000000001.
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, result.ptr);
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string LabelSet(const std::vector<std::string>& names, const LabelValues& values,
                     const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out += out.empty() ? "" : ",";
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    out += out.empty() ? "" : ",";
    out += extra_name + "=\"" + extra_value + "\"";
  }
  return out.empty() ? "" : "{" + out + "}";
}

template <typename T>
std::unique_ptr<T> MakeChild(const std::vector<double>&) {
  return std::make_unique<T>();
}
template <>
std::unique_ptr<Histogram> MakeChild<Histogram>(const std::vector<double>& bounds) {
  return std::make_unique<Histogram>(bounds);
}

}  // namespace

void Counter::Inc(double by) { AtomicAdd(value_, by); }
void Gauge::Add(double by) { AtomicAdd(value_, by); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

template <typename T>
T& Family<T>::With(const LabelValues& values) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) it = children_.emplace(values, MakeChild<T>(bounds_)).first;
  return *it->second;
}

template <typename T>
std::vector<std::pair<LabelValues, const T*>> Family<T>::Children() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<LabelValues, const T*>> out;
  for (const auto& [k, v] : children_) out.emplace_back(k, v.get());
  return out;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Family<Counter>& MetricsRegistry::AddCounter(std::string name, std::string help, std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mu_);
  counters_.push_back(std::make_unique<Family<Counter>>(std::move(name), std::move(help), std::move(labels)));
  order_.emplace_back('c', counters_.size() - 1);
  return *counters_.back();
}

Family<Gauge>& MetricsRegistry::AddGauge(std::string name, std::string help, std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_.push_back(std::make_unique<Family<Gauge>>(std::move(name), std::move(help), std::move(labels)));
  order_.emplace_back('g', gauges_.size() - 1);
  return *gauges_.back();
}

Family<Histogram>& MetricsRegistry::AddHistogram(std::string name, std::string help, std::vector<double> bounds,
                                                 std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mu_);
  histograms_.push_back(std::make_unique<Family<Histogram>>(std::move(name), std::move(help), std::move(labels),
                                                            std::move(bounds)));
  order_.emplace_back('h', histograms_.size() - 1);
  return *histograms_.back();
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto header = [&](const auto& f, const char* type) {
    out += "# HELP " + f.name() + " " + f.help() + "\n";
    out += "# TYPE " + f.name() + " " + type + "\n";
  };
  for (auto [kind, index] : order_) {
    if (kind == 'c') {
      const auto& f = *counters_[index];
      header(f, "counter");
      for (const auto& [labels, c] : f.Children())
        out += f.name() + LabelSet(f.label_names(), labels) + " " + FormatDouble(c->Value()) + "\n";
    } else if (kind == 'g') {
      const auto& f = *gauges_[index];
      header(f, "gauge");
      for (const auto& [labels, g] : f.Children())
        out += f.name() + LabelSet(f.label_names(), labels) + " " + FormatDouble(g->Value()) + "\n";
    } else {
      const auto& f = *histograms_[index];
      header(f, "histogram");
      for (const auto& [labels, h] : f.Children()) {
        auto counts = h->CumulativeCounts();
        const auto& bounds = h->UpperBounds();
        for (size_t i = 0; i < counts.size(); ++i) {
          std::string le = i < bounds.size() ? FormatDouble(bounds[i]) : "+Inf";
          out += f.name() + "_bucket" + LabelSet(f.label_names(), labels, "le", le) + " " +
                 std::to_string(counts[i]) + "\n";
        }
        out += f.name() + "_sum" + LabelSet(f.label_names(), labels) + " " + FormatDouble(h->Sum()) + "\n";
        out += f.name() + "_count" + LabelSet(f.label_names(), labels) + " " + std::to_string(h->Count()) + "\n";
      }
    }
  }
  return out;
}

std::vector<double> LatencyBucketsSeconds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
}

}  // namespace podidentity
