# The stock gateway in a container.
#
#   docker build -t protogate .                                   # the demo build
#   docker build -t acme-gateway --build-arg PROTO_DIR=protos .   # your protos (a directory of
#                                                                 # this build context)
#   docker run -p 8080:8080 -v $PWD/config:/etc/protogate:ro acme-gateway
#
# The build stage compiles with the project's own toolchain; the final stage holds the binary,
# the C runtime it links, and nothing else, and runs as a user without privileges.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# The directory of .proto files to compile in, relative to the build context; empty for the demo.
ARG PROTO_DIR=
WORKDIR /src
COPY . .
RUN if [ -n "$PROTO_DIR" ]; then export PROTOGATE_PROTO_DIR="/src/$PROTO_DIR"; fi \
 && cargo build --release --locked --bin protogate \
 && cp target/release/protogate /protogate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /protogate /usr/local/bin/protogate
# The config is mounted here (a ConfigMap in Kubernetes); see config/protogate.example.toml.
VOLUME ["/etc/protogate"]
# The public listener and the admin listener (health, readiness, effective config).
EXPOSE 8080 9901
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/protogate", "serve", "--config", "/etc/protogate/protogate.toml"]
