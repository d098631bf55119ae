package s3compat

import (
	"context"
	"errors"

	"github.com/minio/minio-go/v7"

	"github.com/drctl/drctl/targets/internal/s3util"
)

// classify maps a minio-go error onto the targets sentinels; see
// s3util.Classifier.Classify for lost and the rules.
func (t *Target) classify(ctx context.Context, err error, lost error) error {
	var er minio.ErrorResponse
	errors.As(err, &er)
	return t.errs.Classify(ctx, err, s3util.Answer{Status: er.StatusCode, Code: er.Code, Message: er.Message}, lost)
}
