package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/drctl/drctl/internal/yamlstrict"
)

// Repository is a repository ready to open: where it is and how to
// unlock it.
type Repository struct {
	// Name is the key in repositories:, or "" when given as a URL/path.
	Name string
	// URL is a local directory path or a URL such as s3:http://host/bucket/prefix.
	URL string
	// Password is "" when none is configured; the caller may then ask on a
	// terminal or fail.
	Password string
	// PasswordSource says where Password came from, for messages such as
	// "wrong password (from DRCTL_PASSWORD_FILE /x)"; "" when none.
	PasswordSource string
	// S3 credentials and region; empty means the AWS default chain.
	AccessKeyID     string
	SecretAccessKey string
	Region          string
	// ObjectLock is the entry's object_lock with Mode in upper case, as
	// S3 spells it (GOVERNANCE, COMPLIANCE); nil when none is set.
	ObjectLock *ObjectLock
}

// ObjectLock is object_lock: of a repository: new immutable objects
// (config, keys, packs, index files, snapshots) are written with S3
// Object Lock retention for Days, so that nobody holding the
// repository's credentials can delete them sooner.
type ObjectLock struct {
	// Mode is governance or compliance (any case).
	Mode string `yaml:"mode"`
	Days int    `yaml:"days"`
}

// maxLockDays is S3's limit of a retention period, 100 years.
const maxLockDays = 36500

// validateObjectLock checks object_lock of repository key, entry r.
func (c *Config) validateObjectLock(key string, r RepositoryConfig) {
	l := r.ObjectLock
	if l == nil {
		return
	}
	p, key := c.problems, key+".object_lock"
	switch strings.ToLower(l.Mode) {
	case "governance", "compliance":
	case "":
		p.Addf(key+".mode", "missing: set governance (a user allowed s3:BypassGovernanceRetention can still delete early) or compliance (nobody can, not even the account root)")
	default:
		p.Addf(key+".mode", "%q is not an object lock mode: use governance or compliance", l.Mode)
	}
	switch {
	case l.Days == 0:
		p.Addf(key+".days", "missing: set how many days new objects stay locked, longer than an attack could go unnoticed, e.g. days: 30")
	case l.Days < 0 || l.Days > maxLockDays:
		p.Addf(key+".days", "%d is not between 1 and %d (100 years): set the number of days new objects stay locked", l.Days, maxLockDays)
	}
	if r.URL != "" && !strings.HasPrefix(r.URL, "s3:") {
		p.Addf(key, "set for %s, which is not an S3 bucket: object lock needs an S3 bucket with Object Lock enabled; use an s3: URL or remove object_lock", r.URL)
	}
}

// maxPasswordFile bounds what a password file may hold, so that pointing
// password_file at a disk image fails fast instead of reading gigabytes.
const maxPasswordFile = 64 << 10

// ResolveRepository returns the repository named by nameOrURL: a name
// from repositories:, or a URL or path. "" means the default repository
// (DRCTL_REPOSITORY, repository:, or the only configured one). The
// password comes from DRCTL_PASSWORD / DRCTL_PASSWORD_FILE when set, else
// from the entry's password_file or password.
func (c *Config) ResolveRepository(nameOrURL string) (Repository, error) {
	ref := strings.TrimSpace(nameOrURL)
	if ref == "" {
		ref = c.defaultRepository()
	}
	if ref == "" {
		return Repository{}, ErrNoRepository
	}
	rc, named := c.Repositories[ref]
	if !named {
		if err := c.checkUnknownName(ref); err != nil {
			return Repository{}, err
		}
		rc = RepositoryConfig{URL: expandHome(ref, c.env.home)}
		ref = ""
	}
	r := Repository{Name: ref, URL: rc.URL, AccessKeyID: rc.AccessKeyID, SecretAccessKey: rc.SecretAccessKey, Region: rc.Region}
	if l := rc.ObjectLock; l != nil {
		r.ObjectLock = &ObjectLock{Mode: strings.ToUpper(l.Mode), Days: l.Days}
	}
	var err error
	r.Password, r.PasswordSource, err = c.password(ref, rc)
	if err != nil {
		return Repository{}, err
	}
	return r, nil
}

// checkUnknownName rejects a bare word that looks like a mistyped
// repository name. Other bare words are local directories, as in restic.
func (c *Config) checkUnknownName(ref string) error {
	if isLocation(ref) {
		return nil
	}
	s := suggest(ref, yamlstrict.SortedKeys(c.Repositories))
	if s == "" {
		return nil
	}
	return fmt.Errorf("repository %s is not in the config (%s) (did you mean %s?); for a local directory named %s, write ./%s",
		ref, c.whereFrom(), s, ref, ref)
}

// password picks the password of repository name (config entry rc).
func (c *Config) password(name string, rc RepositoryConfig) (string, string, error) {
	switch {
	case c.env.password != "":
		return c.env.password, EnvPassword, nil
	case c.env.passwordFile != "":
		pw, err := readPasswordFile(c.env.passwordFile)
		if err != nil {
			return "", "", &FieldError{File: "environment", Key: EnvPasswordFile, Problem: passwordFileProblem(c.env.passwordFile, err), Err: err}
		}
		return pw, EnvPasswordFile + " " + c.env.passwordFile, nil
	case rc.PasswordFile != "":
		pw, err := readPasswordFile(rc.PasswordFile)
		if err != nil {
			key := "repositories." + name + ".password_file"
			return "", "", &FieldError{File: c.problems.File(), Line: c.problems.LineOf(key), Key: key, Problem: passwordFileProblem(rc.PasswordFile, err), Err: err}
		}
		return pw, "password_file " + rc.PasswordFile, nil
	case rc.Password != "":
		return rc.Password, "password in " + c.File, nil
	}
	return "", "", nil
}

// readPasswordFile returns the file's content without its final line end.
func readPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", errors.New("is a directory")
	}
	if fi.Size() > maxPasswordFile {
		return "", fmt.Errorf("is %d bytes, too big for a password file", fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		return "", errors.New("is empty")
	}
	return pw, nil
}

func passwordFileProblem(path string, err error) string {
	var pe *fs.PathError
	msg := err.Error()
	if errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	fix := "write the repository password into it (mode 0600)"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fix = "create it with the repository password (mode 0600) or fix the path"
	case errors.Is(err, fs.ErrPermission):
		fix = "make it readable by the user running drctl"
	}
	return fmt.Sprintf("cannot read password file %s: %s: %s", path, msg, fix)
}
