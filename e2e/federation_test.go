package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/primary/hub"
	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/federation"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/jointoken"
)

// fedCluster is one cluster of the federation test with a logged-in CLI.
type fedCluster struct {
	t     *testing.T
	name  string
	reps  []*harness.Controller
	env   []string
	token string
}

func startFedCluster(t *testing.T, dir, name string, replicas int, pw string) *fedCluster {
	t.Helper()
	reps := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: name, Replicas: replicas, PasswordFile: pw})
	fc := &fedCluster{t: t, name: name, reps: reps, env: []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, name+".session")}}
	fc.cli(0, "login", "--api", reps[0].API, "--ca-file", reps[0].CAFile(), "--password-file", pw)
	fc.token = login(t, reps[0], "admin", "fed-admin-password")
	return fc
}

// cli runs a palisade verb against a live replica of this cluster and
// wants exit code want.
func (fc *fedCluster) cli(want int, args ...string) (string, string) {
	fc.t.Helper()
	if args[0] != "login" {
		r := fc.live()
		args = append(args, "--api", r.API, "--ca-file", r.CAFile())
	}
	out, errOut, code := harness.CLI(fc.t, bin, fc.env, args...)
	if code != want {
		fc.t.Fatalf("%s: palisade %s: exit %d, want %d\nstdout: %s\nstderr: %s", fc.name, strings.Join(args, " "), code, want, out, errOut)
	}
	return out, errOut
}

// live returns a replica that is running.
func (fc *fedCluster) live() *harness.Controller {
	for _, r := range fc.reps {
		if exited, _ := r.Exited(); !exited {
			return r
		}
	}
	fc.t.Fatalf("%s: no replica running", fc.name)
	return nil
}

func (fc *fedCluster) do(method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return fc.live().Client(fc.t, fc.token).Do(ctx, method, path, in, out)
}

func (fc *fedCluster) role() string {
	var cl api.Cluster
	if err := fc.do("GET", "/v1/cluster", nil, &cl); err != nil {
		fc.t.Fatal(err)
	}
	return cl.Role
}

// federated returns the names of the federated policy objects this
// remote holds, and the primary revision it applied.
func (fc *fedCluster) federated() ([]string, uint64, error) {
	var resp struct {
		Applied uint64                       `json:"applied"`
		Items   []federation.FederatedObject `json:"items"`
	}
	if err := fc.do("GET", "/v1/fed/objects", nil, &resp); err != nil {
		return nil, 0, err
	}
	var names []string
	for _, it := range resp.Items {
		if k, ok := strings.CutPrefix(it.Key, "objects/"); ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names, resp.Applied, nil
}

func (fc *fedCluster) waitFederated(want []string, minRev uint64) {
	fc.t.Helper()
	harness.Eventually(fc.t, 30*time.Second, fc.name+" holds the federated objects", func() error {
		got, applied, err := fc.federated()
		if err != nil {
			return err
		}
		if strings.Join(got, " ") != strings.Join(want, " ") || applied < minRev {
			return fmt.Errorf("has %v at revision %d, want %v at >= %d", got, applied, want, minRev)
		}
		return nil
	})
}

func (fc *fedCluster) status() hub.Status {
	fc.t.Helper()
	var st hub.Status
	harness.Eventually(fc.t, 15*time.Second, "primary status", func() error { return fc.do("GET", "/v1/fed/status", nil, &st) })
	return st
}

func (fc *fedCluster) remote(name string) hub.RemoteInfo {
	for _, r := range fc.status().Remotes {
		if r.Name == name {
			return r
		}
	}
	fc.t.Fatalf("primary does not list remote %s", name)
	return hub.RemoteInfo{}
}

func (fc *fedCluster) applyFed(yaml string, query string) hub.ApplyResponse {
	fc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := fc.live().Client(fc.t, fc.token).Raw(ctx, "POST", "/v1/fed/policy/apply"+query, "application/yaml", strings.NewReader(yaml))
	if err != nil {
		fc.t.Fatalf("federated apply: %v", err)
	}
	defer resp.Body.Close()
	var out hub.ApplyResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		fc.t.Fatal(err)
	}
	return out
}

func (fc *fedCluster) waitRolloutDone(rev uint64) {
	fc.t.Helper()
	harness.Eventually(fc.t, 20*time.Second, "rollout of revision "+fmt.Sprint(rev)+" done", func() error {
		var st hub.Status
		if err := fc.do("GET", "/v1/fed/status", nil, &st); err != nil {
			return err
		}
		if st.Rollout == nil || st.Rollout.Revision != rev || st.Rollout.Phase != "done" {
			return fmt.Errorf("rollout %+v", st.Rollout)
		}
		return nil
	})
}

func group(name, app, clusters string) string {
	ann := ""
	if clusters != "" {
		ann = "\n  annotations:\n    palisade.dev/clusters: " + clusters
	}
	return fmt.Sprintf(`apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata:
  name: %s%s
spec:
  selector:
    name: %s
    criteria:
    - {key: app, op: "=", value: %s}
---
`, name, ann, name, app)
}

const admissionDenyPrivileged = `apiVersion: palisade.dev/v1
kind: AdmissionRule
metadata:
  name: fed-no-privileged
spec:
  mode: protect
  rules:
  - name: deny-privileged
    action: deny
    criteria:
    - {name: runAsPrivileged, op: "=", value: "true"}
---
`

// TestFederation runs a primary of three replicas and two remote clusters
// as real processes: token failures, joins, push with targeting, a remote
// restart that resumes without a snapshot, a canary wave held until the
// canary acknowledges, pause and resume, a primary leader killed during a
// rollout, rollback, and a kick.
func TestFederation(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "fed-admin-password")
	primary := startFedCluster(t, dir, "hq", 3, pw)
	east := startFedCluster(t, dir, "east", 1, pw)
	west := startFedCluster(t, dir, "west", 1, pw)

	primary.cli(0, "fed", "promote")
	if r := primary.role(); r != "primary" {
		t.Fatalf("primary role = %s", r)
	}
	tok, _ := primary.cli(0, "fed", "token", "create", "--ttl", "10m")
	tok = strings.TrimSpace(tok)

	// Every bad token is refused with its own reason and changes nothing.
	forged := tok[:len(tok)-4] + map[bool]string{true: "AAAA", false: "BBBB"}[!strings.HasSuffix(tok, "AAAA")]
	expired, _ := primary.cli(0, "fed", "token", "create", "--ttl", "1s")
	single, _ := primary.cli(0, "fed", "token", "create", "--single-use")
	// An impostor: another primary whose tokens name hq's address but pin
	// its own CA, so hq's certificate fails the pin.
	other := startFedCluster(t, dir, "other", 1, pw)
	// Federation is served on hq's Raft leader, whose address hq's own
	// token lists first.
	hqTok, err := jointoken.Parse(tok)
	if err != nil || len(hqTok.Addrs) == 0 {
		t.Fatalf("hq's token: %v (%d addresses)", err, len(hqTok.Addrs))
	}
	other.cli(0, "fed", "promote", "--fed-addr", hqTok.Addrs[0])
	wrongCA, _ := other.cli(0, "fed", "token", "create")
	time.Sleep(1500 * time.Millisecond)
	for _, bad := range []struct{ name, token, want string }{
		{"garbage", "not-a-token", "malformed"},
		{"forged", forged, "signature"},
		{"expired", strings.TrimSpace(expired), "expired"},
		{"wrong CA", strings.TrimSpace(wrongCA), "CA pin mismatch"},
	} {
		_, errOut := east.cli(1, "fed", "join", "--token", bad.token, "--label", "env=prod")
		if !strings.Contains(errOut, bad.want) {
			t.Errorf("join with a %s token: stderr %q, want it to mention %q", bad.name, errOut, bad.want)
		}
		if r := east.role(); r != "standalone" {
			t.Fatalf("after a %s token east is %s", bad.name, r)
		}
	}
	if n := len(primary.status().Remotes); n != 0 {
		t.Fatalf("refused joins recorded %d members", n)
	}

	// A single-use token works once.
	west.cli(0, "fed", "join", "--token", strings.TrimSpace(single), "--label", "env=dev")
	_, errOut := east.cli(1, "fed", "join", "--token", strings.TrimSpace(single), "--label", "env=prod")
	if !strings.Contains(errOut, "used") {
		t.Fatalf("reusing a single-use token: %q", errOut)
	}
	east.cli(0, "fed", "join", "--token", tok, "--label", "env=prod")
	harness.Eventually(t, 20*time.Second, "both remotes connected", func() error {
		st := primary.status()
		if len(st.Remotes) != 2 || !st.Remotes[0].Connected || !st.Remotes[1].Connected {
			return fmt.Errorf("remotes %+v", st.Remotes)
		}
		return nil
	})
	out, _ := primary.cli(0, "fed", "status")
	if !strings.Contains(out, "east") || !strings.Contains(out, "env=prod") {
		t.Fatalf("fed status table:\n%s", out)
	}

	// Push with targeting: the prod-only group reaches east only.
	v1 := group("fed-web", "web", "") + admissionDenyPrivileged + group("fed-prod-only", "api", "env=prod")
	r1 := primary.applyFed(v1, "")
	east.waitFederated([]string{"AdmissionRule/fed-no-privileged", "GroupDefinition/fed-prod-only", "GroupDefinition/fed-web"}, r1.Revision)
	west.waitFederated([]string{"AdmissionRule/fed-no-privileged", "GroupDefinition/fed-web"}, r1.Revision)
	out, _ = west.cli(0, "fed", "status")
	if !strings.Contains(out, "Connected to") || !strings.Contains(out, fmt.Sprintf("Applied revision: %d", r1.Revision)) {
		t.Fatalf("remote fed status:\n%s", out)
	}

	// A local change to a federated object on a remote is refused.
	ctx := context.Background()
	resp, err := east.live().Client(t, east.token).Raw(ctx, "POST", "/v1/policy/apply", "application/yaml", strings.NewReader(group("fed-web", "other", "")))
	if resp != nil {
		resp.Body.Close()
	}
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Code != apierr.CodeForbidden {
		t.Fatalf("local apply over a federated object on east: %v, want forbidden", err)
	}

	// Console drill-in: the primary reads a remote's API over the
	// federation link, read-only.
	var eastCluster api.Cluster
	if err := primary.do("GET", "/v1/fed/clusters/east/api/v1/cluster", nil, &eastCluster); err != nil {
		t.Fatalf("drill-in to east: %v", err)
	}
	if eastCluster.Name != "east" || eastCluster.Role != "remote" {
		t.Fatalf("drill-in to east answered %+v", eastCluster)
	}
	var ae2 *apierr.Error
	if err := primary.do("GET", "/v1/fed/clusters/nowhere/api/v1/cluster", nil, nil); !errors.As(err, &ae2) || ae2.Code != apierr.CodeNotFound {
		t.Fatalf("drill-in to an unknown remote: %v, want not found", err)
	}
	if err := primary.do("POST", "/v1/fed/clusters/east/api/v1/users", api.CreateUserRequest{Name: "x", Role: "admin", Password: "password1"}, nil); err == nil {
		t.Fatal("a write through drill-in succeeded")
	}

	// A canary wave: with the canary (east) down, west is held at the
	// previous revision; pausing keeps it held after the canary applies;
	// resuming releases it. East resumes from its revision, no snapshot.
	eastBefore := primary.remote("east")
	east.reps[0].Kill()
	v2 := group("fed-web", "web-v2", "") + admissionDenyPrivileged + group("fed-prod-only", "api", "env=prod")
	r2 := primary.applyFed(v2, "?canary=east")
	if r2.Rollout == "" {
		t.Fatalf("apply with a canary started no rollout: %+v", r2)
	}
	time.Sleep(2 * time.Second)
	if _, applied, _ := west.federated(); applied >= r2.Revision {
		t.Fatalf("west applied revision %d while the canary had not acknowledged %d", applied, r2.Revision)
	}
	primary.cli(0, "fed", "rollout", "pause")
	east.reps[0].Restart()
	east.reps[0].WaitLog(harness.ReadyRE, 2, 60*time.Second)
	east.waitFederated([]string{"AdmissionRule/fed-no-privileged", "GroupDefinition/fed-prod-only", "GroupDefinition/fed-web"}, r2.Revision)
	time.Sleep(time.Second)
	if _, applied, _ := west.federated(); applied >= r2.Revision {
		t.Fatalf("west applied %d while the rollout was paused", applied)
	}
	out, _ = primary.cli(0, "fed", "rollout")
	if !strings.Contains(out, "paused") {
		t.Fatalf("rollout status while paused:\n%s", out)
	}
	primary.cli(0, "fed", "rollout", "resume")
	west.waitFederated([]string{"AdmissionRule/fed-no-privileged", "GroupDefinition/fed-web"}, r2.Revision)
	primary.waitRolloutDone(r2.Revision)
	eastAfter := primary.remote("east")
	if eastAfter.Sessions <= eastBefore.Sessions || eastAfter.Snapshots != eastBefore.Snapshots {
		t.Fatalf("east after restart: sessions %d -> %d, snapshots %d -> %d; want a new session and no snapshot",
			eastBefore.Sessions, eastAfter.Sessions, eastBefore.Snapshots, eastAfter.Snapshots)
	}

	// Kill -9 the primary's leader during a rollout: a new leader serves,
	// the rollout survives, and both remotes end with exactly the committed
	// objects.
	var cl api.Cluster
	if err := primary.do("GET", "/v1/cluster", nil, &cl); err != nil {
		t.Fatal(err)
	}
	east.reps[0].Kill()
	v3 := group("fed-web", "web-v3", "") + group("fed-new", "new", "")
	r3 := primary.applyFed(v3, "?canary=east&prune=true")
	for _, r := range primary.reps {
		if r.Name == cl.Leader {
			r.Kill()
		}
	}
	east.reps[0].Restart()
	east.reps[0].WaitLog(harness.ReadyRE, 3, 60*time.Second)
	east.waitFederated([]string{"GroupDefinition/fed-new", "GroupDefinition/fed-web"}, r3.Revision)
	west.waitFederated([]string{"GroupDefinition/fed-new", "GroupDefinition/fed-web"}, r3.Revision)
	primary.waitRolloutDone(r3.Revision)

	// Roll back to the first revision.
	out, _ = primary.cli(0, "fed", "history")
	if !strings.Contains(out, fmt.Sprint(r1.Revision)) {
		t.Fatalf("history lacks revision %d:\n%s", r1.Revision, out)
	}
	primary.cli(0, "fed", "rollback", "--to", fmt.Sprint(r1.Revision))
	east.waitFederated([]string{"AdmissionRule/fed-no-privileged", "GroupDefinition/fed-prod-only", "GroupDefinition/fed-web"}, r3.Revision+1)
	west.waitFederated([]string{"AdmissionRule/fed-no-privileged", "GroupDefinition/fed-web"}, r3.Revision+1)

	// Kick west: it is dismissed, becomes standalone, and drops the
	// federated objects.
	primary.cli(0, "fed", "kick", "west")
	harness.Eventually(t, 20*time.Second, "west dismissed", func() error {
		if r := west.role(); r != "standalone" {
			return fmt.Errorf("west is %s", r)
		}
		if names, _, _ := west.federated(); len(names) != 0 {
			return fmt.Errorf("west still holds %v", names)
		}
		return nil
	})
}
