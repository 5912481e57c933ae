// `pod-identity-agent setup-link`: the DaemonSet's init step. Creates a dummy link and
// puts the agent's link-local addresses on it (169.254.170.23/32, fd00:ec2::23/128), so
// that pods reach the agent on the node through AWS_CONTAINER_CREDENTIALS_FULL_URI.
// Idempotent (a restarted init container finds the link and addresses in place). Runs
// iproute2's `ip` without a shell; needs CAP_NET_ADMIN, which only this step gets.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "podidentity/status.h"

namespace podidentity::agent {

// Runs argv, returns the exit code (or -1 when it cannot be started) and its stderr.
using CommandRunner = std::function<int(const std::vector<std::string>& argv, std::string* error_output)>;
int RunCommand(const std::vector<std::string>& argv, std::string* error_output);

// Validates the link name (1-15 chars, [A-Za-z0-9_.-]) and each address (IPv4/32-style
// CIDR or IPv6/128-style CIDR, checked with inet_pton) before running anything.
Status SetupLink(const std::string& link, const std::vector<std::string>& addresses,
                 const CommandRunner& run = RunCommand);

}  // namespace podidentity::agent
