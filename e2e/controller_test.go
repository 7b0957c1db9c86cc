package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/shared/apierr"
)

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func login(t *testing.T, c *harness.Controller, user, password string) string {
	t.Helper()
	var resp api.LoginResponse
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.Client(t, "").Do(ctx, "POST", "/v1/auth/login", api.LoginRequest{Username: user, Password: password}, &resp); err != nil {
		t.Fatalf("login %s on %s: %v", user, c.Name, err)
	}
	return resp.Token
}

func usersOn(t *testing.T, c *harness.Controller, token string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list api.UserList
	if err := c.Client(t, token).Do(ctx, "GET", "/v1/users", nil, &list); err != nil {
		return nil, err
	}
	var names []string
	for _, u := range list.Items {
		names = append(names, u.Name)
	}
	return names, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestControllerClusterSurvivesLeaderKill runs three real controller
// processes that find each other with --join, kills the leader with
// SIGKILL, writes through a survivor, and restarts the killed replica,
// which catches up.
func TestControllerClusterSurvivesLeaderKill(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "admin-password-1")
	cs := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: "c", Replicas: 3, PasswordFile: pw})

	// The CLI logs in and shows the cluster.
	env := []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, "session.json")}
	if out, errOut, code := harness.CLI(t, bin, env, "login", "--api", cs[0].API, "--ca-file", cs[0].CAFile(), "--password-file", pw); code != 0 {
		t.Fatalf("login: exit %d\n%s%s", code, out, errOut)
	}
	var cl api.Cluster
	harness.Eventually(t, 15*time.Second, "three replicas with one leader", func() error {
		out, errOut, code := harness.CLI(t, bin, env, "cluster", "status", "-o", "json")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &cl); err != nil {
			return err
		}
		leaders := 0
		for _, r := range cl.Replicas {
			if r.State == "leader" {
				leaders++
				if r.Name != cl.Leader {
					return fmt.Errorf("replica %s is leader but cluster says %s", r.Name, cl.Leader)
				}
			} else if r.State != "follower" {
				return fmt.Errorf("replica %s is %s", r.Name, r.State)
			}
		}
		if len(cl.Replicas) != 3 || leaders != 1 {
			return fmt.Errorf("replicas %+v", cl.Replicas)
		}
		return nil
	})
	if cl.Name != "c" || cl.Role != "standalone" || cl.Revision == 0 {
		t.Fatalf("cluster = %+v", cl)
	}
	if out, _, _ := harness.CLI(t, bin, env, "cluster", "status"); !strings.Contains(out, "leader") || !strings.Contains(out, cl.Leader) {
		t.Fatalf("table output lacks the leader:\n%s", out)
	}

	var leader *harness.Controller
	var survivors []*harness.Controller
	for _, c := range cs {
		if c.Name == cl.Leader {
			leader = c
		} else {
			survivors = append(survivors, c)
		}
	}
	token := login(t, survivors[0], "admin", "admin-password-1")

	// Writes acknowledged before the kill must survive it.
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		req := api.CreateUserRequest{Name: fmt.Sprintf("before-%d", i), Role: "reader", Password: "reader-password"}
		if err := survivors[i%2].Client(t, token).Do(ctx, "POST", "/v1/users", req, nil); err != nil {
			t.Fatal(err)
		}
	}
	leader.Kill()
	took := harness.Eventually(t, 15*time.Second, "write after leader kill", func() error {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		err := survivors[1].Client(t, token).Do(ctx, "POST", "/v1/users", api.CreateUserRequest{Name: "carol", Role: "reader", Password: "carol-password"}, nil)
		var ae *apierr.Error
		if errors.As(err, &ae) && ae.Code == apierr.CodeConflict {
			return nil // an earlier attempt committed
		}
		return err
	})
	t.Logf("first write after killing leader %s succeeded after %s", leader.Name, took.Round(time.Millisecond))
	// Followers apply committed writes shortly after the leader does.
	for _, c := range survivors {
		harness.Eventually(t, 5*time.Second, c.Name+" has every acknowledged write", func() error {
			names, err := usersOn(t, c, token)
			if err != nil {
				return err
			}
			for _, want := range []string{"carol", "before-0", "before-1", "before-2", "before-3", "before-4"} {
				if !contains(names, want) {
					return fmt.Errorf("%s missing: %v", want, names)
				}
			}
			return nil
		})
	}

	// The killed replica restarts from its data dir and catches up.
	leader.Restart()
	leader.WaitLog(harness.ReadyRE, 2, 90*time.Second)
	took = harness.Eventually(t, 60*time.Second, "restarted replica catches up", func() error {
		names, err := usersOn(t, leader, token)
		if err != nil {
			return err
		}
		if !contains(names, "carol") {
			return fmt.Errorf("users %v", names)
		}
		return nil
	})
	t.Logf("restarted replica %s served the new write %s after becoming ready", leader.Name, took.Round(time.Millisecond))
}

// TestControllerRefusesBadInput covers credentials, roles, malformed
// bodies, login rate limits, a generated admin password and a damaged
// data dir, against one real controller process.
func TestControllerRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	cs := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: "solo", Replicas: 1})
	c := cs[0]
	// No password file: one was generated and logged once.
	m := c.WaitLog(regexp.MustCompile(`generated password.* password=(\S+)`), 1, 10*time.Second)
	adminPW := m[1]
	if n := strings.Count(c.Log(), adminPW); n != 1 {
		t.Fatalf("generated password appears %d times in the log, want once", n)
	}
	admin := login(t, c, "admin", adminPW)
	ctx := context.Background()

	expectErr := func(what string, err error, code apierr.Code, field, text string) {
		t.Helper()
		var ae *apierr.Error
		if !errors.As(err, &ae) {
			t.Fatalf("%s: err = %v, want API error %s", what, err, code)
		}
		if ae.Code != code || ae.Field != field || !strings.Contains(ae.Message, text) {
			t.Fatalf("%s: got %+v, want code %s field %q message containing %q", what, ae, code, field, text)
		}
	}

	// Missing and bad sessions.
	err := c.Client(t, "").Do(ctx, "GET", "/v1/cluster", nil, nil)
	expectErr("no token", err, apierr.CodeUnauthorized, "", "log in")
	err = c.Client(t, "pst_forged").Do(ctx, "GET", "/v1/cluster", nil, nil)
	expectErr("forged token", err, apierr.CodeUnauthorized, "", "no session")

	// Malformed bodies name the field.
	err = c.Client(t, admin).Do(ctx, "POST", "/v1/users", map[string]any{"name": 7, "role": "reader", "password": "longenough"}, nil)
	expectErr("wrong type", err, apierr.CodeBadRequest, "name", "want string")
	err = c.Client(t, admin).Do(ctx, "POST", "/v1/users", map[string]any{"name": "x", "role": "reader", "pasword": "longenough"}, nil)
	expectErr("unknown field", err, apierr.CodeBadRequest, "pasword", "unknown field")
	err = c.Client(t, admin).Do(ctx, "POST", "/v1/users", map[string]any{"name": "x", "role": "root", "password": "longenough"}, nil)
	expectErr("bad role", err, apierr.CodeBadRequest, "role", "not one of")
	resp, rawErr := c.Client(t, admin).Raw(ctx, "POST", "/v1/users", "application/json", strings.NewReader(`{"name":`))
	if resp != nil {
		resp.Body.Close()
	}
	expectErr("truncated JSON", rawErr, apierr.CodeBadRequest, "body", "")

	// A reader cannot write, through the API or the CLI.
	if err := c.Client(t, admin).Do(ctx, "POST", "/v1/users", api.CreateUserRequest{Name: "rita", Role: "reader", Password: "rita-password"}, nil); err != nil {
		t.Fatal(err)
	}
	reader := login(t, c, "rita", "rita-password")
	err = c.Client(t, reader).Do(ctx, "DELETE", "/v1/users/admin", nil, nil)
	expectErr("reader delete", err, apierr.CodeForbidden, "", "role reader may not")
	env := []string{"PALISADE_API=" + c.API, "PALISADE_CA_FILE=" + c.CAFile(), "PALISADE_TOKEN=" + reader, "PALISADE_SESSION_FILE=" + filepath.Join(dir, "none.json")}
	_, errOut, code := harness.CLI(t, bin, env, "user", "create", "eve", "--role", "admin", "--password-file", writeFile(t, dir, "eve.pw", "eve-password"))
	if code != 1 || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("reader user create via CLI: exit %d, stderr %q", code, errOut)
	}
	if out, _, code := harness.CLI(t, bin, env, "user", "list"); code != 0 || !strings.Contains(out, "rita") {
		t.Fatalf("reader user list: exit %d\n%s", code, out)
	}

	// Wrong passwords are refused, then rate-limited.
	_, errOut, code = harness.CLI(t, bin, []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, "s.json")},
		"login", "--api", c.API, "--ca-file", c.CAFile(), "--password-file", writeFile(t, dir, "bad.pw", "not-the-password"))
	if code != 1 || !strings.Contains(errOut, "wrong user name or password") {
		t.Fatalf("CLI login with a wrong password: exit %d, stderr %q", code, errOut)
	}
	var limited *apierr.Error
	for i := 0; i < 10 && limited == nil; i++ {
		err := c.Client(t, "").Do(ctx, "POST", "/v1/auth/login", api.LoginRequest{Username: "admin", Password: "guess-" + fmt.Sprint(i)}, nil)
		var ae *apierr.Error
		if errors.As(err, &ae) && ae.Code == apierr.CodeTooMany {
			limited = ae
		}
	}
	if limited == nil || limited.RetryAfterSeconds < 1 {
		t.Fatalf("no rate limit after repeated failed logins: %+v", limited)
	}
	resp, rawErr = c.Client(t, "").Raw(ctx, "POST", "/v1/auth/login", "application/json", strings.NewReader(`{"username":"admin","password":"`+adminPW+`"}`))
	if resp != nil {
		resp.Body.Close()
	}
	expectErr("correct password while locked out", rawErr, apierr.CodeTooMany, "", "too many failed logins")

	// Health and metrics need no session.
	var h api.Health
	if err := c.Client(t, "").Do(ctx, "GET", "/v1/healthz", nil, &h); err != nil || h.Status != "ok" || h.Leader != c.Name {
		t.Fatalf("healthz = %+v, %v", h, err)
	}
	mresp, err := c.Client(t, "").Raw(ctx, "GET", "/metrics", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if mresp.StatusCode != http.StatusOK || !strings.Contains(string(metrics), "palisade_store_leader 1") || !strings.Contains(string(metrics), `palisade_api_requests_total{method="POST",route="/v1/auth/login",status="429"}`) {
		t.Fatalf("metrics lack the leader gauge or the 429 count:\n%.2000s", metrics)
	}

	// A damaged data dir stops the replica with a message that names it.
	c.Stop()
	if err := os.WriteFile(filepath.Join(c.DataDir, "raft.db"), []byte("garbage, not a bolt database"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Restart()
	deadline := time.Now().Add(20 * time.Second)
	for {
		exited, err := c.Exited()
		if exited {
			if err == nil {
				t.Fatal("controller with a corrupt raft.db exited 0")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("controller with a corrupt raft.db kept running")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if log := c.Log(); !strings.Contains(log, "raft.db") || !strings.Contains(log, "corrupt") {
		t.Fatalf("startup error does not name the damaged file:\n%s", log[max(0, len(log)-1500):])
	}
}

// TestControllerReplicaLeavesGracefully stops a replica started with
// --leave-on-terminate: it is removed from the replica set, and the two
// that remain keep a leader and accept writes.
func TestControllerReplicaLeavesGracefully(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "admin-password-1")
	cs := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: "g", Replicas: 3, PasswordFile: pw, Extra: []string{"--leave-on-terminate"}})
	token := login(t, cs[0], "admin", "admin-password-1")
	cs[2].Stop()
	if exited, err := cs[2].Exited(); !exited || err != nil {
		t.Fatalf("replica did not exit cleanly after SIGTERM: exited=%v err=%v", exited, err)
	}
	harness.Eventually(t, 20*time.Second, "the leaving replica is removed", func() error {
		var cl api.Cluster
		if err := cs[0].Client(t, token).Do(context.Background(), "GET", "/v1/cluster", nil, &cl); err != nil {
			return err
		}
		if len(cl.Replicas) != 2 || cl.Leader == "" || cl.Leader == cs[2].Name {
			return fmt.Errorf("replicas %+v, leader %q", cl.Replicas, cl.Leader)
		}
		for _, r := range cl.Replicas {
			if r.Name == cs[2].Name {
				return fmt.Errorf("%s still listed", r.Name)
			}
		}
		return nil
	})
	harness.Eventually(t, 10*time.Second, "write after the leave", func() error {
		return cs[1].Client(t, token).Do(context.Background(), "POST", "/v1/users", api.CreateUserRequest{Name: "after-leave", Role: "reader", Password: "reader-password"}, nil)
	})
}
