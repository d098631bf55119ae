package report

import "time"

// Sample returns an example drill, for tests and documentation: plan
// "prod" with two VMs, db (passed, with a drill-only check) and web
// (booted but never healthy: its HTTP check failed), torn down at the
// end. Every call returns a new record, so callers may change it.
func Sample() *Drill {
	t0 := time.Date(2025, 3, 14, 2, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	db := VM{
		VM: "db", Group: "data", Snapshot: "3f9a1c2e7b4d8a60", SnapshotTime: at(-288), Consistency: "app-consistent",
		RPOSeconds:   288,
		RestoreStart: at(1.2), RestoreEnd: at(105.7), BootStart: at(106.0), Healthy: at(151.4),
		RestoreSeconds: 104.5, BootSeconds: 45.4, RTOSeconds: 151.4, RestoredBytes: 24 << 30,
		Status: StatusPassed,
		Checks: []Check{
			{Name: "login prompt", Kind: "serial", OK: true, Started: at(106.1), Finished: at(141.0), Attempts: 1,
				Output: "Debian GNU/Linux 12 db ttyS0\n\ndb login:"},
			{Name: "postgres :5432", Kind: "tcp", OK: true, Started: at(141.0), Finished: at(151.4), Attempts: 11,
				Output: "connected from 10.0.2.2:41234"},
			{Name: "orders readable", Kind: "command", DrillOnly: true, OK: true, Started: at(151.5), Finished: at(153.9), Attempts: 1,
				Output: " count  \n--------\n 184213\n(1 row)\n"},
		},
	}
	web := VM{
		VM: "web", Group: "frontend", Snapshot: "a7c03e5f19b2d4e8", SnapshotTime: at(-80), Consistency: "crash-consistent",
		RPOSeconds:   80,
		RestoreStart: at(151.6), RestoreEnd: at(190.0), BootStart: at(190.2),
		RestoreSeconds: 38.4, RestoredBytes: 6 << 30,
		Status: StatusFailed, Error: `health check "app health" failed: timed out after 2m0s`,
		Checks: []Check{
			{Name: "boot complete", Kind: "serial", OK: true, Started: at(190.3), Finished: at(220.8), Attempts: 1,
				Output: "web systemd[1]: Reached target multi-user.target"},
			{Name: "app health", Kind: "command", OK: false, Started: at(220.8), Finished: at(340.8), Attempts: 120,
				Output: "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n\r\n" +
					"<html><head><title>503 Service Unavailable</title></head>\n" +
					"<body><h1>503</h1><p>upstream db connection refused: 10.20.0.5:5432</p></body></html>\n",
				Err: "exit status 22"},
		},
	}
	return &Drill{
		Version: FormatVersion, ID: "5c1e9b7a2f3d4e60", Plan: "prod", Site: "dr-east", Host: "dr-host-1",
		Started: t0, Finished: at(341.0), Passed: false, TornDown: at(344.2),
		Network: "QEMU user networking with restrict=on: no route out of the guest",
		VMs:     []VM{db, web},
		Events:  []Event{{Time: at(344.2), What: "teardown"}},
	}
}
