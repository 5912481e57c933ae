// Helpers shared by the library's unit tests: a throwaway directory, a counting signal
// to wait on (instead of sleeping), and the test signing keys under testdata/jwt.
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <system_error>

#include "podidentity/token_minter.h"

namespace podidentity::testing {

// A fresh directory under the system temp dir (mkdtemp), removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "podidentity-test-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // The path of `name` inside the directory.
  std::string Path(const std::string& name) const { return (path_ / name).string(); }
  // Writes `name` through a temporary file and a rename, the way a ConfigMap update
  // replaces files (a reader never sees half a file); returns its path.
  std::string Write(const std::string& name, const std::string& content) const {
    const std::filesystem::path tmp = path_ / (name + ".tmp");
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << content;
      REQUIRE(out.good());
    }
    std::filesystem::rename(tmp, path_ / name);
    return Path(name);
  }

 private:
  std::filesystem::path path_;
};

// Counts events and lets a thread wait for a count. The wait has a safety limit so that
// a regression fails the test instead of hanging it; with correct code the limit is
// never reached (nothing here sleeps to synchronise).
class Signal {
 public:
  void Notify() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++count_;
    }
    cv_.notify_all();
  }
  bool WaitFor(int count, std::chrono::seconds limit = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return count_ >= count; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

// A file under testdata/jwt (TESTDATA_DIR is set per test binary).
inline std::string ReadJwtTestData(const std::string& name) {
  std::ifstream in(std::string(TESTDATA_DIR) + "/jwt/" + name);
  REQUIRE(in);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// One of the fixed test signing keys under testdata/jwt, with `kid`.
inline SigningKey JwtTestKey(const std::string& name, const std::string& kid) {
  auto key = SigningKey::FromPrivateKeyPem(ReadJwtTestData(name), kid);
  REQUIRE(key.ok());
  return *key;
}

}  // namespace podidentity::testing
