# Ringmaster as the init of a container: a multi-stage build, then a small
# runtime image with Ringmaster as ENTRYPOINT (pid 1: it reaps orphans,
# forwards signals and exits non-zero when a critical watcher fails).
#
#   docker build -t ringmaster .
#   docker run --rm -p 8080:8080 -p 9770:9770 \
#     -v "$PWD/contrib/container/token:/run/secrets/ringmaster/token:ro" ringmaster
#
# The example stack (contrib/container/ringmaster.toml) is the Python worker
# of config/example.toml; replace the runtime packages and /app with your own.
# See docs/deploy.md ("In a container, on a fleet").

# ---- build ------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# build.rs links the daemon's functions in this order (less resident code).
COPY contrib/link-order.txt ./contrib/link-order.txt
COPY vendor ./vendor
COPY src ./src
# Cargo.toml declares these targets, so their files must exist to build.
COPY bench/log_capture.rs ./bench/log_capture.rs
COPY examples ./examples
RUN cargo build --release --locked --bin ringmaster \
 && strip target/release/ringmaster

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# python3 only because the example workers are Python; tini or dumb-init are
# not needed: Ringmaster is the init.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ringmaster /usr/local/bin/ringmaster
COPY contrib/container/ringmaster.toml /etc/ringmaster/ringmaster.toml
COPY config/hello_worker.py /app/hello_worker.py
# Control and pubsub sockets (ipc://) live here when running as root.
RUN mkdir -p /run/ringmaster
EXPOSE 8080 9770
# SIGTERM (docker stop, kubelet) = graceful stop within shutdown_timeout.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ringmaster", "run", "--init"]
CMD ["/etc/ringmaster/ringmaster.toml"]
