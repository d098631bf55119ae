package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Agent is the agent: section of drctl.yaml.
type Agent struct {
	// Metrics is where the agent serves Prometheus /metrics and /healthz,
	// host:port; "" = not served.
	Metrics string `yaml:"metrics"`
	// Heartbeat is how often the agent tells the recovery side that this
	// site is alive (default 30s).
	Heartbeat string `yaml:"heartbeat"`
	// MaxJobs bounds the replications running at once on this host
	// (default 2); MaxJobsPerRepository bounds them per repository
	// (default: MaxJobs).
	MaxJobs              int `yaml:"max_jobs"`
	MaxJobsPerRepository int `yaml:"max_jobs_per_repository"`
	// Bandwidth caps the upload rate of the whole host, e.g. "20MiB"
	// (per second) or "100Mbit"; "" = no cap.
	Bandwidth string `yaml:"bandwidth"`
	// Webhook receives RPO alerts as JSON POSTs; "" = log only.
	Webhook string `yaml:"webhook"`
	// Prune is when the agent prunes each repository it writes to, as a
	// cron schedule (default "@daily"; "off" = never).
	Prune string `yaml:"prune"`
	// PruneMemory bounds each of prune's sets of blob ids, e.g. "512MiB"
	// (default 128MiB): past it prune uses Bloom filters and may keep a
	// few unused blobs, whatever the size of the repository.
	PruneMemory string `yaml:"prune_memory"`
}

// Agent defaults.
const (
	DefaultHeartbeat = 30 * time.Second
	DefaultMaxJobs   = 2
	DefaultPrune     = "@daily"
)

// scheduleParser reads 5-field cron, 6 fields with seconds first, and
// @descriptors (@hourly, @every 30s).
var scheduleParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a schedule of the config: standard 5-field cron,
// 6 fields with seconds first ("*/10 * * * * *"), or a descriptor.
func ParseSchedule(s string) (cron.Schedule, error) {
	return scheduleParser.Parse(s)
}

const scheduleHint = `use 5 fields "minute hour day-of-month month day-of-week" such as "*/15 * * * *", 6 with seconds first such as "*/30 * * * * *", or @hourly, @daily, @every 30m`

// HeartbeatEvery is the heartbeat period.
func (a Agent) HeartbeatEvery() time.Duration {
	if d, err := time.ParseDuration(a.Heartbeat); err == nil && d > 0 {
		return d
	}
	return DefaultHeartbeat
}

// Jobs returns the host and per-repository job limits.
func (a Agent) Jobs() (host, perRepo int) {
	host = a.MaxJobs
	if host <= 0 {
		host = DefaultMaxJobs
	}
	perRepo = a.MaxJobsPerRepository
	if perRepo <= 0 || perRepo > host {
		perRepo = host
	}
	return host, perRepo
}

// PruneSchedule is the prune schedule, "" when pruning is off.
func (a Agent) PruneSchedule() string {
	switch a.Prune {
	case "":
		return DefaultPrune
	case "off":
		return ""
	}
	return a.Prune
}

// BandwidthBytes is the upload cap in bytes per second, 0 = none.
func (a Agent) BandwidthBytes() int64 {
	n, _ := ParseRate(a.Bandwidth)
	return n
}

// PruneMemoryBytes is agent.prune_memory in bytes, 0 = the default.
func (a Agent) PruneMemoryBytes() int64 {
	n, _ := ParseSize(a.PruneMemory)
	return n
}

// byteUnits are the multipliers of sizes and rates; bitUnits those only
// rates accept.
var (
	byteUnits = map[string]float64{"": 1, "B": 1,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
	bitUnits = map[string]float64{"kbit": 1e3 / 8, "Mbit": 1e6 / 8, "Gbit": 1e9 / 8, "Tbit": 1e12 / 8}
	sizeRE   = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$`)
	rateRE   = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([KMGT]i?B|[kMGT]bit|B)?(?:/s)?$`)
)

// ParseSize reads a size such as "512MiB" or "2GB" into bytes; "" is 0.
func ParseSize(s string) (int64, error) {
	return parseQuantity(s, sizeRE, "size", "512MiB or 2GB")
}

// ParseRate reads a rate such as "20MiB", "20MB/s", "100Mbit" into bytes
// per second; "" is 0.
func ParseRate(s string) (int64, error) {
	return parseQuantity(s, rateRE, "rate", "20MiB (bytes per second) or 100Mbit")
}

func parseQuantity(s string, re *regexp.Regexp, what, example string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a %s: use e.g. %s", s, what, example)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	mult, ok := byteUnits[m[2]]
	if !ok {
		mult = bitUnits[m[2]]
	}
	n := int64(v * mult)
	if n <= 0 {
		return 0, fmt.Errorf("%q: a %s must be positive", s, what)
	}
	return n, nil
}

// RPOTarget is the VM's recovery point objective, 0 when none is set.
func (vm VM) RPOTarget() time.Duration {
	d, _ := time.ParseDuration(vm.RPO)
	return d
}

func (c *Config) validateAgent() {
	p, a := c.problems, c.Agent
	if a.Metrics != "" {
		if _, _, err := net.SplitHostPort(a.Metrics); err != nil {
			p.Addf("agent.metrics", "%q is not host:port (%v): use e.g. 127.0.0.1:9610, or :9610 for every address", a.Metrics, err)
		}
	}
	if a.Heartbeat != "" {
		if d, err := time.ParseDuration(a.Heartbeat); err != nil || d <= 0 {
			p.Addf("agent.heartbeat", "%q is not a positive duration: use e.g. 30s or 1m", a.Heartbeat)
		}
	}
	if a.MaxJobs < 0 {
		p.Addf("agent.max_jobs", "must be 1 or more (default %d)", DefaultMaxJobs)
	}
	if a.MaxJobsPerRepository < 0 {
		p.Addf("agent.max_jobs_per_repository", "must be 1 or more (default: max_jobs)")
	}
	if _, err := ParseRate(a.Bandwidth); err != nil {
		p.Addf("agent.bandwidth", "%v", err)
	}
	if _, err := ParseSize(a.PruneMemory); err != nil {
		p.Addf("agent.prune_memory", "%v", err)
	}
	if a.Webhook != "" {
		if u, err := url.Parse(a.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Addf("agent.webhook", "%q is not an http(s) URL", a.Webhook)
		}
	}
	if s := a.PruneSchedule(); s != "" {
		if _, err := ParseSchedule(s); err != nil {
			p.Addf("agent.prune", "%q is not a valid schedule (%v): %s, or off", s, err, scheduleHint)
		}
	}
}
