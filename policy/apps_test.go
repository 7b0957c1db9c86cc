package policy

import "testing"

func TestCanonicalApplication(t *testing.T) {
	for _, a := range Applications() {
		if got, ok := CanonicalApplication(a); !ok || got != a {
			t.Errorf("CanonicalApplication(%q) = %q, %v", a, got, ok)
		}
	}
	for in, want := range map[string]string{"ssl": "TLS", "GRPC": "gRPC", " http ": "HTTP", "postgres": "PostgreSQL"} {
		if got, ok := CanonicalApplication(in); !ok || got != want {
			t.Errorf("CanonicalApplication(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "any", "Jetty"} {
		if _, ok := CanonicalApplication(bad); ok {
			t.Errorf("CanonicalApplication(%q) accepted", bad)
		}
	}
}
