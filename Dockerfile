# syntax=docker/dockerfile:1
# queuegate: multi-stage build. The dependency layer is cached separately from our sources, so
# a code change rebuilds only the queuegate crate.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# rdkafka builds the bundled librdkafka with gcc and make, with TLS against the image's OpenSSL.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin queuegate

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home queuegate \
 && mkdir /keys && chown 10001:10001 /keys
COPY --from=build /src/target/release/queuegate /usr/local/bin/queuegate
USER 10001
ENV QUEUEGATE_HTTP_ADDR=0.0.0.0:8080 \
    QUEUEGATE_ADMIN_ADDR=0.0.0.0:8081 \
    QUEUEGATE_LOG_FORMAT=json
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8081/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/queuegate"]
CMD ["run"]
