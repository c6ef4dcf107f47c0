# plugin-host with the example plugins, built from this repository.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p server -p plugin-hello -p plugin-greeter

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/plugin-host plugin-host
COPY --from=build /src/target/release/plugin-host /usr/local/bin/plugin-host
COPY --from=build /src/target/release/libplugin_hello.so /src/target/release/libplugin_greeter.so /opt/plugins/
USER plugin-host
EXPOSE 8700
ENTRYPOINT ["plugin-host", "serve", "--listen", "0.0.0.0:8700", "--plugins-dir", "/opt/plugins", "--data-dir", "/var/lib/plugin-host"]
