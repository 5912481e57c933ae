#include "setup_link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "podidentity/log.h"

extern char** environ;

namespace podidentity::agent {
namespace {

bool ValidLinkName(const std::string& link) {
  if (link.empty() || link.size() > 15) return false;
  for (char c : link) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string ValidateCidr(const std::string& cidr) {
  const size_t slash = cidr.find('/');
  if (slash == std::string::npos) return "missing prefix length (e.g. 169.254.170.23/32)";
  const std::string ip = cidr.substr(0, slash);
  const std::string prefix = cidr.substr(slash + 1);
  std::array<unsigned char, 16> buffer{};
  int max_prefix = 0;
  if (inet_pton(AF_INET, ip.c_str(), buffer.data()) == 1) {
    max_prefix = 32;
  } else if (inet_pton(AF_INET6, ip.c_str(), buffer.data()) == 1) {
    max_prefix = 128;
  } else {
    return "not an IPv4 or IPv6 address";
  }
  if (prefix.empty() || prefix.size() > 3 || prefix.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(prefix) > max_prefix) {
    return "bad prefix length";
  }
  return "";
}

}  // namespace

int RunCommand(const std::vector<std::string>& argv, std::string* error_output) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawned != 0) {
    close(pipe_fds[0]);
    if (error_output != nullptr) *error_output = "cannot run " + argv[0] + ": " + strerror(spawned);
    return -1;
  }
  std::string output;
  char buffer[512];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0) output.append(buffer, static_cast<size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (error_output != nullptr) *error_output = output;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Status SetupLink(const std::string& link, const std::vector<std::string>& addresses, const CommandRunner& run) {
  if (!ValidLinkName(link)) return InvalidArgumentError("--link: a link name is 1-15 characters of [A-Za-z0-9_.-]");
  if (addresses.empty()) return InvalidArgumentError("--address: at least one address");
  for (const std::string& address : addresses) {
    if (std::string problem = ValidateCidr(address); !problem.empty()) {
      return InvalidArgumentError("--address " + address + ": " + problem);
    }
  }
  std::string output;
  // "ip link show" first: a restarted init container finds the link already there.
  if (run({"ip", "link", "show", "dev", link}, &output) != 0) {
    if (run({"ip", "link", "add", link, "type", "dummy"}, &output) != 0) {
      return UnavailableError("ip link add " + link + " type dummy: " + output);
    }
  }
  if (run({"ip", "link", "set", "dev", link, "up"}, &output) != 0) {
    return UnavailableError("ip link set dev " + link + " up: " + output);
  }
  for (const std::string& address : addresses) {
    const bool ipv6 = address.find(':') != std::string::npos;
    std::vector<std::string> argv = {"ip"};
    if (ipv6) argv.push_back("-6");
    // "replace" is idempotent where "add" fails on an existing address; nodad: the
    // address is ours alone on the node, waiting for duplicate detection only delays it.
    for (const char* part : {"addr", "replace"}) argv.emplace_back(part);
    argv.push_back(address);
    argv.emplace_back("dev");
    argv.push_back(link);
    if (ipv6) argv.emplace_back("nodad");
    if (run(argv, &output) != 0) return UnavailableError("ip addr replace " + address + ": " + output);
    log::Info("address ready", {{"link", link}, {"address", address}});
  }
  return Status::Ok();
}

}  // namespace podidentity::agent
