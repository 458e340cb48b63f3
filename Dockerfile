# The OpenClaw server, built from this repository (used by docker-compose.yml).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends clang libclang-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin openclaw && cp target/release/openclaw /usr/local/bin/openclaw

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/openclaw /usr/local/bin/openclaw
ENTRYPOINT ["openclaw"]
