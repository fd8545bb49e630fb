package server

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-p2p/rendezvous"
	"github.com/rendezvous-p2p/rendezvous/pb"
	"github.com/rendezvous-p2p/rendezvous/store"
)

// MetricsTracer is told what the point does. Its methods must be fast and
// safe for concurrent use.
type MetricsTracer interface {
	// RequestHandled is called once per request, with the status answered
	// (StatusOK for an UNREGISTER, which gets no answer, unless it failed)
	// and the time from reading the request to writing the response.
	RequestHandled(t pb.Message_MessageType, status rendezvous.Status, d time.Duration)
	// StoreStats is called every Resources.StatsInterval with the store's
	// counts.
	StoreStats(st store.Stats)
	// RequestRefused is called for each request refused on a limit, with
	// the limit; RequestHandled is called for it too.
	RequestRefused(t pb.Message_MessageType, reason Refusal)
}

// Refusal names the limit a request was refused on.
type Refusal string

// The limits a request is refused on.
const (
	RefusedRate       Refusal = "rate"          // the source's rate (RegisterRate, DiscoverRate...)
	RefusedIPv4Quota  Refusal = "quota_ipv4"    // MaxRegistrationsPerIPv4
	RefusedIPv4Net    Refusal = "quota_ipv4_24" // MaxRegistrationsPerIPv4Net
	RefusedIPv6Subnet Refusal = "quota_ipv6_64" // MaxRegistrationsPerIPv6Subnet
	RefusedIPv6Net    Refusal = "quota_ipv6_48" // MaxRegistrationsPerIPv6Net
	RefusedCrowded    Refusal = "crowded"       // CrowdedPercent and CrowdedShare
	RefusedPeer       Refusal = "peer"          // MaxRegistrationsPerPeer
	RefusedFull       Refusal = "full"          // MaxRegistrations, MaxNamespaces
	RefusedACL        Refusal = "acl"           // the ACLFilter
	RefusedStore      Refusal = "store"         // the store failed or could not be reached
)

const metricNamespace = "libp2p_rendezvous"

type metricsTracer struct {
	requests      *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	registrations prometheus.Gauge
	namespaces    prometheus.Gauge
}

var _ MetricsTracer = (*metricsTracer)(nil)

// NewMetricsTracer returns a MetricsTracer that exports Prometheus metrics,
// named libp2p_rendezvous_*, through reg (prometheus.DefaultRegisterer if
// nil). Creating a second tracer on the same registerer shares the metrics.
func NewMetricsTracer(reg prometheus.Registerer) MetricsTracer {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	return &metricsTracer{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNamespace,
			Name:      "requests_total",
			Help:      "Requests handled, by message type and response status.",
		}, []string{"type", "status"})),
		refusals: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricNamespace,
			Name:      "refusals_total",
			Help:      "Requests refused on a limit, by message type and limit.",
		}, []string{"type", "reason"})),
		latency: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricNamespace,
			Name:      "request_duration_seconds",
			Help:      "Time to handle a request, from reading it to writing the response.",
			Buckets:   prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"type"})),
		registrations: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricNamespace,
			Name:      "registrations",
			Help:      "Live registrations in the store.",
		})),
		namespaces: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricNamespace,
			Name:      "namespaces",
			Help:      "Namespaces with live registrations in the store.",
		})),
	}
}

// register registers c, or returns the collector already registered in its
// place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (m *metricsTracer) RequestHandled(t pb.Message_MessageType, status rendezvous.Status, d time.Duration) {
	m.requests.WithLabelValues(t.String(), status.String()).Inc()
	m.latency.WithLabelValues(t.String()).Observe(d.Seconds())
}

func (m *metricsTracer) RequestRefused(t pb.Message_MessageType, reason Refusal) {
	m.refusals.WithLabelValues(t.String(), string(reason)).Inc()
}

func (m *metricsTracer) StoreStats(st store.Stats) {
	m.registrations.Set(float64(st.Registrations))
	m.namespaces.Set(float64(st.Namespaces))
}
