// Structured logging: one JSON object per line, with "time", "level", "msg" and the
// caller's fields. Stable keys; callers must never pass tokens, secret keys or session
// tokens (there is no "log the request" helper on purpose).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace podidentity::log {

enum class Level { kDebug = 0, kInfo, kWarn, kError };

using Value = std::variant<std::string, int64_t, double, bool>;

struct Field {
  std::string key;
  Value value;
  Field(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}
  Field(std::string k, std::string_view v) : key(std::move(k)), value(std::string(v)) {}
  Field(std::string k, const char* v) : key(std::move(k)), value(std::string(v)) {}
  Field(std::string k, int v) : key(std::move(k)), value(int64_t{v}) {}
  Field(std::string k, int64_t v) : key(std::move(k)), value(v) {}
  Field(std::string k, uint64_t v) : key(std::move(k)), value(static_cast<int64_t>(v)) {}
  Field(std::string k, double v) : key(std::move(k)), value(v) {}
  Field(std::string k, bool v) : key(std::move(k)), value(v) {}
};

// Renders one log line (no trailing newline). Pure; exposed for tests.
std::string FormatLine(Level level, std::string_view msg, const std::vector<Field>& fields,
                       std::string_view time_rfc3339);

// Where lines go. Default: stderr. Tests may capture lines. The sink and the minimum
// level are process-wide; setting them is not synchronised with concurrent logging,
// so do it at start-up. Writing a line is thread-safe (one write per line).
void SetSink(std::function<void(std::string_view line)> sink);
void SetMinLevel(Level level);
bool ParseLevel(std::string_view name, Level* out);
// Whether a line at `level` would be written (callers skip building fields otherwise).
bool Enabled(Level level);

void Write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});
void Write(Level level, std::string_view msg, const std::vector<Field>& fields);

inline void Debug(std::string_view msg, std::initializer_list<Field> f = {}) { Write(Level::kDebug, msg, f); }
inline void Info(std::string_view msg, std::initializer_list<Field> f = {}) { Write(Level::kInfo, msg, f); }
inline void Warn(std::string_view msg, std::initializer_list<Field> f = {}) { Write(Level::kWarn, msg, f); }
inline void Error(std::string_view msg, std::initializer_list<Field> f = {}) { Write(Level::kError, msg, f); }

}  // namespace podidentity::log
