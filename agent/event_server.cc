#include "event_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <utility>

#include "podidentity/connection_pool.h"
#include "podidentity/json_util.h"
#include "podidentity/log.h"

namespace podidentity::agent {

namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

constexpr int kListenBacklog = 1024;
constexpr size_t kMaxHeaderLines = 100;  // header fields, not counting the request line
constexpr int kMaxEvents = 256;
// epoll_wait never sleeps longer, so deadlines are checked at least this often.
constexpr int kEpollTimeoutMs = 250;
// Under load epoll_wait returns constantly; sweep the deadlines at most this often.
constexpr auto kSweepInterval = std::chrono::milliseconds(100);
// After EMFILE/ENFILE the listener is not watched for this long (the pending connection
// stays in the backlog and would wake the loop in a busy spin otherwise).
constexpr auto kAcceptPause = std::chrono::milliseconds(100);
constexpr int kAcceptPauseMs = static_cast<int>(kAcceptPause.count());
// While this much output waits for the peer to read it, pipelined requests are not parsed.
constexpr size_t kMaxPendingOutput = 64 * 1024;
// After a closing response: how long unread input is drained (so that closing with unread
// data does not send a RST that could destroy the response before the client reads it).
constexpr auto kMaxLinger = std::chrono::milliseconds(1000);
constexpr size_t kReadChunk = 16 * 1024;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

constexpr uint64_t kListenerKey = ~uint64_t{0};
constexpr uint64_t kWakeKey = ~uint64_t{0} - 1;

// RFC 9110 5.6.2 tchar.
constexpr std::array<bool, 256> MakeTcharTable() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[static_cast<size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[static_cast<size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[static_cast<size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}
constexpr std::array<bool, 256> kTchar = MakeTcharTable();

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!kTchar[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// `lower` must be lower case.
bool EqualsIgnoreCase(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (AsciiLower(s[i]) != lower[i]) return false;
  }
  return true;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

void AppendNumber(std::string& out, uint64_t value) {
  char buf[24];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, result.ptr);
}

// Appends a whole response. `keep_alive` false adds Connection: close; a kept HTTP/1.0
// connection gets Connection: keep-alive. HEAD gets the headers only.
void AppendResponse(std::string& out, const HttpAnswer& answer, bool head, bool keep_alive, int http_minor) {
  const int status = (answer.status >= 100 && answer.status <= 999) ? answer.status : 500;
  out.reserve(out.size() + answer.body.size() + answer.content_type.size() + 128);
  out.append("HTTP/1.1 ");
  AppendNumber(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(ReasonPhrase(status));
  out.append("\r\nContent-Type: ");
  for (char c : answer.content_type) {
    const auto u = static_cast<unsigned char>(c);
    if (u == '\t' || (u >= 0x20 && u != 0x7f)) out.push_back(c);  // no CR/LF: no header injection
  }
  if (!answer.allow.empty()) {
    out.append("\r\nAllow: ");
    for (char c : answer.allow) {
      const auto u = static_cast<unsigned char>(c);
      if (u == '\t' || (u >= 0x20 && u != 0x7f)) out.push_back(c);
    }
  }
  out.append("\r\nContent-Length: ");
  AppendNumber(out, answer.body.size());
  if (!keep_alive) {
    out.append("\r\nConnection: close");
  } else if (http_minor == 0) {
    out.append("\r\nConnection: keep-alive");
  }
  out.append("\r\n\r\n");
  if (!head) out.append(answer.body);
}

HttpAnswer ErrorAnswer(int status, std::string_view code, std::string_view message) {
  HttpAnswer answer;
  answer.status = status;
  answer.body.reserve(code.size() + message.size() + 32);
  answer.body.append("{\"code\":");
  AppendJsonString(answer.body, code);
  answer.body.append(",\"message\":");
  AppendJsonString(answer.body, message);
  answer.body.push_back('}');
  return answer;
}

// Where the request head (request line + headers + the empty line) ends. Incremental:
// `pos` and `line_start` (relative to the request's first byte) survive between calls.
struct HeadScan {
  size_t pos = 0;
  size_t line_start = 0;
  size_t lines = 0;
};

enum class ScanResult { kNeedMore, kComplete, kBareCrOrLf, kTooManyLines };

ScanResult ScanHead(std::string_view data, HeadScan& scan, size_t* head_len) {
  const char* p = data.data();
  const size_t n = data.size();
  while (scan.pos < n) {
    const void* lf_ptr = std::memchr(p + scan.pos, '\n', n - scan.pos);
    if (lf_ptr == nullptr) {
      const void* cr = std::memchr(p + scan.pos, '\r', n - scan.pos);
      // A CR as the last byte may still be followed by its LF; anywhere else it is bare.
      if (cr != nullptr && cr != p + n - 1) return ScanResult::kBareCrOrLf;
      scan.pos = cr != nullptr ? n - 1 : n;
      return ScanResult::kNeedMore;
    }
    const size_t lf = static_cast<size_t>(static_cast<const char*>(lf_ptr) - p);
    if (lf == scan.line_start || p[lf - 1] != '\r') return ScanResult::kBareCrOrLf;
    if (lf - 1 > scan.pos && std::memchr(p + scan.pos, '\r', lf - 1 - scan.pos) != nullptr) {
      return ScanResult::kBareCrOrLf;
    }
    if (lf - 1 == scan.line_start) {
      *head_len = lf + 1;
      return ScanResult::kComplete;
    }
    if (++scan.lines > kMaxHeaderLines + 1) return ScanResult::kTooManyLines;
    scan.pos = lf + 1;
    scan.line_start = lf + 1;
  }
  return ScanResult::kNeedMore;
}

struct ParsedRequest {
  HttpRequestView view;
  bool keep_alive = true;
  bool head = false;
  bool expect_continue = false;
  size_t content_length = 0;
};

struct HeadError {
  int status = 0;  // 0: no error
  std::string_view code;
  std::string_view message;
};

constexpr HeadError BadRequest(std::string_view message) { return {400, "bad_request", message}; }

// Parses a complete request head (every line ends in CRLF, ScanHead checked that).
HeadError ParseHead(std::string_view head, size_t max_body_bytes, ParsedRequest* out) {
  size_t eol = head.find("\r\n");
  const std::string_view request_line = head.substr(0, eol);
  const size_t sp1 = request_line.find(' ');
  if (sp1 == std::string_view::npos) return BadRequest("malformed request line");
  const size_t sp2 = request_line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return BadRequest("malformed request line");
  const std::string_view method = request_line.substr(0, sp1);
  const std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = request_line.substr(sp2 + 1);
  if (!IsToken(method)) return BadRequest("malformed request method");
  if (target.empty()) return BadRequest("empty request target");
  for (char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return BadRequest("invalid character in the request target");
  }
  if (target.front() != '/' && target != "*") return BadRequest("the request target must be a path");
  int minor;
  if (version == "HTTP/1.1") {
    minor = 1;
  } else if (version == "HTTP/1.0") {
    minor = 0;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[5] >= '0' && version[5] <= '9' &&
             version[6] == '.' && version[7] >= '0' && version[7] <= '9') {
    return {505, "version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported"};
  } else {
    return BadRequest("malformed HTTP version");
  }

  HttpRequestView& view = out->view;
  view.method = method;
  view.target = target;
  view.path = target.substr(0, target.find('?'));
  view.http_minor = minor;
  int host_count = 0;
  int authorization_count = 0;
  int content_length_count = 0;
  bool transfer_encoding = false;
  bool connection_close = false;
  bool connection_keep_alive = false;
  uint64_t content_length = 0;
  bool content_length_valid = true;

  size_t pos = eol + 2;
  while (pos < head.size()) {
    eol = head.find("\r\n", pos);
    const std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;  // the end of the head
    if (line.front() == ' ' || line.front() == '\t') return BadRequest("obsolete line folding in a header");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return BadRequest("header line without a colon");
    const std::string_view name = line.substr(0, colon);
    if (!IsToken(name)) return BadRequest("malformed header name");
    const std::string_view value = TrimOws(line.substr(colon + 1));
    for (char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (u != '\t' && (u < 0x20 || u == 0x7f)) return BadRequest("control character in a header value");
    }
    switch (AsciiLower(name.front())) {
      case 'h':
        if (EqualsIgnoreCase(name, "host")) {
          ++host_count;
          view.host = value;
        }
        break;
      case 'a':
        if (EqualsIgnoreCase(name, "authorization")) {
          ++authorization_count;
          view.authorization = value;
          view.has_authorization = true;
        }
        break;
      case 'c':
        if (EqualsIgnoreCase(name, "content-length")) {
          ++content_length_count;
          // Digits only (no sign, no list). More than 19 digits is beyond any limit: "huge" (413).
          if (value.empty()) content_length_valid = false;
          for (char digit : value) {
            if (digit < '0' || digit > '9') content_length_valid = false;
          }
          if (content_length_valid && value.size() > 19) {
            content_length = UINT64_MAX;
          } else if (content_length_valid) {
            std::from_chars(value.data(), value.data() + value.size(), content_length);
          }
        } else if (EqualsIgnoreCase(name, "connection")) {
          std::string_view rest = value;
          while (!rest.empty()) {
            const size_t comma = rest.find(',');
            const std::string_view option = TrimOws(rest.substr(0, comma));
            if (EqualsIgnoreCase(option, "close")) connection_close = true;
            if (EqualsIgnoreCase(option, "keep-alive")) connection_keep_alive = true;
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
          }
        }
        break;
      case 't':
        if (EqualsIgnoreCase(name, "transfer-encoding")) transfer_encoding = true;
        break;
      case 'e':
        if (EqualsIgnoreCase(name, "expect") && EqualsIgnoreCase(value, "100-continue")) out->expect_continue = true;
        break;
      default:
        break;
    }
  }
  if (host_count > 1) return BadRequest("more than one Host header");
  if (minor == 1 && host_count == 0) return BadRequest("HTTP/1.1 request without a Host header");
  if (authorization_count > 1) return BadRequest("more than one Authorization header");
  if (content_length_count > 1) return BadRequest("more than one Content-Length header");
  if (!content_length_valid) return BadRequest("Content-Length is not a number");
  if (transfer_encoding) return {501, "not_implemented", "Transfer-Encoding is not supported"};
  if (content_length > max_body_bytes) return {413, "body_too_large", "the request body is too large"};
  out->content_length = static_cast<size_t>(content_length);
  out->keep_alive = minor == 1 ? !connection_close : (connection_keep_alive && !connection_close);
  out->head = method == "HEAD";
  return {};
}

// A request on its way to a worker: the views die with the loop's buffer, so the worker
// owns copies of what the handler may read.
struct OwnedRequest {
  std::string method;
  std::string target;
  std::string host;
  std::string authorization;
  std::string remote_addr;
  bool has_authorization = false;
  int http_minor = 1;

  explicit OwnedRequest(const HttpRequestView& view)
      : method(view.method),
        target(view.target),
        host(view.host),
        authorization(view.authorization),
        remote_addr(view.remote_addr),
        has_authorization(view.has_authorization),
        http_minor(view.http_minor) {}

  HttpRequestView View() const {
    HttpRequestView view;
    view.method = method;
    view.target = target;
    view.path = std::string_view(target).substr(0, target.find('?'));
    view.host = host;
    view.authorization = authorization;
    view.has_authorization = has_authorization;
    view.remote_addr = remote_addr;
    view.http_minor = http_minor;
    return view;
  }
};

std::string HostPort(const std::string& host, int port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// strerror_r (GNU): thread-safe, unlike strerror in general.
std::string ErrnoText(int error) {
  char buf[128];
  return ::strerror_r(error, buf, sizeof(buf));
}

}  // namespace

// One event-loop thread: its epoll set, its connections (touched only by this thread)
// and the queue through which workers hand back slow-path answers (guarded by done_mu_).
class EventServer::Loop {
 public:
  explicit Loop(EventServer& server) : server_(server), options_(server.options_) {}
  ~Loop() {
    for (auto& conn : slots_) {
      if (conn->open) ::close(conn->fd);
    }
    if (wake_fd_ >= 0) ::close(wake_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  Status Init() {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return InternalError("epoll_create1: " + ErrnoText(errno));
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return InternalError("eventfd: " + ErrnoText(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeKey;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
      return InternalError("epoll_ctl(eventfd): " + ErrnoText(errno));
    }
    if (!WatchListener()) return InternalError("epoll_ctl(listener): " + ErrnoText(errno));
    return Status::Ok();
  }

  // Wakes the loop (Stop, or an answer was queued). Any thread.
  void Wake() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
  }

  // A worker's answer for connection `key`. Any thread.
  void PostAnswer(uint64_t key, HttpAnswer answer) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      was_empty = done_.empty();
      done_.push_back({key, std::move(answer)});
    }
    // The loop reads the eventfd before it takes the queue, so one wake per batch is enough.
    if (was_empty) Wake();
  }

  void Run();

 private:
  struct Connection {
    int fd = -1;
    uint32_t slot = 0;
    uint32_t generation = 0;
    bool open = false;
    uint32_t events = 0;  // the epoll mask registered now
    std::string remote_addr;
    std::string in;        // received bytes; unparsed input starts at in_start
    size_t in_start = 0;
    std::string out;  // response bytes not yet sent start at out_start
    size_t out_start = 0;
    bool reading = false;  // some bytes of a request arrived (read_deadline runs)
    HeadScan scan;
    size_t head_len = 0;  // head complete, waiting for the body
    size_t body_len = 0;
    bool continue_sent = false;
    bool slow = false;  // a worker has the current request
    bool slow_keep_alive = false;
    bool slow_head = false;
    int slow_minor = 1;
    bool close_after_write = false;  // no more requests: close once the output is sent
    bool peer_eof = false;
    bool lingering = false;  // output sent, write side shut: discarding input until EOF
    bool write_blocked = false;
    TimePoint read_deadline;
    TimePoint write_deadline;
    TimePoint idle_deadline;
    TimePoint linger_deadline;

    uint64_t key() const { return (uint64_t{generation} << 32) | slot; }
    size_t pending_out() const { return out.size() - out_start; }
    size_t unparsed() const { return in.size() - in_start; }
  };
  struct Completion {
    uint64_t key;
    HttpAnswer answer;
  };

  bool WatchListener() {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.u64 = kListenerKey;
    listener_watched_ = ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, server_.listen_fd_, &ev) == 0;
    return listener_watched_;
  }
  void UnwatchListener() {
    if (!listener_watched_) return;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, server_.listen_fd_, nullptr);
    listener_watched_ = false;
  }

  Connection* Lookup(uint64_t key) {
    const auto slot = static_cast<uint32_t>(key & 0xffffffffu);
    if (slot >= slots_.size()) return nullptr;
    Connection* conn = slots_[slot].get();
    return (conn->open && conn->key() == key) ? conn : nullptr;
  }

  void Accept(TimePoint now);
  void BeginDrain();
  void OnEvent(Connection& conn, uint32_t events, TimePoint now);
  void OnReadable(Connection& conn, TimePoint now);
  void ProcessInput(Connection& conn, TimePoint now);
  void Dispatch(Connection& conn, const ParsedRequest& request, size_t consumed, TimePoint now);
  void Answer(Connection& conn, const HttpAnswer& answer, bool head, bool keep_alive, int minor, TimePoint now);
  void SendError(Connection& conn, int status, std::string_view code, std::string_view message, TimePoint now);
  void Flush(Connection& conn, TimePoint now);
  void Finish(Connection& conn, TimePoint now);
  void StartLinger(Connection& conn, TimePoint now);
  void UpdateEvents(Connection& conn);
  void Close(Connection& conn);
  void ProcessCompletions(TimePoint now);
  void Sweep(TimePoint now);

  EventServer& server_;
  const Options& options_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  bool listener_watched_ = false;
  bool listener_paused_ = false;  // after EMFILE/ENFILE, until listener_resume_
  TimePoint listener_resume_;
  bool accept_error_logged_ = false;
  bool draining_ = false;
  size_t live_ = 0;  // open connections of this loop
  std::vector<std::unique_ptr<Connection>> slots_;
  std::vector<uint32_t> free_slots_;
  std::mutex done_mu_;
  std::vector<Completion> done_;        // guarded by done_mu_
  std::vector<Completion> done_local_;  // loop thread only
};

void EventServer::Loop::Run() {
  epoll_event events[kMaxEvents];
  TimePoint next_sweep = SteadyClock::now() + kSweepInterval;
  while (true) {
    if (!draining_ && server_.stopping_.load()) BeginDrain();
    if (draining_ && live_ == 0) break;
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, listener_paused_ ? kAcceptPauseMs : kEpollTimeoutMs);
    if (n < 0 && errno != EINTR) {
      log::Error("epoll_wait failed; the event loop stops", {{"error", ErrnoText(errno)}});
      break;
    }
    const TimePoint now = SteadyClock::now();
    for (int i = 0; i < n; ++i) {
      const uint64_t key = events[i].data.u64;
      if (key == kListenerKey) {
        if (!draining_ && !server_.stopping_.load()) Accept(now);
      } else if (key == kWakeKey) {
        uint64_t count;
        [[maybe_unused]] const ssize_t ignored = ::read(wake_fd_, &count, sizeof(count));
        ProcessCompletions(now);
      } else if (Connection* conn = Lookup(key)) {
        OnEvent(*conn, events[i].events, now);
      }
    }
    if (listener_paused_ && now >= listener_resume_) {
      listener_paused_ = false;
      if (!draining_) WatchListener();
    }
    if (now >= next_sweep) {
      Sweep(now);
      next_sweep = now + kSweepInterval;
    }
  }
  // Only on an epoll failure can connections remain: close them.
  for (auto& conn : slots_) Close(*conn);
}

void EventServer::Loop::Accept(TimePoint now) {
  while (true) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd =
        ::accept4(server_.listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      if (error == EINTR || error == ECONNABORTED || error == EPROTO) continue;
      if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
        // The connection stays in the backlog and the listener stays readable: stop
        // watching it for a while instead of spinning.
        if (!accept_error_logged_) {  // once per episode, not every 100 ms
          log::Warn("accept failed; pausing the listener", {{"error", ErrnoText(error)}});
          accept_error_logged_ = true;
        }
        UnwatchListener();
        listener_paused_ = true;
        listener_resume_ = now + kAcceptPause;
      }
      return;  // EAGAIN, or the listener was shut down (Stop)
    }
    accept_error_logged_ = false;
    if (server_.connections_.fetch_add(1) >= options_.max_connections) {
      server_.connections_.fetch_sub(1);
      ::close(fd);
      continue;
    }
    const int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    uint32_t slot;
    if (free_slots_.empty()) {
      slot = static_cast<uint32_t>(slots_.size());
      slots_.push_back(std::make_unique<Connection>());
      slots_.back()->slot = slot;
    } else {
      slot = free_slots_.back();
      free_slots_.pop_back();
    }
    Connection& conn = *slots_[slot];
    conn.fd = fd;
    conn.open = true;
    conn.events = EPOLLIN | EPOLLRDHUP;
    conn.idle_deadline = now + options_.keep_alive_timeout;
    char text[INET6_ADDRSTRLEN] = {0};
    if (addr.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, text, sizeof(text));
    } else if (addr.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, text, sizeof(text));
    }
    conn.remote_addr = text;
    ++live_;
    epoll_event ev{};
    ev.events = conn.events;
    ev.data.u64 = conn.key();
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) Close(conn);
  }
}

// Stop(): idle connections close now; the others finish their current request (answered
// with Connection: close, since server_.stopping_ is set) and then close.
void EventServer::Loop::BeginDrain() {
  draining_ = true;
  UnwatchListener();
  for (auto& slot : slots_) {
    Connection& conn = *slot;
    if (!conn.open || conn.lingering || conn.slow || conn.reading) continue;
    if (conn.pending_out() == 0) {
      Close(conn);
    } else {
      conn.close_after_write = true;
      UpdateEvents(conn);
    }
  }
}

void EventServer::Loop::OnEvent(Connection& conn, uint32_t events, TimePoint now) {
  if (events & (EPOLLERR | EPOLLHUP)) {
    Close(conn);  // reset, or both directions shut: nothing more can be sent
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP)) {
    OnReadable(conn, now);
    if (!conn.open) return;
  }
  if ((events & EPOLLOUT) && conn.pending_out() > 0) {
    Flush(conn, now);
    if (!conn.open) return;
    ProcessInput(conn, now);  // output drained below the limit: pipelined requests may go on
    if (!conn.open) return;
  }
  UpdateEvents(conn);
}

void EventServer::Loop::OnReadable(Connection& conn, TimePoint now) {
  char buf[kReadChunk];
  const ssize_t r = ::recv(conn.fd, buf, sizeof(buf), 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    Close(conn);
    return;
  }
  if (conn.lingering) {
    if (r == 0) Close(conn);  // else: discarded
    return;
  }
  if (r == 0) {
    conn.peer_eof = true;
  } else {
    conn.in.append(buf, static_cast<size_t>(r));
  }
  ProcessInput(conn, now);
}

// Parses and answers every complete request in the buffer, in order, until one goes to a
// worker, the output backs up, or the connection is to close.
void EventServer::Loop::ProcessInput(Connection& conn, TimePoint now) {
  while (!conn.slow && !conn.close_after_write && !conn.lingering && conn.pending_out() < kMaxPendingOutput) {
    if (!conn.reading) {
      // RFC 9112 2.2: ignore empty lines before a request line.
      while (conn.unparsed() >= 2 && conn.in[conn.in_start] == '\r' && conn.in[conn.in_start + 1] == '\n') {
        conn.in_start += 2;
      }
      if (conn.unparsed() == 0 || (conn.unparsed() == 1 && conn.in[conn.in_start] == '\r')) break;
      conn.reading = true;
      conn.read_deadline = now + options_.read_timeout;
      conn.scan = HeadScan{};
      conn.head_len = 0;
      conn.continue_sent = false;
    }
    const std::string_view data(conn.in.data() + conn.in_start, conn.unparsed());
    ParsedRequest request;
    if (conn.head_len == 0) {
      size_t head_len = 0;
      switch (ScanHead(data, conn.scan, &head_len)) {
        case ScanResult::kBareCrOrLf:
          SendError(conn, 400, "bad_request", "line ends must be CRLF", now);
          return;
        case ScanResult::kTooManyLines:
          SendError(conn, 431, "headers_too_large", "more than 100 header lines", now);
          return;
        case ScanResult::kNeedMore:
          if (data.size() > options_.max_header_bytes) {
            SendError(conn, 431, "headers_too_large", "the request line and headers are too large", now);
            return;
          }
          break;
        case ScanResult::kComplete:
          break;
      }
      if (head_len == 0) break;  // need more
      if (head_len > options_.max_header_bytes) {
        SendError(conn, 431, "headers_too_large", "the request line and headers are too large", now);
        return;
      }
      const HeadError error = ParseHead(data.substr(0, head_len), options_.max_body_bytes, &request);
      if (error.status != 0) {
        SendError(conn, error.status, error.code, error.message, now);
        return;
      }
      conn.head_len = head_len;
      conn.body_len = request.content_length;
      if (data.size() < head_len + request.content_length) {
        if (request.expect_continue && request.view.http_minor == 1 && !conn.continue_sent) {
          conn.out.append(kContinue);
          conn.continue_sent = true;
        }
        break;  // the body is still on its way
      }
    } else {
      if (data.size() < conn.head_len + conn.body_len) break;
      // The head was parsed when it arrived; parse it again for views into the current
      // buffer (appending may have moved it). Only requests with a body get here.
      const HeadError error = ParseHead(data.substr(0, conn.head_len), options_.max_body_bytes, &request);
      if (error.status != 0) {  // cannot happen: the same bytes parsed before
        SendError(conn, error.status, error.code, error.message, now);
        return;
      }
    }
    const size_t consumed = conn.head_len + conn.body_len;
    conn.reading = false;
    conn.head_len = 0;
    conn.body_len = 0;
    request.view.remote_addr = conn.remote_addr;
    Dispatch(conn, request, consumed, now);
    if (!conn.open) return;
  }
  // Compact the input buffer (the views of this round are no longer used).
  if (conn.in_start == conn.in.size()) {
    conn.in.clear();
    conn.in_start = 0;
  } else if (conn.in_start > 0 && conn.in_start >= conn.in.size() / 2) {
    conn.in.erase(0, conn.in_start);
    conn.in_start = 0;
  }
  if (conn.pending_out() > 0 && !conn.write_blocked) {
    Flush(conn, now);
    if (!conn.open) return;
  }
  Finish(conn, now);
}

void EventServer::Loop::Dispatch(Connection& conn, const ParsedRequest& request, size_t consumed, TimePoint now) {
  // The views stay valid: the buffer is not modified until the handler returns.
  conn.in_start += consumed;
  std::optional<HttpAnswer> answer;
  try {
    answer = server_.fast_(request.view);
  } catch (...) {
    answer = ErrorAnswer(500, "internal", "the request handler failed");
  }
  if (!answer) {
    // Bounded by the pool's max_threads + max_queued so that enqueue() never blocks the
    // loop (see Start()).
    const size_t limit = static_cast<size_t>(std::max(1, options_.max_workers)) + options_.max_connections;
    if (server_.slow_in_flight_.fetch_add(1) >= limit) {
      server_.slow_in_flight_.fetch_sub(1);
      answer = ErrorAnswer(503, "server_busy", "too many requests in progress");
    } else {
      try {
        auto job = [this, key = conn.key(), owned = OwnedRequest(request.view), &server = server_] {
          HttpAnswer slow_answer;
          try {
            slow_answer = server.slow_(owned.View());
          } catch (...) {
            slow_answer = ErrorAnswer(500, "internal", "the request handler failed");
          }
          PostAnswer(key, std::move(slow_answer));
          server.slow_in_flight_.fetch_sub(1);
        };
        server_.workers_->enqueue(std::move(job));
        conn.slow = true;
        conn.slow_keep_alive = request.keep_alive;
        conn.slow_head = request.head;
        conn.slow_minor = request.view.http_minor;
        return;
      } catch (...) {
        server_.slow_in_flight_.fetch_sub(1);
        answer = ErrorAnswer(500, "internal", "cannot start the request handler");
      }
    }
  }
  Answer(conn, *answer, request.head, request.keep_alive, request.view.http_minor, now);
}

void EventServer::Loop::Answer(Connection& conn, const HttpAnswer& answer, bool head, bool keep_alive, int minor,
                               TimePoint now) {
  const bool keep = keep_alive && !server_.stopping_.load();
  AppendResponse(conn.out, answer, head, keep, minor);
  if (!keep) conn.close_after_write = true;
  conn.idle_deadline = now + options_.keep_alive_timeout;
}

void EventServer::Loop::SendError(Connection& conn, int status, std::string_view code, std::string_view message,
                                  TimePoint now) {
  AppendResponse(conn.out, ErrorAnswer(status, code, message), false, false, 1);
  conn.close_after_write = true;
  conn.reading = false;
  conn.head_len = 0;
  conn.in.clear();
  conn.in_start = 0;
  if (!conn.write_blocked) Flush(conn, now);
  if (conn.open) Finish(conn, now);
}

void EventServer::Loop::Flush(Connection& conn, TimePoint now) {
  while (conn.pending_out() > 0) {
    const ssize_t w = ::send(conn.fd, conn.out.data() + conn.out_start, conn.pending_out(), MSG_NOSIGNAL);
    if (w > 0) {
      conn.out_start += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!conn.write_blocked) {
        conn.write_blocked = true;
        conn.write_deadline = now + options_.write_timeout;
      }
      return;
    }
    Close(conn);  // EPIPE, ECONNRESET, ...
    return;
  }
  conn.out.clear();
  conn.out_start = 0;
  conn.write_blocked = false;
}

// What happens once nothing is pending: close, linger, or wait for the next request.
void EventServer::Loop::Finish(Connection& conn, TimePoint now) {
  if (conn.slow || conn.pending_out() > 0 || conn.lingering) return;
  if (conn.close_after_write) {
    StartLinger(conn, now);
  } else if (conn.peer_eof) {
    Close(conn);  // every complete request is answered; a partial one can never complete
  }
}

void EventServer::Loop::StartLinger(Connection& conn, TimePoint now) {
  if (conn.peer_eof) {
    Close(conn);
    return;
  }
  ::shutdown(conn.fd, SHUT_WR);
  conn.lingering = true;
  conn.in.clear();
  conn.in_start = 0;
  conn.linger_deadline = now + std::min<SteadyClock::duration>(options_.read_timeout, kMaxLinger);
}

void EventServer::Loop::UpdateEvents(Connection& conn) {
  if (!conn.open) return;
  // Input is not read while it cannot be parsed and enough of it is buffered already
  // (level-triggered epoll would report it again and again otherwise).
  bool want_read = true;
  if (conn.peer_eof) {
    want_read = false;
  } else if (conn.lingering) {
    want_read = true;  // discarding until EOF
  } else if (conn.close_after_write) {
    want_read = false;  // the rest is discarded while lingering
  } else if (conn.slow || conn.pending_out() >= kMaxPendingOutput) {
    want_read = conn.unparsed() < options_.max_header_bytes + options_.max_body_bytes;
  }
  uint32_t events = want_read ? (EPOLLIN | EPOLLRDHUP) : 0;
  if (conn.pending_out() > 0) events |= EPOLLOUT;
  if (events == conn.events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = conn.key();
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev) != 0) {
    Close(conn);
    return;
  }
  conn.events = events;
}

void EventServer::Loop::Close(Connection& conn) {
  if (!conn.open) return;
  ::close(conn.fd);  // also leaves the epoll set
  const uint32_t slot = conn.slot;
  const uint32_t generation = conn.generation + 1;
  std::string in = std::move(conn.in);
  std::string out = std::move(conn.out);
  conn = Connection{};
  conn.slot = slot;
  conn.generation = generation;  // a late answer for the old connection finds no match
  // Keep small buffers for the next connection in this slot.
  if (in.capacity() <= kReadChunk) conn.in = std::move(in);
  if (out.capacity() <= kReadChunk) conn.out = std::move(out);
  conn.in.clear();
  conn.out.clear();
  free_slots_.push_back(slot);
  --live_;
  server_.connections_.fetch_sub(1);
}

void EventServer::Loop::ProcessCompletions(TimePoint now) {
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    done_local_.swap(done_);
  }
  for (Completion& done : done_local_) {
    Connection* conn = Lookup(done.key);
    if (conn == nullptr || !conn->slow) continue;  // closed or timed out meanwhile: dropped
    conn->slow = false;
    Answer(*conn, done.answer, conn->slow_head, conn->slow_keep_alive, conn->slow_minor, now);
    ProcessInput(*conn, now);  // sends the answer, then any pipelined requests
    if (conn->open) UpdateEvents(*conn);
  }
  done_local_.clear();
}

void EventServer::Loop::Sweep(TimePoint now) {
  for (auto& slot : slots_) {
    Connection& conn = *slot;
    if (!conn.open) continue;
    if (conn.lingering) {
      if (now >= conn.linger_deadline) Close(conn);
      continue;
    }
    if (conn.write_blocked && now >= conn.write_deadline) {
      Close(conn);  // the peer does not read its responses
      continue;
    }
    if (conn.slow) continue;
    if (conn.reading) {
      if (now >= conn.read_deadline) {
        SendError(conn, 408, "request_timeout", "the request was not received in time", now);
        if (conn.open) UpdateEvents(conn);
      }
      continue;
    }
    if (conn.pending_out() == 0 && !conn.close_after_write && now >= conn.idle_deadline) Close(conn);
  }
}

EventServer::EventServer(Options options, FastHandler fast, SlowHandler slow)
    : options_(std::move(options)), fast_(std::move(fast)), slow_(std::move(slow)) {}

EventServer::~EventServer() { Stop(); }

Status EventServer::Bind() {
  std::lock_guard<std::mutex> lock(control_mu_);
  const std::string where = HostPort(options_.host, options_.port);
  if (listen_fd_ >= 0 || stopped_) {
    return FailedPreconditionError("event server " + where + ": already bound or stopped");
  }
  if (options_.port < 0 || options_.port > 65535) {
    return InvalidArgumentError("event server " + where + ": invalid port");
  }
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  const auto port = htons(static_cast<uint16_t>(options_.port));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (::inet_pton(AF_INET, options_.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = port;
    addr_len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, options_.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = port;
    addr_len = sizeof(sockaddr_in6);
  } else {
    return InvalidArgumentError("event server " + where + ": host is not an IP literal");
  }
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return UnavailableError("cannot listen on " + where + ": socket: " + ErrnoText(errno));
  const int yes = 1;
  // SO_REUSEADDR only: a restart may bind while old connections are in TIME_WAIT, but a
  // second process on the same port fails (SO_REUSEPORT would silently share it).
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes)) != 0 ||
      (addr.ss_family == AF_INET6 && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &yes, sizeof(yes)) != 0)) {
    const int error = errno;
    ::close(fd);
    return UnavailableError("cannot listen on " + where + ": setsockopt: " + ErrnoText(error));
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    const int error = errno;
    ::close(fd);
    return UnavailableError("cannot listen on " + where + ": bind: " + ErrnoText(error));
  }
  if (::listen(fd, kListenBacklog) != 0) {
    const int error = errno;
    ::close(fd);
    return UnavailableError("cannot listen on " + where + ": listen: " + ErrnoText(error));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    const int error = errno;
    ::close(fd);
    return UnavailableError("cannot listen on " + where + ": getsockname: " + ErrnoText(error));
  }
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  listen_fd_ = fd;
  return Status::Ok();
}

int EventServer::port() const { return port_.load(); }

Status EventServer::Start() {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (listen_fd_ < 0 || started_ || stopped_) {
    return FailedPreconditionError("event server: Start needs a Bind before it, and runs once");
  }
  ConnectionPool::Options pool;
  pool.min_threads = 0;
  pool.max_threads = static_cast<size_t>(std::max(1, options_.max_workers));
  // Dispatch() keeps at most max_threads + max_queued jobs in flight, so enqueue() on a
  // loop thread never waits for a free slot.
  pool.max_queued = std::max<size_t>(1, options_.max_connections);
  workers_ = std::make_unique<ConnectionPool>(pool);
  for (int i = 0; i < std::max(1, options_.loops); ++i) {
    auto loop = std::make_unique<Loop>(*this);
    if (Status status = loop->Init(); !status.ok()) {
      loops_.clear();
      workers_.reset();
      return status;
    }
    loops_.push_back(std::move(loop));
  }
  try {
    for (auto& loop : loops_) threads_.emplace_back([raw = loop.get()] { raw->Run(); });
  } catch (const std::system_error& e) {
    stopping_ = true;
    for (auto& loop : loops_) loop->Wake();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    loops_.clear();
    workers_.reset();
    stopping_ = false;
    return InternalError(std::string("event server: cannot start the loops: ") + e.what());
  }
  started_ = true;
  return Status::Ok();
}

void EventServer::Stop() {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (stopped_) return;
  stopped_ = true;
  stopping_ = true;
  // Stop accepting at once: on Linux, shutting down a listening socket resets the
  // connections in its backlog and refuses new ones, before the loops even wake up.
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RD);
  for (auto& loop : loops_) loop->Wake();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  // Slow jobs whose connections are gone may still run; they post into the loops, which
  // live until the workers are joined.
  if (workers_) workers_->shutdown();
  loops_.clear();
  workers_.reset();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

}  // namespace podidentity::agent
