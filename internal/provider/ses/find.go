package ses

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

var _ provider.Finder = (*Driver)(nil)

// Find returns the id of the one access key of like.User that is not in
// held and was created at or after since: a key Create made whose id the
// engine lost. IAM keys have no name, so the user and the creation time are
// the only marks; IAM records CreateDate to the second, so since is cut to
// the second too. Two such keys are an error; the driver never guesses
// which to remove.
func (d *Driver) Find(ctx context.Context, like provider.Key, since time.Time, held []string) (string, bool, error) {
	const op = "find key"
	if like.User == "" {
		return "", false, &provider.Error{Provider: Name, Op: op, Err: errors.New("the key names no IAM user")}
	}
	from := since.Truncate(time.Second)
	var found []string
	pages := iam.NewListAccessKeysPaginator(d.iam, &iam.ListAccessKeysInput{UserName: aws.String(like.User)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return "", false, callError(ctx, op, err)
		}
		for _, k := range page.AccessKeyMetadata {
			id := aws.ToString(k.AccessKeyId)
			if id != "" && !slices.Contains(held, id) && k.CreateDate != nil && !k.CreateDate.Before(from) {
				found = append(found, id)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", false, nil
	case 1:
		return found[0], true, nil
	}
	// Status is the listing's 200: IAM answered, and the answer stays
	// ambiguous until someone acts, so this is no Temporary error.
	sort.Strings(found)
	return "", false, &provider.Error{Provider: Name, Op: op, Status: http.StatusOK,
		Err: fmt.Errorf("access keys %s of IAM user %q are not held by the engine and were created since %s: remove the stray ones by hand",
			strings.Join(found, ", "), like.User, from.UTC().Format(time.RFC3339))}
}
