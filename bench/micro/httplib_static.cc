// httplib-static: a second baseline for bench/agent (a benchmark tool, not a test).
//
// cpp-httplib's server with the agent's settings (the agent's own TuneHttpServer and
// BindHttpServer with its default ServerOptions: TCP_NODELAY, keep-alive limits,
// timeouts, a 16-thread pool, backlog 1024) answering GET <path> with a fixed body and
// nothing else: no token check, no cache, no logging, no metrics. The agent's
// throughput relative to this is what our request handling costs; this relative to nginx
// is what the server model (one blocking thread per keep-alive connection) costs.
//
// Usage: httplib-static --port P --path /v1/credentials --body-file body.json [--threads 16]
// Prints {"port":P} when listening; stops on SIGTERM / SIGINT.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <httplib.h>
#include <sstream>
#include <string>
#include <thread>

#include "server.h"

int main(int argc, char** argv) {
  CLI::App app{"httplib-static: cpp-httplib with the agent's settings serving a fixed body (bench/agent baseline)"};
  int port = 0;
  int threads = 16;
  std::string path = "/v1/credentials";
  std::string body_file;
  app.add_option("--port", port, "Port on 127.0.0.1 (0: any)");
  app.add_option("--path", path, "Path to answer");
  app.add_option("--body-file", body_file, "The response body")->required()->check(CLI::ExistingFile);
  app.add_option("--threads", threads, "Worker threads")->check(CLI::Range(1, 1024));
  CLI11_PARSE(app, argc, argv);

  // SIGTERM / SIGINT are taken by a thread with sigwait (blocked everywhere else, and
  // the pool's threads inherit the mask), so stopping is not done in a signal handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::ifstream in(body_file, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  const std::string body = content.str();

  httplib::Server server;
  podidentity::agent::ServerOptions options;  // the agent's defaults
  int listen_fd = -1;
  podidentity::agent::TuneHttpServer(server, options, threads, &listen_fd);
  server.Get(path, [&body](const httplib::Request&, httplib::Response& response) {
    response.set_content(body, "application/json");
  });
  const int bound = podidentity::agent::BindHttpServer(server, {"127.0.0.1", port}, &listen_fd);
  if (bound <= 0) {
    std::fprintf(stderr, "httplib-static: cannot bind 127.0.0.1:%d\n", port);
    return 1;
  }
  std::thread stopper([&server, &stop_signals] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    server.stop();
  });
  stopper.detach();  // the process ends when listen_after_bind returns
  std::printf("{\"port\":%d}\n", bound);
  std::fflush(stdout);
  return server.listen_after_bind() ? 0 : 1;
}
