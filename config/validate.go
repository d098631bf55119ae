package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/drctl/drctl/internal/yamlstrict"
)

// namePattern is what VM, disk and repository names must match: they
// become parts of object names in the repository and of file names on
// restore.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

const nameRule = "use letters, digits, '.', '_' and '-', starting with a letter or digit"

// schemePattern matches "s3:", "file:", "https:" ... at the start of a URL.
var schemePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// isLocation reports whether ref is a URL or a path rather than the name
// of a configured repository. Names never contain '/' or ':'.
func isLocation(ref string) bool {
	return schemePattern.MatchString(ref) || strings.ContainsRune(ref, '/') ||
		ref == "." || ref == ".." || ref == "~"
}

// validate checks the values read from the file (before environment
// overrides) and fills in defaults.
func (c *Config) validate() error {
	if c.Site != "" && !namePattern.MatchString(c.Site) {
		c.problems.Addf("site", "%q is not a valid site name: %s", c.Site, nameRule)
	}
	if c.LogLevel != "" && !slices.Contains(logLevels, c.LogLevel) {
		c.problems.Addf("log_level", "%q is not a log level: use one of %s", c.LogLevel, strings.Join(logLevels, ", "))
	}
	for _, name := range yamlstrict.SortedKeys(c.Repositories) {
		c.validateRepository(name, c.Repositories[name])
	}
	c.checkRepositoryRef("repository", c.Repository)
	diskOwner := map[string]string{} // cleaned disk path -> key of its first use
	for _, name := range yamlstrict.SortedKeys(c.VMs) {
		vm := c.VMs[name]
		vm.Name = name
		c.VMs[name] = vm
		c.validateVM(name, vm, diskOwner)
	}
	c.validateGroups()
	c.validateAgent()
	c.validateDrills()
	return c.problems.Err()
}

// validateGroups checks what the VMs of a consistency group share: one job
// snapshots them all at one instant, so they have one schedule (set on any
// of them, or the same on several) and one repository.
func (c *Config) validateGroups() {
	type shared struct{ schedule, scheduleVM, repo, repoVM string }
	groups := map[string]*shared{}
	for _, name := range yamlstrict.SortedKeys(c.VMs) {
		vm := c.VMs[name]
		if vm.Group == "" {
			continue
		}
		repo := vm.Repository
		if repo == "" {
			repo = c.Repository
		}
		g := groups[vm.Group]
		if g == nil {
			g = &shared{repo: repo, repoVM: name}
			groups[vm.Group] = g
		}
		if repo != g.repo {
			c.problems.Addf("vms."+name+".repository", "%q differs from the repository of vms.%s (%q): the VMs of group %s are committed together, to one repository",
				repo, g.repoVM, g.repo, vm.Group)
		}
		switch {
		case vm.Schedule == "":
		case g.schedule == "":
			g.schedule, g.scheduleVM = vm.Schedule, name
		case vm.Schedule != g.schedule:
			c.problems.Addf("vms."+name+".schedule", "%q differs from vms.%s.schedule (%q): the VMs of group %s are snapshotted together, on one schedule; set it on one of them, or the same on all",
				vm.Schedule, g.scheduleVM, g.schedule, vm.Group)
		}
	}
}

func (c *Config) validateRepository(name string, r RepositoryConfig) {
	p, key := c.problems, "repositories."+name
	if !namePattern.MatchString(name) {
		p.Addf(key, "%q is not a valid repository name: %s", name, nameRule)
	}
	switch {
	case r.URL == "":
		p.Addf(key+".url", "missing: set where the repository is: a directory such as /srv/drctl/repo, or s3:http://HOST:PORT/BUCKET/PREFIX")
	case strings.HasPrefix(r.URL, "s3:") && strings.Trim(strings.TrimPrefix(r.URL, "s3:"), "/") == "":
		p.Addf(key+".url", "%q names no bucket: use s3:http://HOST:PORT/BUCKET/PREFIX or s3:HOST/BUCKET/PREFIX", r.URL)
	}
	if r.Password != "" && r.PasswordFile != "" {
		p.Addf(key+".password", "both password and password_file are set: remove password and keep password_file")
	}
	if (r.AccessKeyID == "") != (r.SecretAccessKey == "") {
		p.Addf(key, "access_key_id and secret_access_key go together: set both, or neither to use the AWS default credentials (environment, ~/.aws, instance role)")
	}
	c.validateObjectLock(key, r)
}

// checkRepositoryRef checks a repository reference written in the file:
// a configured name, a URL, or a path.
func (c *Config) checkRepositoryRef(key, ref string) {
	if ref == "" || isLocation(ref) {
		return
	}
	if _, ok := c.Repositories[ref]; ok {
		return
	}
	names := yamlstrict.SortedKeys(c.Repositories)
	known := "no repositories are configured"
	if len(names) > 0 {
		known = "configured: " + strings.Join(names, ", ")
	}
	c.problems.Addf(key, "%q is not in repositories%s (%s): use one of those names, a URL such as s3:http://HOST:PORT/BUCKET/PREFIX, or a path such as ./%s",
		ref, yamlstrict.DidYouMean(ref, names), known, ref)
}

func (c *Config) validateVM(name string, vm VM, diskOwner map[string]string) {
	p, key := c.problems, "vms."+name
	if !namePattern.MatchString(name) {
		p.Addf(key, "%q is not a valid VM name: %s", name, nameRule)
	}
	c.checkRepositoryRef(key+".repository", vm.Repository)
	switch {
	case len(vm.Disks) == 0 && vm.QMP == "":
		p.Addf(key+".disks", "missing: list the VM's disks, e.g. disks: [{path: /var/lib/vms/%s.img}], or give qmp: the QMP socket of the running VM", name)
	case vm.Group != "" && vm.QMP == "":
		p.Addf(key+".group", "set without qmp: a consistency group snapshots running VMs at one instant; add qmp:")
	case vm.QGA != "" && vm.QMP == "":
		p.Addf(key+".qga", "set without qmp: the guest agent is used for snapshots of a running VM; add qmp: or remove qga:")
	case len(vm.Disks) > 0 && vm.QMP != "":
		p.Addf(key+".qmp", "set together with disks: a VM with qmp: is snapshotted with all its disks; remove disks:")
	}
	c.validateDisks(key, vm.Disks, diskOwner)
	if vm.Firmware != "" && vm.Firmware != "bios" && vm.Firmware != "uefi" {
		p.Addf(key+".firmware", "%q is not a firmware drctl knows: use bios or uefi (or leave it out to detect it)", vm.Firmware)
	}
	if vm.Schedule != "" {
		if _, err := ParseSchedule(vm.Schedule); err != nil {
			p.Addf(key+".schedule", "%q is not a valid cron schedule (%v): %s", vm.Schedule, err, scheduleHint)
		}
	}
	if vm.RPO != "" {
		if d, err := time.ParseDuration(vm.RPO); err != nil || d <= 0 {
			p.Addf(key+".rpo", "%q is not a positive duration: use e.g. 15m or 1h", vm.RPO)
		}
	}
	if vm.Keep != nil {
		c.validateKeep(key+".keep", *vm.Keep)
	}
}

// validateDisks checks disk paths and names and fills in default names
// (in place: the slice belongs to the config).
func (c *Config) validateDisks(vmKey string, disks []Disk, diskOwner map[string]string) {
	p := c.problems
	names := map[string]string{} // disk name -> key of the disk using it
	for i := range disks {
		d := &disks[i]
		key := fmt.Sprintf("%s.disks[%d]", vmKey, i)
		if d.Path == "" {
			p.Addf(key+".path", "missing: set the image file or block device to replicate")
			continue
		}
		if d.Name == "" {
			d.Name = filepath.Base(d.Path)
			if !namePattern.MatchString(d.Name) {
				p.Addf(key+".name", "the default name %q (base name of the path) is not valid: set name: (%s)", d.Name, nameRule)
			}
		} else if !namePattern.MatchString(d.Name) {
			p.Addf(key+".name", "%q is not a valid disk name: %s", d.Name, nameRule)
		}
		if other, dup := names[d.Name]; dup {
			p.Addf(key+".name", "disk name %q is already used by %s (line %d): give each disk of a VM its own name", d.Name, other, p.LineOf(other))
		}
		names[d.Name] = key
		clean := filepath.Clean(d.Path)
		if other, dup := diskOwner[clean]; dup {
			p.Addf(key+".path", "%s is also %s (line %d): list each disk once", d.Path, other, p.LineOf(other))
		}
		diskOwner[clean] = key
	}
}

func (c *Config) validateKeep(key string, k Keep) {
	rules := []struct {
		name string
		n    int
	}{{"last", k.Last}, {"hourly", k.Hourly}, {"daily", k.Daily}, {"weekly", k.Weekly}, {"monthly", k.Monthly}, {"yearly", k.Yearly}}
	total := 0
	for _, r := range rules {
		if r.n < 0 {
			c.problems.Addf(key+"."+r.name, "%d is negative: use 0 (no rule) or more", r.n)
		}
		total += max(r.n, 0)
	}
	if total == 0 {
		c.problems.Addf(key, "keeps no snapshot at all: set at least one of last, hourly, daily, weekly, monthly, yearly to 1 or more, or remove keep: to keep every snapshot")
	}
}

// resolvePaths makes relative paths in the file relative to the file's
// directory and expands a leading ~/. It runs before environment
// overrides, which stay relative to the working directory.
func (c *Config) resolvePaths() {
	if c.File == "" {
		return
	}
	dir := filepath.Dir(c.File)
	for name, r := range c.Repositories {
		if !schemePattern.MatchString(r.URL) {
			r.URL = c.absPath(dir, r.URL)
		}
		if r.PasswordFile != "" {
			r.PasswordFile = c.absPath(dir, r.PasswordFile)
		}
		c.Repositories[name] = r
	}
	c.Repository = c.resolveRef(dir, c.Repository)
	c.resolveDrillPaths(dir)
	for name, vm := range c.VMs {
		for i := range vm.Disks {
			vm.Disks[i].Path = c.absPath(dir, vm.Disks[i].Path)
		}
		if vm.QMP != "" {
			vm.QMP = c.absPath(dir, vm.QMP)
		}
		if vm.QGA != "" {
			vm.QGA = c.absPath(dir, vm.QGA)
		}
		vm.Repository = c.resolveRef(dir, vm.Repository)
		c.VMs[name] = vm
	}
}

// resolveRef resolves a repository reference that is a local path.
func (c *Config) resolveRef(dir, ref string) string {
	if !isLocation(ref) || schemePattern.MatchString(ref) {
		return ref
	}
	return c.absPath(dir, ref)
}

func (c *Config) absPath(dir, p string) string {
	p = expandHome(p, c.env.home)
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	abs, err := filepath.Abs(filepath.Join(dir, p))
	if err != nil {
		return filepath.Join(dir, p)
	}
	return abs
}

func expandHome(p, home string) string {
	if home == "" {
		return p
	}
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}
