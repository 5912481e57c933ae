# One image with both binaries (pod-identity-webhook and pod-identity-agent): they share
# libpodidentity and every runtime library, so one image is smaller in total than two,
# is pulled once per node, and the chart needs a single image reference per release.
#
#   docker build -t pod-identity:dev .

FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ cmake ninja-build pkg-config make \
      libcpp-httplib-dev libssl-dev rapidjson-dev libyaml-cpp-dev catch2 libcli11-dev libpugixml-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY lib lib
COPY webhook webhook
COPY agent agent
COPY examples/associations.yaml examples/associations.yaml
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOD_IDENTITY_TESTS=OFF \
    && cmake --build /build \
    && strip /build/webhook/pod-identity-webhook /build/agent/pod-identity-agent

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libssl3 libyaml-cpp0.7 libcpp-httplib0.11 libpugixml1v5 ca-certificates iproute2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /build/webhook/pod-identity-webhook /build/agent/pod-identity-agent /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pod-identity-webhook"]
