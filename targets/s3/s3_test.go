package s3_test

import (
	"testing"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/internal/s3util/s3utiltest"
	"github.com/drctl/drctl/targets/s3"
)

var suite = &s3utiltest.Suite{NewTarget: newTarget}

func TestMain(m *testing.M) { suite.Main(m) }

func newTarget(t *testing.T, cfg s3utiltest.Config) targets.Target {
	t.Helper()
	tg, err := s3.New(t.Context(), s3.Options{
		Bucket:             cfg.Bucket,
		Prefix:             cfg.Prefix,
		Endpoint:           cfg.Endpoint,
		PathStyle:          true,
		Region:             cfg.Region,
		AccessKey:          cfg.AccessKey,
		SecretKey:          cfg.SecretKey,
		PartSize:           s3.MinPartSize,
		MultipartThreshold: s3.MinPartSize,
		ListPageSize:       cfg.ListPageSize,
		ObjectLock:         cfg.ObjectLock,
		Transport:          cfg.Transport,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// TestConformance runs the suite under a prefix, the general case (no
// prefix is the same code with an empty one).
func TestConformance(t *testing.T) { suite.Conformance(t, "some/prefix") }

func TestS3(t *testing.T) { suite.S3(t) }

func TestPrefix(t *testing.T) { suite.Prefix(t) }

// TestObjectLock runs the Object Lock suite under a prefix, so that the
// keys picked for retention are seen without it.
func TestObjectLock(t *testing.T) { suite.ObjectLock(t, "some/prefix") }
