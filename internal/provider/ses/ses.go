// Package ses rotates the IAM access keys that Amazon SES sends with: IAM
// CreateAccessKey and DeleteAccessKey with the mount's credential, STS
// GetCallerIdentity with the new key to prove it works, and the SES SMTP
// password derived from a secret access key.
//
// The AWS configuration is built by hand from the Endpoint alone: no
// environment variables, shared files or instance roles are ever read, so
// the only credential in play is the one Vault holds.
package ses

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// Name is the provider's name in errors.
const Name = "ses"

// Regions are the AWS regions with an SES endpoint, from "Amazon Simple
// Email Service endpoints and quotas":
// https://docs.aws.amazon.com/general/latest/gr/ses.html
var Regions = []string{
	"us-east-1", "us-east-2", "us-west-1", "us-west-2",
	"af-south-1",
	"ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3",
	"ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
	"ca-central-1",
	"eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-north-1",
	"il-central-1", "me-south-1", "me-central-1",
	"sa-east-1",
	"us-gov-east-1", "us-gov-west-1",
}

// DefaultKeyPropagation is how long Test keeps retrying a new key that STS
// does not know yet: IAM is eventually consistent, and a key just created
// can be refused for some seconds.
const DefaultKeyPropagation = 15 * time.Second

// propagationPoll is the pause between two such tries.
const propagationPoll = time.Second

// maxAttempts bounds the SDK's own retries of a throttled or failed call;
// the engine retries a failed rotation later with its own backoff.
const maxAttempts = 2

// Driver is the SES (IAM) driver.
type Driver struct {
	iam    *iam.Client
	cfg    aws.Config
	stsURL string
	// KeyPropagation is how long Test retries InvalidClientTokenId for a
	// new key; DefaultKeyPropagation unless changed.
	KeyPropagation time.Duration
}

var _ provider.Driver = (*Driver)(nil)

// New checks ep (BaseURL, Region) and returns a driver whose IAM calls are
// signed with ep.Auth. An empty BaseURL means AWS's public endpoints for
// the region; a BaseURL set is used for both IAM and STS.
func New(ep provider.Endpoint) (*Driver, error) {
	if !slices.Contains(Regions, ep.Region) {
		return nil, fmt.Errorf("region %q is not an SES region; use one of %s", ep.Region, strings.Join(Regions, ", "))
	}
	iamURL, _ := DefaultBaseURL(ep.Region)
	stsURL := DefaultSTSURL(ep.Region)
	if ep.BaseURL != "" {
		if _, err := provider.CheckBaseURL(ep.BaseURL); err != nil {
			return nil, fmt.Errorf("base_url %v", err)
		}
		iamURL, stsURL = ep.BaseURL, ep.BaseURL
	}
	cfg := aws.Config{
		Region:      ep.Region,
		Credentials: staticCredentials(ep.Auth),
		HTTPClient:  ep.Client(),
		Retryer:     newRetryer,
	}
	client := iam.NewFromConfig(cfg, func(o *iam.Options) {
		o.Region = iamSigningRegion(ep.Region)
		o.BaseEndpoint = aws.String(iamURL)
	})
	return &Driver{iam: client, cfg: cfg, stsURL: stsURL, KeyPropagation: DefaultKeyPropagation}, nil
}

// DefaultBaseURL is IAM's endpoint for region: IAM is global, one endpoint
// per partition.
func DefaultBaseURL(region string) (string, error) {
	if !slices.Contains(Regions, region) {
		return "", fmt.Errorf("region %q is not an SES region", region)
	}
	if isGovCloud(region) {
		return "https://iam.us-gov.amazonaws.com", nil
	}
	return "https://iam.amazonaws.com", nil
}

// DefaultSTSURL is STS's regional endpoint for region.
func DefaultSTSURL(region string) string {
	return "https://sts." + region + ".amazonaws.com"
}

// iamSigningRegion is the region IAM's global endpoint expects in a
// signature's scope.
func iamSigningRegion(region string) string {
	if isGovCloud(region) {
		return "us-gov-west-1"
	}
	return "us-east-1"
}

func isGovCloud(region string) bool { return strings.HasPrefix(region, "us-gov-") }

func staticCredentials(k provider.Key) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(k.ID, k.Secret, "")
}

// newRetryer is the SDK's standard retryer with few attempts, a short
// backoff and no retry quota, so a failing call returns to the engine soon.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = time.Second
		o.RateLimiter = ratelimit.None
	})
}

// Create makes a new access key for like.User. IAM allows two keys per
// user; when the user has two, Create fails with ErrKeyLimit and deletes
// nothing.
func (d *Driver) Create(ctx context.Context, like provider.Key) (provider.Key, error) {
	const op = "create key"
	if like.User == "" {
		return provider.Key{}, &provider.Error{Provider: Name, Op: op, Err: errors.New("the key names no IAM user")}
	}
	out, err := d.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(like.User)})
	if err != nil {
		e := callError(ctx, op, err)
		if e.Code == "LimitExceeded" {
			e.Err = fmt.Errorf("%w: IAM user %q already has two access keys; delete by hand the one Vault does not hold",
				provider.ErrKeyLimit, like.User)
		}
		return provider.Key{}, e
	}
	if out.AccessKey == nil || aws.ToString(out.AccessKey.AccessKeyId) == "" || aws.ToString(out.AccessKey.SecretAccessKey) == "" {
		return provider.Key{}, &provider.Error{Provider: Name, Op: op, Err: errors.New("the answer has no access key")}
	}
	return provider.Key{ID: *out.AccessKey.AccessKeyId, Secret: *out.AccessKey.SecretAccessKey, Name: like.Name, User: like.User}, nil
}

// Test calls STS GetCallerIdentity signed with k and fails unless AWS
// accepts the key and names k.User as its owner. A key refused as unknown
// is tried again for KeyPropagation, since a new key takes a while to
// reach every AWS endpoint.
func (d *Driver) Test(ctx context.Context, k provider.Key) error {
	const op = "test key"
	if k.User == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the key names no IAM user")}
	}
	client := sts.NewFromConfig(d.cfg, func(o *sts.Options) {
		o.Credentials = staticCredentials(k)
		o.BaseEndpoint = aws.String(d.stsURL)
	})
	deadline := time.Now().Add(d.KeyPropagation)
	for {
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err == nil {
			return checkOwner(op, aws.ToString(out.Arn), k.User)
		}
		e := callError(ctx, op, err)
		if e.Code != "InvalidClientTokenId" || !time.Now().Add(propagationPoll).Before(deadline) {
			return e
		}
		if werr := wait(ctx, propagationPoll); werr != nil {
			return &provider.Error{Provider: Name, Op: op, Err: werr}
		}
	}
}

// checkOwner accepts an ARN arn:aws:iam::ACCOUNT:user/[PATH/]NAME whose
// NAME is userName.
func checkOwner(op, arn, userName string) error {
	_, resource, _ := strings.Cut(arn, ":user/")
	if strings.HasPrefix(arn, "arn:") && resource != "" {
		if name := resource[strings.LastIndex(resource, "/")+1:]; name == userName {
			return nil
		}
	}
	return &provider.Error{Provider: Name, Op: op,
		Err: fmt.Errorf("the key does not belong to IAM user %q", userName)}
}

// Delete removes access key k.ID of k.User; a key already gone is success.
func (d *Driver) Delete(ctx context.Context, k provider.Key) error {
	const op = "delete key"
	// Without UserName IAM looks for the key under the caller's own user and
	// answers NoSuchEntity for another user's key: taken as "already gone",
	// that would leave the key alive.
	if k.ID == "" || k.User == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the key needs an access key id and an IAM user")}
	}
	_, err := d.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{AccessKeyId: aws.String(k.ID), UserName: aws.String(k.User)})
	if err != nil {
		e := callError(ctx, op, err)
		if e.Code == "NoSuchEntity" {
			return nil
		}
		return e
	}
	return nil
}

// callError turns an SDK error into a provider.Error: the HTTP status, the
// AWS error code and Retry-After, never the error message (which could
// echo request data) nor anything of the request.
func callError(ctx context.Context, op string, err error) *provider.Error {
	e := &provider.Error{Provider: Name, Op: op}
	var resp *awshttp.ResponseError
	if errors.As(err, &resp) && resp.Response != nil {
		e.Status = resp.HTTPStatusCode()
		e.RetryAfter = provider.RetryAfter(resp.Response.Header)
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		e.Code = safeCode(api.ErrorCode())
	}
	var uerr *url.Error
	switch {
	case ctx.Err() != nil:
		e.Err = ctx.Err()
	case errors.As(err, &uerr):
		e.Err = uerr // method, URL (no credentials: CheckBaseURL) and the transport error
	case e.Code == "":
		e.Err = errors.New("unreadable answer")
	}
	return e
}

var codeRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// safeCode keeps an AWS error code only when it looks like one.
func safeCode(code string) string {
	if codeRE.MatchString(code) {
		return code
	}
	return ""
}

func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
