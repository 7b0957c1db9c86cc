package scanning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/remote/scanning/scanningtest"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

func testCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test cluster CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestSealCredentials(t *testing.T) {
	ca, other := testCA(t), testCA(t)
	c := Credentials{Username: "robot", Password: "s3cret-passw0rd"}
	b, err := sealCredentials(ca, "private", c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), c.Password) || strings.Contains(string(b), c.Username) {
		t.Fatalf("sealed value %s shows the credentials", b)
	}
	for _, tc := range []struct {
		name     string
		ca       *pki.CA
		registry string
		value    []byte
		wantErr  string
	}{
		{"round trip", ca, "private", b, ""},
		{"moved to another registry", ca, "other", b, "cannot be opened"},
		{"another cluster CA", other, "private", b, "cannot be opened"},
		{"no CA", nil, "private", b, "CA not ready"},
		{"not JSON", ca, "private", []byte("robot:s3cret"), "credentials of private"},
		{"unknown version", ca, "private", []byte(`{"v":9}`), "version 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := openCredentials(tc.ca, tc.registry, tc.value)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("open: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || *got != c {
				t.Fatalf("open = %+v, %v; want %+v", got, err, c)
			}
		})
	}
}

func TestCredentialsValidate(t *testing.T) {
	for _, tc := range []struct {
		c        Credentials
		wantKind string
		ok       bool
	}{
		{Credentials{Username: "u", Password: "p"}, AuthBasic, true},
		{Credentials{Token: "t"}, AuthBearer, true},
		{Credentials{Username: "u"}, AuthBasic, false},
		{Credentials{Password: "p"}, AuthBasic, false},
		{Credentials{Username: "u", Password: "p", Token: "t"}, AuthBearer, false},
		{Credentials{Username: "a:b", Password: "p"}, AuthBasic, false},
		{Credentials{}, AuthBasic, false},
	} {
		err := tc.c.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadCredentials)) {
			t.Errorf("%+v: Validate = %v, want ok %v", tc.c, err, tc.ok)
		}
		if got := tc.c.Kind(); got != tc.wantKind {
			t.Errorf("%+v: Kind = %q, want %q", tc.c, got, tc.wantKind)
		}
	}
}

// TestScanWithCredentials: a registry that needs basic auth for pulls
// fails per image with the registry's 401 while it has no credentials;
// once they are set (sealed, never returned) it is scanned at once.
func TestScanWithCredentials(t *testing.T) {
	gin.SetMode(gin.TestMode)
	reg := scanningtest.NewRegistry(t)
	digest := reg.Push(t, "private/app:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "private"))
	reg.RequireBasicAuth("robot", "s3cret-passw0rd")
	st := openStore(t)
	cfg := testConfig(t, st, t.TempDir())
	ca := testCA(t)
	cfg.CA = func() *pki.CA { return ca }
	cfg.MaxAttempts = 2
	m := runModule(t, cfg)
	e := gin.New()
	m.WithWorkerRoutes().Routes(scanningtest.Router{E: e})

	code, body := call(t, e, http.MethodPost, "/v1/registries", "admin", fmt.Sprintf(`{"name":"private","url":"http://%s","interval":"1h"}`, reg.Host))
	if code != http.StatusCreated {
		t.Fatalf("add registry: %d %s", code, body)
	}
	s := waitStatus(t, st, "private", func(s Status) bool { return s.Failed == 1 })
	var f Failure
	if !getJSON(t, st, PrefixFailures+reg.Host+"/private/app:1", &f) || !strings.Contains(f.Error, "401") || !strings.Contains(f.Error, "UNAUTHORIZED") {
		t.Fatalf("failure %+v (status %+v), want the registry's 401 recorded for the image", f, s)
	}

	for _, tc := range []struct {
		body, want string
		code       int
	}{
		{`{"username":"robot"}`, "password", http.StatusBadRequest},
		{`{"username":"robot","password":"x","token":"y"}`, "not both", http.StatusBadRequest},
		{`{"user":"robot"}`, "unknown field", http.StatusBadRequest},
	} {
		if code, body := call(t, e, http.MethodPut, "/v1/registries/private/credentials", "admin", tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("PUT credentials %s: %d %s, want %d with %q", tc.body, code, body, tc.code, tc.want)
		}
	}
	if code, body := call(t, e, http.MethodPut, "/v1/registries/private/credentials", "reader", `{"username":"robot","password":"s3cret-passw0rd"}`); code != http.StatusOK {
		// The test router does not check roles; the controller's does.
		t.Fatalf("PUT credentials: %d %s", code, body)
	}
	waitStatus(t, st, "private", func(s Status) bool { return s.Scanned == 1 })
	if _, ok, _ := st.Get(PrefixResults + digest); !ok {
		t.Fatal("no result after the credentials were set")
	}
	if getJSON(t, st, PrefixFailures+reg.Host+"/private/app:1", &f) {
		t.Errorf("failure still recorded after a scan with credentials: %+v", f)
	}

	// Nothing the API returns, nor the stored values, shows the secret.
	for _, p := range []string{"/v1/registries", "/v1/registries/private"} {
		code, body := call(t, e, http.MethodGet, p, "admin", "")
		if code != http.StatusOK || !strings.Contains(body, `"auth":"basic"`) || strings.Contains(body, "s3cret") || strings.Contains(body, "robot") {
			t.Errorf("GET %s: %d %s, want auth basic and no credentials", p, code, body)
		}
	}
	kvs, _ := st.List("scan/")
	for _, kv := range kvs {
		if strings.Contains(string(kv.Value), "s3cret") {
			t.Errorf("store key %s holds the password in clear", kv.Key)
		}
	}

	// Deleting the credentials makes the registry anonymous again.
	if code, body := call(t, e, http.MethodDelete, "/v1/registries/private/credentials", "admin", ""); code != http.StatusOK || strings.Contains(body, `"auth"`) {
		t.Fatalf("DELETE credentials: %d %s", code, body)
	}
	if _, ok, _ := st.Get(PrefixCredentials + "private"); ok {
		t.Fatal("credentials still stored after DELETE")
	}
}

// TestRegistryWithAuthWaitsForCredentials: a registry declared with auth is
// not scanned (no request reaches it) until its credentials are set.
func TestRegistryWithAuthWaitsForCredentials(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	reg.Push(t, "private/app:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "waits"))
	reg.RequireBasicAuth("robot", "pw")
	st := openStore(t)
	cfg := testConfig(t, st, t.TempDir())
	ca := testCA(t)
	cfg.CA = func() *pki.CA { return ca }
	runModule(t, cfg)
	putRegistry(t, st, Registry{Name: "private", URL: reg.Host, Insecure: true, Auth: AuthBasic, Interval: Duration(time.Hour)})
	time.Sleep(300 * time.Millisecond) // many scheduler ticks
	if _, ok, _ := st.Get(PrefixStatus + "private"); ok || reg.Refused()+reg.ManifestGets() != 0 {
		t.Fatalf("a registry without its credentials was scanned (%d refused requests)", reg.Refused())
	}
	b, err := sealCredentials(ca, "private", Credentials{Username: "robot", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), PrefixCredentials+"private", b); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, st, "private", func(s Status) bool { return s.Scanned == 1 })
}

// TestBearerCredentials: a registry that takes a bearer token is scanned
// with one.
func TestBearerCredentials(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	reg.Push(t, "private/app:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "bearer"))
	reg.RequireBearer("pat-123")
	st := openStore(t)
	cfg := testConfig(t, st, t.TempDir())
	ca := testCA(t)
	cfg.CA = func() *pki.CA { return ca }
	runModule(t, cfg)
	b, err := sealCredentials(ca, "private", Credentials{Token: "pat-123"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), PrefixCredentials+"private", b); err != nil {
		t.Fatal(err)
	}
	putRegistry(t, st, Registry{Name: "private", URL: reg.Host, Insecure: true, Auth: AuthBearer, Interval: Duration(time.Hour)})
	if s := waitStatus(t, st, "private", func(s Status) bool { return s.Scanned+s.Failed == 1 }); s.Scanned != 1 {
		var f Failure
		getJSON(t, st, PrefixFailures+reg.Host+"/private/app:1", &f)
		t.Fatalf("status %+v, failure %+v: want the image scanned with the token", s, f)
	}
}

// TestDeletedFederatedRegistryWithdrawsResults: on a primary, deleting a
// federated registry withdraws from the federation stream the results no
// other federated registry references; a shared digest stays until its
// last registry goes.
func TestDeletedFederatedRegistryWithdrawsResults(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	only := reg.Push(t, "apps/only:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "only"))
	shared := reg.Push(t, "shared/base:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "shared"))
	st := openStore(t)
	info, _ := json.Marshal(clusterinfo.Info{Name: "hq", Role: clusterinfo.Primary})
	if _, err := st.Put(context.Background(), clusterinfo.Key, info); err != nil {
		t.Fatal(err)
	}
	runModule(t, testConfig(t, st, t.TempDir()))
	putRegistry(t, st, Registry{Name: "one", URL: reg.Host, Insecure: true, Federated: true, Interval: Duration(time.Hour)})
	waitStatus(t, st, "one", func(s Status) bool { return s.Scanned == 2 })
	putRegistry(t, st, Registry{Name: "two", URL: reg.Host, Insecure: true, Federated: true, Filter: filter(t, "shared/*"), Interval: Duration(time.Hour)})
	waitStatus(t, st, "two", func(s Status) bool { return s.Skipped == 1 })
	var o Owners
	if !getJSON(t, st, PrefixFedOwners+shared, &o) || strings.Join(o.Registries, ",") != "one,two" {
		t.Fatalf("owners of the shared digest %+v, want one and two", o)
	}

	deleteRegistry := func(name string) {
		t.Helper()
		if _, err := st.Txn(context.Background(), store.Txn{Ops: []store.Op{
			{Type: store.OpDelete, Key: PrefixRegistries + name},
			{Type: store.OpDelete, Key: PrefixStatus + name},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	streamed := func(d string) bool { _, ok, _ := st.Get(PrefixFedStream + d); return ok }
	deleteRegistry("one")
	scanningtest.WaitFor(t, 10*time.Second, "the result only registry one referenced is withdrawn", func() error {
		if streamed(only) {
			return fmt.Errorf("%s still streamed", only)
		}
		return nil
	})
	if !streamed(shared) {
		t.Fatal("the digest registry two still references was withdrawn")
	}
	if !getJSON(t, st, PrefixFedOwners+shared, &o) || strings.Join(o.Registries, ",") != "two" {
		t.Fatalf("owners of the shared digest %+v, want two", o)
	}
	var e RefEntry
	if getJSON(t, st, PrefixRefs+reg.Host+"/apps/only:1", &e) {
		t.Errorf("ref index entry of the deleted registry kept: %+v", e)
	}
	deleteRegistry("two")
	scanningtest.WaitFor(t, 10*time.Second, "the shared result is withdrawn with its last registry", func() error {
		if streamed(shared) {
			return fmt.Errorf("%s still streamed", shared)
		}
		if _, ok, _ := st.Get(PrefixFedOwners + shared); ok {
			return fmt.Errorf("owners record kept")
		}
		return nil
	})
	// The primary's own verdicts (admission reads them) stay.
	if _, ok, _ := st.Get(PrefixResults + only); !ok {
		t.Error("the primary's local verdict was removed")
	}
}
