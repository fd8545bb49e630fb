# syntax=docker/dockerfile:1
# Multi-stage build of a static rendezvous binary on a distroless, non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/rendezvous ./cmd/rendezvous

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rendezvous /usr/local/bin/rendezvous
USER nonroot:nonroot
VOLUME ["/data"]
# libp2p over TCP and QUIC, and the metrics endpoint.
EXPOSE 4457/tcp 4457/udp 9464/tcp
ENTRYPOINT ["/usr/local/bin/rendezvous", "serve"]
CMD ["--data-dir", "/data", \
     "--listen", "/ip4/0.0.0.0/tcp/4457", "--listen", "/ip4/0.0.0.0/udp/4457/quic-v1", \
     "--metrics-addr", "0.0.0.0:9464", "--log-format", "json"]
