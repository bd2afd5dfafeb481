# syntax=docker/dockerfile:1
# Dev image for the example's Rust backend (examples/fullstack/backend) that works on its
# own: the static `api` binary is built in and started by syncd-supervise, so a fresh pod
# serves before syncd's first sync; syncd then replaces /app/bin/api with each host build
# and SIGHUPs PID 1.
#
# For real use, with BuildKit and a registry (or `kind load docker-image`):
#
#   docker build -f deploy/dev/backend.Dockerfile -t REGISTRY/fullstack-backend examples/fullstack
#
# The build context is examples/fullstack (it needs backend/ and runtime/). Not built by this
# repository's tests: they have no registry, and rust:1 / busybox come from Docker Hub.
#
# Crates: Debian's packages, as on the host (backend/.cargo/config.toml replaces crates.io with
# /usr/share/cargo/registry; Cargo.lock holds Debian 12's versions, hence the bookworm image).
# The target directory is a BuildKit cache mount, so a rebuild after a source edit recompiles
# only the crate (the cache survives image rebuilds, it is not part of any layer). The binary
# is copied out of the cache mount in the same RUN.

FROM rust:1-bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librust-tokio-dev librust-hyper-dev librust-tokio-postgres-dev librust-serde-json-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY backend/ ./
# .cargo/config.toml links with +crt-static (build.target = the host's triple): a static
# binary that runs on busybox, no libc; it lands in target/<triple>/release/.
RUN --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin api \
    && install -D -m 0755 target/*/release/api /out/api

FROM busybox:1.36
# busybox brings what syncd needs in a container: sh, tar, find, xargs, sha1sum, dd.
COPY runtime/syncd-supervise /usr/local/bin/syncd-supervise
COPY --from=build /out/api /app/bin/api
ENV PORT=8080
EXPOSE 8080
CMD ["/usr/local/bin/syncd-supervise", "/app/bin/api"]
