package review

import (
	"encoding/json"
	"net/http"
)

// Status is the status of a response: an HTTP-like code and a message
// the API server shows to the user when the request is denied.
type Status struct {
	Code    int    `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Response is the response half of a review.
type Response struct {
	UID     string  `json:"uid"`
	Allowed bool    `json:"allowed"`
	Status  *Status `json:"status,omitempty"`
	// Warnings are shown by kubectl even when the request is allowed.
	Warnings []string `json:"warnings,omitempty"`
	// AuditAnnotations are added to the API server's audit event.
	AuditAnnotations map[string]string `json:"auditAnnotations,omitempty"`
}

// Reply is a review carrying a response.
type Reply struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Response   *Response `json:"response"`
}

// NewReply answers rv with the same apiVersion (v1 when rv is nil or of
// another version) and rv's uid.
func NewReply(rv *Review, allowed bool, message string) *Reply {
	version, uid := V1, ""
	if rv != nil {
		if rv.APIVersion == V1beta1 {
			version = V1beta1
		}
		if rv.Request != nil {
			uid = rv.Request.UID
		}
	}
	resp := &Response{UID: uid, Allowed: allowed}
	if message != "" {
		resp.Status = &Status{Message: message}
		if !allowed {
			resp.Status.Code = http.StatusForbidden
			resp.Status.Reason = "Forbidden"
		}
	}
	return &Reply{APIVersion: version, Kind: Kind, Response: resp}
}

// Marshal encodes the reply.
func (r *Reply) Marshal() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// Only strings, bools and maps of strings: encoding cannot fail.
		panic("review: encode reply: " + err.Error())
	}
	return b
}
