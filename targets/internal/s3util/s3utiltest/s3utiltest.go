// Package s3utiltest runs the target suites of targettest on both S3
// targets alike, against one versitygw server per test binary, so that
// the two are held to the same tests set up the same way.
package s3utiltest

import (
	"fmt"
	"os"
	"testing"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/targettest"
)

// Config is what a target needs to reach the test server: Region and a
// prefix besides targettest.S3Config.
type Config struct {
	targettest.S3Config
	Region string
	Prefix string
}

// Suite is the tests of one target package. NewTarget returns the bare
// target (no retry layer) for cfg, with what targettest.S3Config asks of
// a factory (a 5 MiB part size, ListPageSize when set).
type Suite struct {
	NewTarget func(t *testing.T, cfg Config) targets.Target

	srv *s3test.Server
}

// Main is the package's TestMain: it starts the server, runs the tests,
// stops the server and exits.
func (s *Suite) Main(m *testing.M) {
	var err error
	if s.srv, err = s3test.StartServer(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	s.srv.Stop()
	os.Exit(code)
}

// Conformance runs targettest.Run on a fresh bucket for each test, under
// prefix.
func (s *Suite) Conformance(t *testing.T, prefix string) {
	targettest.Run(t, func(t *testing.T) targets.Target {
		return s.newTarget(t, s.config(s.srv.NewBucket(t)), prefix)
	})
}

// S3 runs targettest.RunS3, without a prefix.
func (s *Suite) S3(t *testing.T) {
	targettest.RunS3(t, s.srv, func(t *testing.T, cfg targettest.S3Config) targets.Target {
		return s.newTarget(t, cfg, "")
	})
}

// ObjectLock runs targettest.RunObjectLock under prefix.
func (s *Suite) ObjectLock(t *testing.T, prefix string) {
	targettest.RunObjectLock(t, s.srv, prefix, func(t *testing.T, cfg targettest.S3Config) targets.Target {
		return s.newTarget(t, cfg, prefix)
	})
}

// Prefix runs targettest.RunPrefix on one fresh bucket.
func (s *Suite) Prefix(t *testing.T) {
	targettest.RunPrefix(t, func(t *testing.T, bucket, prefix string) targets.Target {
		return s.newTarget(t, s.config(bucket), prefix)
	}, s.srv.NewBucket(t))
}

// config is the server's settings for bucket.
func (s *Suite) config(bucket string) targettest.S3Config {
	return targettest.S3Config{Endpoint: s.srv.Endpoint, Bucket: bucket, AccessKey: s.srv.AccessKey, SecretKey: s.srv.SecretKey}
}

func (s *Suite) newTarget(t *testing.T, cfg targettest.S3Config, prefix string) targets.Target {
	t.Helper()
	return s.NewTarget(t, Config{S3Config: cfg, Region: s.srv.Region, Prefix: prefix})
}
