package s3_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/s3"
	"github.com/drctl/drctl/targets/targettest"
)

var srv *s3test.Server

func TestMain(m *testing.M) {
	var err error
	if srv, err = s3test.StartServer(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Stop()
	os.Exit(code)
}

func newTarget(t *testing.T, cfg targettest.S3Config, prefix string) targets.Target {
	t.Helper()
	tg, err := s3.New(t.Context(), s3.Options{
		Bucket:             cfg.Bucket,
		Prefix:             prefix,
		Endpoint:           cfg.Endpoint,
		PathStyle:          true,
		Region:             srv.Region,
		AccessKey:          cfg.AccessKey,
		SecretKey:          cfg.SecretKey,
		PartSize:           s3.MinPartSize,
		MultipartThreshold: s3.MinPartSize,
		ListPageSize:       cfg.ListPageSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// TestConformance runs the suite under a prefix, the general case (no
// prefix is the same code with an empty one).
func TestConformance(t *testing.T) {
	targettest.Run(t, func(t *testing.T) targets.Target {
		return newTarget(t, targettest.S3Config{
			Endpoint: srv.Endpoint, Bucket: srv.NewBucket(t), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		}, "some/prefix")
	})
}

func TestS3(t *testing.T) {
	targettest.RunS3(t, srv, func(t *testing.T, cfg targettest.S3Config) targets.Target {
		return newTarget(t, cfg, "")
	})
}

func TestPrefix(t *testing.T) {
	targettest.RunPrefix(t, func(t *testing.T, bucket, prefix string) targets.Target {
		return newTarget(t, targettest.S3Config{
			Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		}, prefix)
	}, srv.NewBucket(t))
}
