# Both binaries (mzlb, zone-alb) in a minimal non-root runtime image.
#   docker build -t mzlb:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mzlb -p zone-alb \
    && install -D target/release/mzlb target/release/zone-alb -t /out/

# glibc, libgcc and CA certificates, nothing else; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/mzlb /out/zone-alb /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mzlb"]
