# One image with the three programs: emulator, simdevice and invoker.
# Built the same way as `make build`, statically.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api ./api
COPY emulator ./emulator
COPY simdevice ./simdevice
COPY invoker ./invoker
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./emulator ./simdevice ./invoker

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/ /usr/local/bin/
COPY emulator/demo-seed.json /etc/iothub/demo-seed.json
# MQTT over TLS, HTTPS (REST and MQTT over WebSocket), admin (health, CA,
# dashboard). In a container the admin listener serves every interface,
# so the published port reaches it; publish it on the host's loopback.
ENV IOTHUB_EMULATOR_ADMIN_ADDR=:8080
EXPOSE 8883 443 5671 5672 8080
ENTRYPOINT []
CMD ["emulator"]
