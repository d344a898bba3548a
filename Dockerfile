# One image with the three programs: emulator, simdevice and invoker.
# Built the same way as `make build`, statically, for the platform asked
# (docker buildx --platform linux/amd64,linux/arm64): Go cross-compiles
# on the builder's own platform, as make image-binaries does.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux TARGETARCH=amd64
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api ./api
COPY emulator ./emulator
COPY simdevice ./simdevice
COPY invoker ./invoker
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -o /out/ ./emulator ./simdevice ./invoker

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/ /usr/local/bin/
COPY emulator/demo-seed.json /etc/iothub/demo-seed.json
# MQTT over TLS, HTTPS (REST and MQTT over WebSocket), AMQP, plain AMQP,
# admin (health, CA, dashboard). A binary run on a laptop serves loopback
# only; in a container every listener serves every interface, so the
# published ports reach them (compose publishes the dashboard's on the
# host's loopback only).
ENV IOTHUB_EMULATOR_MQTT_ADDR=:8883 IOTHUB_EMULATOR_HTTPS_ADDR=:443 IOTHUB_EMULATOR_AMQP_ADDR=:5671 \
    IOTHUB_EMULATOR_AMQP_PLAIN_ADDR=:5672 IOTHUB_EMULATOR_ADMIN_ADDR=:8080
EXPOSE 8883 443 5671 5672 8080
ENTRYPOINT []
CMD ["emulator"]
