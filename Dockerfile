# The telecons image: the one binary on a distroless base (glibc, CA certificates, no shell,
# no package manager), run as a non-root user. Build from the repository's root:
#
#   docker build -t telecons:0.1.0 .        # or: podman build -t telecons:0.1.0 .
#
# The runtime stage is also built by .ci/run, FROM scratch with the same files laid out from
# the machine's own binary (.ci/deploy-checks): keep its COPY sources as the paths below.

# The workspace's rust-version is 1.94; CI builds with 1.95.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p telecons --bin telecons \
    && install -D -m 0755 target/release/telecons /out/usr/local/bin/telecons \
    && install -d -m 0750 /out/var/lib/telecons

# gcr.io/distroless/cc-debian12: glibc and libgcc (which the binary links), CA certificates,
# tzdata and a `nonroot` user (65532); nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/ /usr/local/bin/
# The working directory, for a SQLite database (DATABASE_URL's default, sqlite://telecons.db,
# is relative to it): mount a volume here. On PostgreSQL nothing is written to disk.
COPY --from=build --chown=65532:65532 /out/var/lib/telecons /var/lib/telecons
WORKDIR /var/lib/telecons
USER 65532:65532
# HTTP_PORT's default (crates/telecons/src/config/mod.rs); the service listens on every
# interface on it.
ENV HTTP_PORT=3000
EXPOSE 3000
# Shutdown on SIGTERM takes at most 45 s (35 s for requests in flight, then 10 s for the
# background workers): stop with `docker stop -t 50` (`--stop-timeout 50` at `docker run`).
STOPSIGNAL SIGTERM
# The binary asks itself: GET http://127.0.0.1:$HTTP_PORT/-/healthz within 2 s (the base has
# no shell, curl nor wget; and a changed HTTP_PORT is followed).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/telecons", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/telecons"]
CMD ["serve"]
