package config

import "testing"

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", 0, false}, {"20MiB", 20 << 20, false}, {"20MB/s", 20e6, false}, {"100Mbit", 12_500_000, false},
		{"1.5GiB", 3 << 29, false}, {"512", 512, false}, {"fast", 0, true}, {"0MiB", 0, true}, {"-1MB", 0, true},
	} {
		got, err := ParseRate(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", 0, false}, {"512MiB", 512 << 20, false}, {"2GB", 2e9, false}, {"128.0 MiB", 128 << 20, false},
		{"100Mbit", 0, true}, {"20MiB/s", 0, true}, {"lots", 0, true}, {"0", 0, true},
	} {
		got, err := ParseSize(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
}

func TestAgentDefaults(t *testing.T) {
	var a Agent
	if h, p := a.Jobs(); h != DefaultMaxJobs || p != DefaultMaxJobs {
		t.Fatalf("jobs %d/%d", h, p)
	}
	if a.HeartbeatEvery() != DefaultHeartbeat || a.PruneSchedule() != DefaultPrune || a.BandwidthBytes() != 0 {
		t.Fatal("defaults")
	}
	a = Agent{MaxJobs: 4, MaxJobsPerRepository: 9, Prune: "off"}
	if h, p := a.Jobs(); h != 4 || p != 4 || a.PruneSchedule() != "" {
		t.Fatalf("jobs %d/%d, prune %q", h, p, a.PruneSchedule())
	}
	if _, err := ParseSchedule("*/10 * * * * *"); err != nil {
		t.Fatalf("seconds: %v", err)
	}
}
