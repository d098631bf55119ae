package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg           *prometheus.Registry
	lastSuccess   *prometheus.GaugeVec
	lastError     *prometheus.GaugeVec
	rpo           *prometheus.GaugeVec
	rpoTarget     *prometheus.GaugeVec
	rpoViolated   *prometheus.GaugeVec
	duration      *prometheus.GaugeVec
	bytesRead     *prometheus.CounterVec
	bytesUploaded *prometheus.CounterVec
	runs          *prometheus.CounterVec
	snapshots     *prometheus.GaugeVec
	prunes        *prometheus.CounterVec
	repoSize      *prometheus.GaugeVec
	repoLogical   *prometheus.GaugeVec
	repoDedup     *prometheus.GaugeVec
	running       prometheus.Gauge
	drills        *prometheus.CounterVec
	drillPassed   *prometheus.GaugeVec
	drillTime     *prometheus.GaugeVec
	drillRTO      *prometheus.GaugeVec
	reloads       *prometheus.CounterVec
}

func newMetrics() *metrics {
	vm := []string{"vm"}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_vm_last_success_timestamp_seconds",
			Help: "Time of the VM's newest committed snapshot."}, vm),
		lastError: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_vm_last_error_timestamp_seconds",
			Help: "Time of the VM's last failed replication."}, vm),
		rpo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_vm_rpo_seconds",
			Help: "Age of the VM's newest recovery point: the data a failover now would lose."}, vm),
		rpoTarget: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_vm_rpo_target_seconds",
			Help: "The VM's RPO target (0: none)."}, vm),
		rpoViolated: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_vm_rpo_violated",
			Help: "1 while the VM's newest recovery point is older than its RPO target."}, vm),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_vm_snapshot_duration_seconds",
			Help: "Wall time of the VM's last successful replication."}, vm),
		bytesRead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drctl_vm_bytes_read_total",
			Help: "Bytes read from the VM's disks."}, vm),
		bytesUploaded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drctl_vm_bytes_uploaded_total",
			Help: "New bytes stored in the repository for the VM (after dedup and compression)."}, vm),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drctl_vm_replications_total",
			Help: "Replication runs by result: ok, error, skipped (previous run still going), cancelled."}, []string{"vm", "result"}),
		snapshots: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_vm_snapshots",
			Help: "Snapshots of the VM in its repository, after retention."}, vm),
		prunes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drctl_repository_prunes_total",
			Help: "Prune runs by result."}, []string{"repository", "result"}),
		repoSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_repository_size_bytes",
			Help: "Bytes of the repository's packs and index files: the last scan (at start, after each prune and every 10 minutes) plus what this agent has written since."}, []string{"repository"}),
		repoLogical: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_repository_logical_bytes",
			Help: "Allocated bytes of every snapshot's disks: what the snapshots would take stored one by one."}, []string{"repository"}),
		repoDedup: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_repository_dedup_ratio",
			Help: "Logical bytes over stored bytes (dedup and compression together)."}, []string{"repository"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "drctl_agent_jobs_running",
			Help: "Jobs holding a concurrency slot."}),
		drills: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drctl_drills_total",
			Help: "Scheduled DR drills by result: passed, failed, error (could not run)."}, []string{"plan", "result"}),
		drillPassed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_drill_passed",
			Help: "1 if the plan's last drill passed."}, []string{"plan"}),
		drillTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_drill_last_timestamp_seconds",
			Help: "Start of the plan's last drill."}, []string{"plan"}),
		drillRTO: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drctl_drill_rto_seconds",
			Help: "Longest RTO of a VM in the plan's last drill."}, []string{"plan"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drctl_agent_config_reloads_total",
			Help: "Config reloads (SIGHUP) by result."}, []string{"result"}),
	}
	m.reg.MustRegister(m.lastSuccess, m.lastError, m.rpo, m.rpoTarget, m.rpoViolated, m.duration, m.bytesRead, m.bytesUploaded,
		m.runs, m.snapshots, m.prunes, m.repoSize, m.repoLogical, m.repoDedup, m.running, m.reloads, m.drills, m.drillPassed, m.drillTime, m.drillRTO,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// forget drops the series of a VM that left the config.
func (m *metrics) forget(vm string) {
	for _, g := range []*prometheus.GaugeVec{m.lastSuccess, m.lastError, m.rpo, m.rpoTarget, m.rpoViolated, m.duration, m.snapshots} {
		g.DeleteLabelValues(vm)
	}
	for _, c := range []*prometheus.CounterVec{m.bytesRead, m.bytesUploaded} {
		c.DeleteLabelValues(vm)
	}
	m.runs.DeletePartialMatch(prometheus.Labels{"vm": vm})
}

// ReloadResult counts a config reload (the caller validates and reloads).
func (a *Agent) ReloadResult(err error) {
	a.metrics.reloads.WithLabelValues(result(err)).Inc()
}
