# syntax=docker/dockerfile:1
# Multi-stage build of a static rendezvous binary on a distroless, non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/rendezvous ./cmd/rendezvous
# The data directory, empty: copied below owned by the user serve runs as, so
# that a new named volume mounted on it is writable by that user.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rendezvous /usr/local/bin/rendezvous
# nonroot is uid and gid 65532 in the distroless images.
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
VOLUME ["/data"]
# libp2p over TCP, and QUIC, WebTransport and WebRTC-direct on one UDP port;
# the metrics endpoint.
EXPOSE 4457/tcp 4457/udp 9464/tcp
ENTRYPOINT ["/usr/local/bin/rendezvous", "serve"]
CMD ["--data-dir", "/data", \
     "--listen", "/ip4/0.0.0.0/tcp/4457", "--listen", "/ip4/0.0.0.0/udp/4457/quic-v1", \
     "--listen", "/ip4/0.0.0.0/udp/4457/quic-v1/webtransport", "--listen", "/ip4/0.0.0.0/udp/4457/webrtc-direct", \
     "--metrics-addr", "0.0.0.0:9464", "--log-format", "json"]
