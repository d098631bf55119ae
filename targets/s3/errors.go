package s3

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/drctl/drctl/targets/internal/s3util"
)

// classify maps an SDK error onto the targets sentinels; see
// s3util.Classifier.Classify for lost and the rules.
func (t *Target) classify(ctx context.Context, err error, lost error) error {
	var a s3util.Answer
	var ae smithy.APIError
	if errors.As(err, &ae) {
		a.Code, a.Message = ae.ErrorCode(), ae.ErrorMessage()
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		a.Status = re.HTTPStatusCode()
	}
	return t.errs.Classify(ctx, err, a, lost)
}

// wrongRegion turns S3's answer that the bucket lives in another region,
// when its header names that region, into what to set instead.
func (t *Target) wrongRegion(err error) string {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		if r := re.Response.Header.Get("X-Amz-Bucket-Region"); r != "" {
			return fmt.Sprintf("bucket %s is in region %s, not %s: set AWS_REGION or the region option", t.b.Bucket, r, t.region)
		}
	}
	return ""
}

// sendError finds the SDK's wrapper of a request that got no answer: a
// network failure whatever it wraps.
func sendError(err error) (cause error, ok bool) {
	var send *smithyhttp.RequestSendError
	if errors.As(err, &send) {
		return send.Err, true
	}
	return nil, false
}
