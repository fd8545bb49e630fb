package main

import (
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// resourceMetrics says what go-libp2p's resource manager reports.
type resourceMetrics int

const (
	// resourceMetricsOff reports nothing: the resource manager keeps no
	// trace, so no request pays for one (serve without --metrics-addr,
	// where nothing could read them).
	resourceMetricsOff resourceMetrics = iota
	// resourceMetricsCore reports those of refusedAndInUse (serve with
	// --metrics-addr).
	resourceMetricsCore
	// resourceMetricsFull reports all of go-libp2p's resource-manager
	// metrics (serve --metrics-addr --resource-metrics).
	resourceMetricsFull
)

// resourceMetricsOptions are the options of go-libp2p's resource manager
// that set what it reports to Prometheus for m. They are go-libp2p's own
// metrics, registered by libp2p.PrometheusRegisterer.
func resourceMetricsOptions(m resourceMetrics, limits rcmgr.Limiter) []rcmgr.Option {
	switch m {
	case resourceMetricsFull:
		return nil
	case resourceMetricsCore:
		// The limits are reported once, as go-libp2p's reporter does.
		rcmgr.StatsTraceReporter{}.ReportSystemLimits(limits)
		return []rcmgr.Option{rcmgr.WithMetricsDisabled(), rcmgr.WithTraceReporter(refusedAndInUse{})}
	}
	return []rcmgr.Option{rcmgr.WithMetricsDisabled()}
}

// refusedAndInUse is the resource manager's trace reporter unless serve is
// told --resource-metrics. Of go-libp2p's reporter it keeps what the
// operating guide and the dashboard read, at a small part of the cost:
// libp2p_rcmgr_blocked_resources (every refusal, by scope and resource),
// and libp2p_rcmgr_connections and libp2p_rcmgr_streams of the system,
// transient and protocol scopes. It leaves out the per-peer histograms and
// the memory gauges, which every stream's reservations keep updating.
type refusedAndInUse struct{}

// ConsumeEvent passes evt on to go-libp2p's reporter if it is one of
// those kept.
func (refusedAndInUse) ConsumeEvent(evt rcmgr.TraceEvt) {
	switch evt.Type {
	case rcmgr.TraceBlockAddConnEvt, rcmgr.TraceBlockAddStreamEvt, rcmgr.TraceBlockReserveMemoryEvt:
	case rcmgr.TraceAddStreamEvt, rcmgr.TraceRemoveStreamEvt, rcmgr.TraceAddConnEvt, rcmgr.TraceRemoveConnEvt:
		// ParseProtocolScopeName is "" for a protocol's per-peer scope.
		if !rcmgr.IsSystemScope(evt.Name) && !rcmgr.IsTransientScope(evt.Name) && rcmgr.ParseProtocolScopeName(evt.Name) == "" {
			return
		}
	default:
		return
	}
	rcmgr.StatsTraceReporter{}.ConsumeEvent(evt)
}
