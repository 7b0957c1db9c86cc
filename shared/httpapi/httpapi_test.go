package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/apierr"
)

func TestDecodeJSONNamesTheField(t *testing.T) {
	type body struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	tests := []struct {
		in, field, text string
	}{
		{``, "body", "empty"},
		{`{"name":`, "body", ""},
		{`{"name": 3}`, "name", "want string"},
		{`{"count": "x"}`, "count", "want int"},
		{`{"nmae": "x"}`, "nmae", "unknown field"},
		{`{"name": "a"} {"name": "b"}`, "body", "after the JSON object"},
		{`[1,2]`, "body", ""},
	}
	gin.SetMode(gin.ReleaseMode)
	for _, tt := range tests {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.in))
		var b body
		err := DecodeJSON(c, &b)
		var ae *apierr.Error
		if !errors.As(err, &ae) || ae.Field != tt.field || !strings.Contains(ae.Message, tt.text) {
			t.Errorf("DecodeJSON(%q) = %v, want field %q with %q", tt.in, err, tt.field, tt.text)
		}
	}
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"name":"ok","count":2}`))
	var b body
	if err := DecodeJSON(c, &b); err != nil || b.Name != "ok" || b.Count != 2 {
		t.Fatalf("valid body: %+v, %v", b, err)
	}
}
