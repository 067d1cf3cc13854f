# saaskit container image: build in a full Rust image, run from a slim one as a non-root user.
#   docker build -t saaskit .
#   docker run -p 8000:8000 -v saaskit-data:/data saaskit
# SQLite is compiled in (bundled) and TLS is rustls: the runtime needs no system libraries
# beyond libc and CA certificates (for SMTP over TLS).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source changes do not rebuild them: the workspace's manifests with
# placeholder sources (the server, the saaskit library, the example product, the benchmarks, the
# generator's checked-in output): every workspace member must be there for cargo to start.
COPY Cargo.toml Cargo.lock ./
COPY saaskit/Cargo.toml saaskit/Cargo.toml
COPY example/Cargo.toml example/Cargo.toml
COPY bench/Cargo.toml bench/Cargo.toml
COPY tests/generated/Cargo.toml tests/generated/Cargo.toml
RUN mkdir -p src saaskit/src example/src bench/src tests/generated/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch saaskit/src/lib.rs example/src/lib.rs tests/generated/src/lib.rs \
 && echo 'fn main() {}' > bench/src/main.rs \
 && cargo build --release --locked --bin saaskit \
 && rm -rf src saaskit/src example/src bench/src tests/generated/src
COPY . .
# Make sure cargo sees the real sources as newer than the placeholders.
RUN touch src/main.rs saaskit/src/lib.rs example/src/lib.rs \
 && cargo build --release --locked --bin saaskit \
 && strip target/release/saaskit

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home saaskit \
 && install -d -o saaskit -m 0700 /keys
COPY --from=build /src/target/release/saaskit /usr/local/bin/saaskit
USER saaskit
WORKDIR /data
ENV SAASKIT_BIND=0.0.0.0:8000 \
    SAASKIT_DATABASE_URL=sqlite:///data/saaskit.db \
    SAASKIT_MAIL_DIR=/data/mail \
    SAASKIT_LOG_FORMAT=json
EXPOSE 8000
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s CMD ["/usr/local/bin/saaskit", "check-ready"]
ENTRYPOINT ["/usr/local/bin/saaskit"]
CMD ["serve"]
