// Every name, path, annotation key, environment variable and limit the webhook uses,
// each with where it comes from. Defaults are EKS's, so pods look the same as on EKS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace podidentity::webhook {

// The projected service-account token, as EKS's pod-identity webhook injects it.
inline constexpr std::string_view kDefaultAudience = "pods.eks.amazonaws.com";
inline constexpr std::string_view kDefaultVolumeName = "eks-pod-identity-token";
inline constexpr std::string_view kDefaultMountPath = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
inline constexpr std::string_view kDefaultTokenFileName = "eks-pod-identity-token";
// 24 h. With this default the expiration is spread over [kJitterMinSeconds, 86400].
inline constexpr int64_t kDefaultTokenExpirationSeconds = 86400;
inline constexpr int64_t kJitterMinSeconds = 79200;  // 22 h, as EKS's webhook
// The API server rejects projected tokens shorter than 10 minutes.
inline constexpr int64_t kMinTokenExpirationSeconds = 600;
// The projected volume's file mode (0644), as the API server defaults it.
inline constexpr int kProjectedVolumeDefaultMode = 420;

// Where the node agent listens (link-local, reached through the dummy interface).
inline constexpr std::string_view kDefaultCredentialsUri = "http://169.254.170.23/v1/credentials";
inline constexpr std::string_view kDefaultCredentialsUriIpv6 = "http://[fd00:ec2::23]/v1/credentials";

// Environment variables read by the AWS SDKs' container credential provider.
inline constexpr std::string_view kEnvCredentialsFullUri = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
inline constexpr std::string_view kEnvAuthorizationTokenFile = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
inline constexpr std::string_view kEnvRegion = "AWS_REGION";
inline constexpr std::string_view kEnvDefaultRegion = "AWS_DEFAULT_REGION";

// Pod annotation: comma-separated container names that get nothing injected.
inline constexpr std::string_view kAnnotationSkipContainers = "eks.amazonaws.com/skip-containers";
// Label added to every pod we mutate (as EKS's webhook does).
inline constexpr std::string_view kLabelPodIdentity = "eks.amazonaws.com/pod-identity";
inline constexpr std::string_view kLabelPodIdentityValue = "enabled";

// Windows pods are not supported by EKS Pod Identity.
inline constexpr std::string_view kNodeSelectorOs = "kubernetes.io/os";
inline constexpr std::string_view kWindows = "windows";

// The service account a pod without serviceAccountName runs as.
inline constexpr std::string_view kDefaultServiceAccount = "default";

// Server limits.
inline constexpr size_t kDefaultMaxRequestBytes = 3 * 1024 * 1024;  // the API server's own request limit
inline constexpr int kMaxJsonDepth = 100;
inline constexpr int kDefaultPort = 8443;

}  // namespace podidentity::webhook
