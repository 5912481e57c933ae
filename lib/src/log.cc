#include "podidentity/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "podidentity/json_util.h"

namespace podidentity::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
std::function<void(std::string_view)>& SinkRef() {
  static std::function<void(std::string_view)> sink;
  return sink;
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

std::string NowRfc3339() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - secs).count();
  std::time_t t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

std::string FormatLine(Level level, std::string_view msg, const std::vector<Field>& fields,
                       std::string_view time_rfc3339) {
  std::string out;
  out.reserve(128);
  out += "{\"time\":";
  AppendJsonString(out, time_rfc3339);
  out += ",\"level\":";
  AppendJsonString(out, LevelName(level));
  out += ",\"msg\":";
  AppendJsonString(out, msg);
  for (const Field& f : fields) {
    out += ',';
    AppendJsonString(out, f.key);
    out += ':';
    if (const auto* s = std::get_if<std::string>(&f.value)) {
      AppendJsonString(out, *s);
    } else if (const auto* i = std::get_if<int64_t>(&f.value)) {
      out += std::to_string(*i);
    } else if (const auto* d = std::get_if<double>(&f.value)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", *d);
      out += buf;
    } else {
      out += std::get<bool>(f.value) ? "true" : "false";
    }
  }
  out += '}';
  return out;
}

void SetSink(std::function<void(std::string_view)> sink) { SinkRef() = std::move(sink); }
void SetMinLevel(Level level) { g_min_level = static_cast<int>(level); }

bool Enabled(Level level) { return static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed); }

bool ParseLevel(std::string_view name, Level* out) {
  if (name == "debug") *out = Level::kDebug;
  else if (name == "info") *out = Level::kInfo;
  else if (name == "warn") *out = Level::kWarn;
  else if (name == "error") *out = Level::kError;
  else return false;
  return true;
}

void Write(Level level, std::string_view msg, const std::vector<Field>& fields) {
  if (static_cast<int>(level) < g_min_level.load(std::memory_order_relaxed)) return;
  std::string line = FormatLine(level, msg, fields, NowRfc3339());
  if (auto& sink = SinkRef()) {
    sink(line);
    return;
  }
  line += '\n';
  // One write(2) per line keeps concurrent lines whole.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void Write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  Write(level, msg, std::vector<Field>(fields));
}

}  // namespace podidentity::log
