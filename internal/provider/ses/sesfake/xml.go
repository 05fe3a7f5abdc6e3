package sesfake

import "encoding/xml"

// XML answers in the shapes of the IAM and STS API references.

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type createdKey struct {
	UserName        string `xml:"UserName"`
	AccessKeyID     string `xml:"AccessKeyId"`
	Status          string `xml:"Status"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	CreateDate      string `xml:"CreateDate"`
}

type createKeyResponse struct {
	XMLName xml.Name         `xml:"CreateAccessKeyResponse"`
	XMLNS   string           `xml:"xmlns,attr"`
	Key     createdKey       `xml:"CreateAccessKeyResult>AccessKey"`
	Meta    responseMetadata `xml:"ResponseMetadata"`
}

type deleteKeyResponse struct {
	XMLName xml.Name         `xml:"DeleteAccessKeyResponse"`
	XMLNS   string           `xml:"xmlns,attr"`
	Meta    responseMetadata `xml:"ResponseMetadata"`
}

type keyMetadata struct {
	UserName    string `xml:"UserName"`
	AccessKeyID string `xml:"AccessKeyId"`
	Status      string `xml:"Status"`
	CreateDate  string `xml:"CreateDate"`
}

type listKeysResponse struct {
	XMLName     xml.Name         `xml:"ListAccessKeysResponse"`
	XMLNS       string           `xml:"xmlns,attr"`
	UserName    string           `xml:"ListAccessKeysResult>UserName"`
	Members     []keyMetadata    `xml:"ListAccessKeysResult>AccessKeyMetadata>member"`
	IsTruncated bool             `xml:"ListAccessKeysResult>IsTruncated"`
	Marker      string           `xml:"ListAccessKeysResult>Marker,omitempty"`
	Meta        responseMetadata `xml:"ResponseMetadata"`
}

type iamUser struct {
	Path       string `xml:"Path"`
	UserName   string `xml:"UserName"`
	UserID     string `xml:"UserId"`
	Arn        string `xml:"Arn"`
	CreateDate string `xml:"CreateDate"`
}

type getUserResponse struct {
	XMLName xml.Name         `xml:"GetUserResponse"`
	XMLNS   string           `xml:"xmlns,attr"`
	User    iamUser          `xml:"GetUserResult>User"`
	Meta    responseMetadata `xml:"ResponseMetadata"`
}

type callerIdentityResponse struct {
	XMLName xml.Name         `xml:"GetCallerIdentityResponse"`
	XMLNS   string           `xml:"xmlns,attr"`
	Arn     string           `xml:"GetCallerIdentityResult>Arn"`
	UserID  string           `xml:"GetCallerIdentityResult>UserId"`
	Account string           `xml:"GetCallerIdentityResult>Account"`
	Meta    responseMetadata `xml:"ResponseMetadata"`
}

type errorBody struct {
	Type    string `xml:"Type"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

type errorResponse struct {
	XMLName   xml.Name  `xml:"ErrorResponse"`
	XMLNS     string    `xml:"xmlns,attr"`
	Error     errorBody `xml:"Error"`
	RequestID string    `xml:"RequestId"`
}
