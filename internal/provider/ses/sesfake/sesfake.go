// Package sesfake is a fake of the two AWS APIs the SES driver calls: IAM
// (CreateAccessKey, DeleteAccessKey, ListAccessKeys, GetUser) and STS
// (GetCallerIdentity), both on the AWS Query protocol: a form-encoded POST
// with Action and Version, answered in XML. It checks AWS Signature Version
// 4 on every request with its own implementation (sigv4.go) against the
// secret of the access key id the request names.
//
// Shapes followed:
//   - https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateAccessKey.html
//   - https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteAccessKey.html
//   - https://docs.aws.amazon.com/IAM/latest/APIReference/API_ListAccessKeys.html
//     (AccessKeyMetadata members with UserName, AccessKeyId, Status and
//     CreateDate in ISO 8601; MaxItems, Marker and IsTruncated for paging)
//   - https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html
//   - https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
//   - IAM quotas, two access keys per user:
//     https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
package sesfake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
)

const (
	// Account is the fake's AWS account id, in every ARN it returns.
	Account = "123456789012"
	// MaxKeysPerUser is IAM's quota of access keys per user.
	MaxKeysPerUser = 2

	iamVersion = "2010-05-08"
	stsVersion = "2011-06-15"
	iamXMLNS   = "https://iam.amazonaws.com/doc/2010-05-08/"
	stsXMLNS   = "https://sts.amazonaws.com/doc/2011-06-15/"
	// iamSigningRegion is the region IAM's global endpoint signs in.
	iamSigningRegion = "us-east-1"
)

type user struct {
	name, path, id string
	created        time.Time
}

type accessKey struct {
	id, secret, user string
	created          time.Time
}

// Server is the fake IAM + STS endpoint.
type Server struct {
	providertest.Base

	mu         sync.Mutex
	users      map[string]*user
	keys       map[string]*accessKey // by access key id
	errMessage string
	delayKeys  int
	refusals   map[string]int // key id -> STS refusals left (propagation)
}

// New starts a fake on 127.0.0.1.
func New() *Server {
	s := &Server{users: map[string]*user{}, keys: map[string]*accessKey{}, refusals: map[string]int{}}
	s.Serve(http.HandlerFunc(s.serve)) // one URL for both IAM and STS
	return s
}

// AddUser creates an IAM user with path "/".
func (s *Server) AddUser(name string) { s.AddUserWithPath(name, "/") }

// AddUserWithPath creates an IAM user under path (e.g. "/mail/").
func (s *Server) AddUserWithPath(name, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = &user{name: name, path: path, id: "AIDA" + randomID(), created: time.Now().UTC()}
}

// AddKey gives user (created if missing) a new access key, beyond the
// quota if need be (a seed), and returns it as the engine stores it.
func (s *Server) AddKey(userName string) provider.Key { return s.AddKeyAt(userName, time.Now()) }

// AddKeyAt is AddKey with the key's CreateDate set to created (a key made
// before or after some moment, for finding orphans by time).
func (s *Server) AddKeyAt(userName string, created time.Time) provider.Key {
	s.mu.Lock()
	if s.users[userName] == nil {
		s.users[userName] = &user{name: userName, path: "/", id: "AIDA" + randomID(), created: time.Now().UTC()}
	}
	k := s.newKeyLocked(userName)
	k.created = created.UTC()
	s.mu.Unlock()
	return provider.Key{ID: k.id, Secret: k.secret, User: userName}
}

// Live returns the secrets of the keys the fake accepts, sorted.
func (s *Server) Live() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.keys {
		out = append(out, k.secret)
	}
	sort.Strings(out)
	return out
}

// KeyIDs returns the access key ids of user, sorted.
func (s *Server) KeyIDs(userName string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.keys {
		if k.user == userName {
			out = append(out, k.id)
		}
	}
	sort.Strings(out)
	return out
}

// SetErrorMessage makes every error answer carry msg as its Message (a
// test puts a secret there to prove the driver never repeats it); "" is
// the fake's own messages.
func (s *Server) SetErrorMessage(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errMessage = msg
}

// DelayNewKeys makes STS refuse each key created from now on with
// InvalidClientTokenId for its first n calls, as AWS does while a new key
// propagates.
func (s *Server) DelayNewKeys(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delayKeys = n
}

func (s *Server) newKeyLocked(userName string) *accessKey {
	k := &accessKey{id: "AKIA" + randomID(), secret: randomSecret(), user: userName, created: time.Now().UTC()}
	s.keys[k.id] = k
	if s.delayKeys > 0 {
		s.refusals[k.id] = s.delayKeys
	}
	return k
}

// opOf names the providertest operation of an action.
var opOf = map[string]string{
	"CreateAccessKey":   "create",
	"DeleteAccessKey":   "delete",
	"ListAccessKeys":    "list",
	"GetUser":           "list",
	"GetCallerIdentity": "test",
}

// apiError is one error answer: HTTP status, AWS code, message.
type apiError struct {
	status        int
	code, message string
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	form, body := providertest.PeekForm(r)
	action := form.Get("Action")
	op := opOf[action]
	if op == "" {
		op = "other"
	}
	if s.Intercept(op, w, r, func(w http.ResponseWriter, status int) {
		s.writeError(w, action, faultError(status))
	}) {
		return
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		s.writeError(w, action, apiError{400, "InvalidAction", "the Query API takes a form-encoded POST"})
		return
	}
	caller, aerr := s.authenticate(r, body, action)
	if aerr != nil {
		s.writeError(w, action, *aerr)
		return
	}
	s.dispatch(w, action, form, caller)
}

func (s *Server) dispatch(w http.ResponseWriter, action string, form url.Values, caller *accessKey) {
	version := map[string]string{"GetCallerIdentity": stsVersion}[action]
	if version == "" {
		version = iamVersion
	}
	if form.Get("Version") != version {
		s.writeError(w, action, apiError{400, "InvalidAction", "unsupported Version for " + action})
		return
	}
	var result any
	var err *apiError
	switch action {
	case "CreateAccessKey":
		result, err = s.createKey(userParam(form, caller))
	case "DeleteAccessKey":
		result, err = s.deleteKey(userParam(form, caller), form.Get("AccessKeyId"))
	case "ListAccessKeys":
		result, err = s.listKeys(userParam(form, caller), form.Get("MaxItems"), form.Get("Marker"))
	case "GetUser":
		result, err = s.getUser(userParam(form, caller))
	case "GetCallerIdentity":
		result, err = s.callerIdentity(caller)
	default:
		err = &apiError{400, "InvalidAction", "unknown action"}
	}
	if err != nil {
		s.writeError(w, action, *err)
		return
	}
	writeXML(w, http.StatusOK, result)
}

// userParam is UserName, or the caller's own user when it is absent, as
// IAM does.
func userParam(form url.Values, caller *accessKey) string {
	if u := form.Get("UserName"); u != "" {
		return u
	}
	return caller.user
}

// authenticate finds the key the request is signed with and checks the
// signature and its scope: IAM is signed for service "iam" in us-east-1,
// STS for "sts" in any region.
func (s *Server) authenticate(r *http.Request, body []byte, action string) (*accessKey, *apiError) {
	h, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, &apiError{403, "IncompleteSignature", err.Error()}
	}
	s.mu.Lock()
	k := s.keys[h.KeyID]
	var copied accessKey
	if k != nil {
		copied = *k
	}
	s.mu.Unlock()
	if k == nil {
		return nil, &apiError{403, "InvalidClientTokenId", "The security token included in the request is invalid."}
	}
	wantService := "iam"
	if action == "GetCallerIdentity" {
		wantService = "sts"
	}
	if h.Service != wantService || (wantService == "iam" && h.Region != iamSigningRegion) {
		return nil, &apiError{403, "SignatureDoesNotMatch", "Credential should be scoped to a valid region and service " + wantService}
	}
	if err := verifySignature(r, body, h, copied.secret, time.Now()); err != nil {
		return nil, &apiError{403, "SignatureDoesNotMatch", err.Error()}
	}
	if action == "GetCallerIdentity" && s.stillPropagating(h.KeyID) {
		return nil, &apiError{403, "InvalidClientTokenId", "The security token included in the request is invalid."}
	}
	return &copied, nil
}

func (s *Server) stillPropagating(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals[id] > 0 {
		s.refusals[id]--
		return true
	}
	return false
}

func (s *Server) createKey(userName string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[userName] == nil {
		return nil, noSuchUser(userName)
	}
	n := 0
	for _, k := range s.keys {
		if k.user == userName {
			n++
		}
	}
	if n >= MaxKeysPerUser {
		return nil, &apiError{409, "LimitExceeded", fmt.Sprintf("Cannot exceed quota for AccessKeysPerUser: %d", MaxKeysPerUser)}
	}
	k := s.newKeyLocked(userName)
	return createKeyResponse{XMLNS: iamXMLNS, Key: createdKey{
		UserName: userName, AccessKeyID: k.id, Status: "Active", SecretAccessKey: k.secret, CreateDate: stamp(k.created),
	}, Meta: meta()}, nil
}

func (s *Server) deleteKey(userName, id string) (any, *apiError) {
	if id == "" {
		return nil, &apiError{400, "ValidationError", "1 validation error detected: Value null at 'accessKeyId' failed to satisfy constraint: Member must not be null"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[userName] == nil {
		return nil, noSuchUser(userName)
	}
	k := s.keys[id]
	if k == nil || k.user != userName {
		return nil, &apiError{404, "NoSuchEntity", "The Access Key with id " + id + " cannot be found."}
	}
	delete(s.keys, id)
	return deleteKeyResponse{XMLNS: iamXMLNS, Meta: meta()}, nil
}

// listKeys answers one page of the user's keys in the order of their ids:
// MaxItems (1 to 1000, default 100) per page, IsTruncated and Marker (the
// index of the next key, opaque to the client) when more follow.
func (s *Server) listKeys(userName, maxItems, marker string) (any, *apiError) {
	limit, start := 100, 0
	if maxItems != "" {
		n, err := strconv.Atoi(maxItems)
		if err != nil || n < 1 || n > 1000 {
			return nil, &apiError{400, "ValidationError", "1 validation error detected: Value at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000"}
		}
		limit = n
	}
	if marker != "" {
		n, err := strconv.Atoi(marker)
		if err != nil || n < 0 {
			return nil, &apiError{400, "ValidationError", "invalid Marker"}
		}
		start = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[userName] == nil {
		return nil, noSuchUser(userName)
	}
	var all []keyMetadata
	for _, k := range s.keys {
		if k.user == userName {
			all = append(all, keyMetadata{UserName: userName, AccessKeyID: k.id, Status: "Active", CreateDate: stamp(k.created)})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].AccessKeyID < all[j].AccessKeyID })
	resp := listKeysResponse{XMLNS: iamXMLNS, UserName: userName, Meta: meta()}
	if start < len(all) {
		end := min(start+limit, len(all))
		resp.Members = all[start:end]
		if end < len(all) {
			resp.IsTruncated, resp.Marker = true, strconv.Itoa(end)
		}
	}
	return resp, nil
}

func (s *Server) getUser(userName string) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userName]
	if u == nil {
		return nil, noSuchUser(userName)
	}
	return getUserResponse{XMLNS: iamXMLNS, User: iamUser{Path: u.path, UserName: u.name, UserID: u.id,
		Arn: userARN(u), CreateDate: stamp(u.created)}, Meta: meta()}, nil
}

func (s *Server) callerIdentity(caller *accessKey) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[caller.user]
	if u == nil {
		return nil, &apiError{403, "InvalidClientTokenId", "The security token included in the request is invalid."}
	}
	return callerIdentityResponse{XMLNS: stsXMLNS, Arn: userARN(u), UserID: u.id, Account: Account, Meta: meta()}, nil
}

func userARN(u *user) string { return "arn:aws:iam::" + Account + ":user" + u.path + u.name }

func noSuchUser(name string) *apiError {
	return &apiError{404, "NoSuchEntity", "The user with name " + name + " cannot be found."}
}

// faultError is the AWS error an injected status answers with.
func faultError(status int) apiError {
	switch status {
	case http.StatusTooManyRequests:
		return apiError{status, "Throttling", "Rate exceeded"}
	case http.StatusServiceUnavailable:
		return apiError{status, "ServiceUnavailable", "Service is unavailable"}
	case http.StatusNotFound:
		return apiError{status, "NoSuchEntity", "The entity cannot be found."}
	case http.StatusConflict:
		return apiError{status, "LimitExceeded", "Cannot exceed quota"}
	case http.StatusForbidden:
		return apiError{status, "AccessDenied", "not authorized"}
	}
	if status >= 500 {
		return apiError{status, "ServiceFailure", "internal failure"}
	}
	return apiError{status, "ValidationError", "invalid request"}
}

func (s *Server) writeError(w http.ResponseWriter, action string, e apiError) {
	s.mu.Lock()
	if s.errMessage != "" {
		e.message = s.errMessage
	}
	s.mu.Unlock()
	ns, typ := iamXMLNS, "Sender"
	if action == "GetCallerIdentity" {
		ns = stsXMLNS
	}
	if e.status >= 500 {
		typ = "Receiver"
	}
	writeXML(w, e.status, errorResponse{XMLNS: ns, Error: errorBody{Type: typ, Code: e.code, Message: e.message}, RequestID: requestID()})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	out, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, "marshal", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

func stamp(t time.Time) string { return t.Format(time.RFC3339) }

func meta() responseMetadata { return responseMetadata{RequestID: requestID()} }

// base32Upper is the alphabet of AWS unique ids (RFC 4648 base32).
const base32Upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = base32Upper[int(b[i])%len(base32Upper)]
	}
	return string(b)
}

// randomSecret is 40 characters of base64, the form of AWS secret keys.
func randomSecret() string {
	b := make([]byte, 30)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
