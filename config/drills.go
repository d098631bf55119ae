package config

import (
	"fmt"
	"os"
)

// Drill is one entry of drills: a DR drill the agent runs on a schedule
// (at the recovery site, which may run an agent with drills and no VMs).
type Drill struct {
	// Plan is the recovery plan file (relative to this file).
	Plan     string `yaml:"plan"`
	Schedule string `yaml:"schedule"`
	// Repository is where the plan's VMs are; "" = the default.
	Repository string `yaml:"repository"`
	// StateDir is where the drill boots its replicas; "" = the plan's
	// state_dir, else the drctl state directory's site/.
	StateDir string `yaml:"state_dir"`
}

func (c *Config) validateDrills() {
	p := c.problems
	for i, d := range c.Drills {
		key := fmt.Sprintf("drills[%d]", i)
		if d.Plan == "" {
			p.Addf(key+".plan", "missing: name the recovery plan file to drill")
		}
		if d.Schedule == "" {
			p.Addf(key+".schedule", "missing: when to run the drill, e.g. \"0 3 * * 6\" (Saturdays at 03:00)")
		} else if _, err := ParseSchedule(d.Schedule); err != nil {
			p.Addf(key+".schedule", "%q is not a valid cron schedule (%v): %s", d.Schedule, err, scheduleHint)
		}
		c.checkRepositoryRef(key+".repository", d.Repository)
	}
}

// resolveDrillPaths makes plan and state paths relative to the file.
func (c *Config) resolveDrillPaths(dir string) {
	for i := range c.Drills {
		if c.Drills[i].Plan != "" {
			c.Drills[i].Plan = c.absPath(dir, c.Drills[i].Plan)
		}
		if c.Drills[i].StateDir != "" {
			c.Drills[i].StateDir = c.absPath(dir, c.Drills[i].StateDir)
		}
		c.Drills[i].Repository = c.resolveRef(dir, c.Drills[i].Repository)
	}
	c.Warnings = append(c.Warnings, c.checkPlanFiles()...)
}

// checkPlanFiles reports drill plans that cannot be read (not parsed
// here: the plan may change between reloads, and the drill reports it).
func (c *Config) checkPlanFiles() []string {
	var warn []string
	for i, d := range c.Drills {
		if _, err := os.Stat(d.Plan); err != nil {
			warn = append(warn, fmt.Sprintf("drills[%d].plan: %v", i, err))
		}
	}
	return warn
}
