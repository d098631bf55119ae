package s3compat_test

import (
	"testing"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/internal/s3util/s3utiltest"
	"github.com/drctl/drctl/targets/s3compat"
)

var suite = &s3utiltest.Suite{NewTarget: newTarget}

func TestMain(m *testing.M) { suite.Main(m) }

func newTarget(t *testing.T, cfg s3utiltest.Config) targets.Target {
	t.Helper()
	tg, err := s3compat.New(s3compat.Options{
		Endpoint:     cfg.Endpoint,
		Bucket:       cfg.Bucket,
		Prefix:       cfg.Prefix,
		Region:       cfg.Region,
		AccessKey:    cfg.AccessKey,
		SecretKey:    cfg.SecretKey,
		PartSize:     s3compat.MinPartSize,
		ListPageSize: cfg.ListPageSize,
		ObjectLock:   cfg.ObjectLock,
		Transport:    cfg.Transport,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// TestConformance runs the suite without a prefix; the s3 package's runs
// it with one, and TestPrefix here checks the mapping.
func TestConformance(t *testing.T) { suite.Conformance(t, "") }

func TestS3(t *testing.T) { suite.S3(t) }

func TestPrefix(t *testing.T) { suite.Prefix(t) }

// TestObjectLock runs the Object Lock suite under a prefix, so that the
// keys picked for retention are seen without it.
func TestObjectLock(t *testing.T) { suite.ObjectLock(t, "some/prefix") }
