# Shared helpers for scripts/setup, scripts/demo and scripts/test. Sourced, not run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

# Parallel build jobs: all cores.
jobs() { nproc 2>/dev/null || echo 2; }

# The CMake generator: Ninja when present (scripts/setup installs it).
generator() { if command -v ninja >/dev/null 2>&1; then echo Ninja; else echo "Unix Makefiles"; fi; }

# configure_and_build BUILD_DIR [cmake args...]
configure_and_build() {
  local dir="$1"; shift
  mkdir -p "$(dirname "$dir")"
  cmake -S "$REPO_ROOT" -B "$dir" -G "$(generator)" -Wdev -Werror=dev "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log" >&2; die "cmake configure failed for $dir"; }
  # CMake itself must be warning-free too.
  if grep -q "CMake Warning" "$dir.configure.log"; then cat "$dir.configure.log" >&2; die "CMake warnings in $dir"; fi
  cmake --build "$dir" -j "$(jobs)"
}
