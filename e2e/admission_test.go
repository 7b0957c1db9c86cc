package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/remote/admission"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/shared/pki"
)

// kubeAPIServerVersion is the kube-apiserver `make kube-apiserver` builds.
const kubeAPIServerVersion = "v1.37.2"

// kubeAPIServer returns the cached kube-apiserver binary, or skips.
func kubeAPIServer(t *testing.T) string {
	t.Helper()
	p := os.Getenv("PALISADE_KUBE_APISERVER")
	if p == "" {
		p = filepath.Join("/var/cache/palisade-dev", "kube-apiserver-"+kubeAPIServerVersion)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("kube-apiserver %s not built (%v): run `make kube-apiserver` (10-15 minutes the first time) or set PALISADE_KUBE_APISERVER", kubeAPIServerVersion, err)
	}
	for _, tool := range []string{"etcd", "kubectl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs etcd-server; kubectl comes with the machine)", tool)
		}
	}
	return p
}

// kubeCluster is a real etcd and kube-apiserver on loopback, with a
// kubeconfig holding an admin token.
type kubeCluster struct {
	t          *testing.T
	kubeconfig string
	server     string
	token      string
	client     *http.Client
}

func startKubeCluster(t *testing.T, apiserver, dir string) *kubeCluster {
	t.Helper()
	etcdClient, etcdPeer := ports.Next(t), ports.Next(t)
	harness.Start(t, "etcd", dir, "etcd",
		"--name", "e2e", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://"+etcdClient, "--advertise-client-urls", "http://"+etcdClient,
		"--listen-peer-urls", "http://"+etcdPeer, "--initial-advertise-peer-urls", "http://"+etcdPeer,
		"--initial-cluster", "e2e=http://"+etcdPeer, "--log-level", "warn")

	// Serving certificate and service-account keys for the API server.
	ca, err := pki.NewCA("kube-e2e", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafRequest{CommonName: "kube-apiserver", DNSNames: []string{"localhost", "kubernetes.default.svc"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, Validity: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	files := map[string][]byte{
		"ca.crt":     ca.CertPEM,
		"server.crt": leaf.CertPEM,
		"server.key": leaf.KeyPEM,
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv": []byte("e2e-admin-token,e2e-admin,1,system:masters\n"),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := ports.Next(t)
	_, port, _ := net.SplitHostPort(addr)
	proc := harness.Start(t, apiserver, dir, "kube-apiserver",
		"--etcd-servers", "http://"+etcdClient,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", port,
		"--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-private-key-file", filepath.Join(dir, "server.key"),
		"--client-ca-file", filepath.Join(dir, "ca.crt"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--endpoint-reconciler-type", "none",
		"--allow-privileged=true",
		// No controller manager runs, so no service account tokens exist.
		"--disable-admission-plugins", "ServiceAccount",
		"--cert-dir", filepath.Join(dir, "kube-certs"))
	kc := &kubeCluster{t: t, server: "https://" + addr, token: "e2e-admin-token",
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}}
	kc.kubeconfig = filepath.Join(dir, "kubeconfig")
	kcfg := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: e2e
clusters:
- name: e2e
  cluster: {server: %q, certificate-authority: ca.crt}
users:
- name: admin
  user: {token: %s}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin, namespace: default}
`, kc.server, kc.token)
	if err := os.WriteFile(kc.kubeconfig, []byte(kcfg), 0o600); err != nil {
		t.Fatal(err)
	}
	took := harness.Eventually(t, 90*time.Second, "kube-apiserver ready", func() error {
		if exited, err := proc.Exited(); exited {
			t.Fatalf("kube-apiserver exited: %v", err)
		}
		req, _ := http.NewRequest("GET", kc.server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+kc.token)
		resp, err := kc.client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz: %d", resp.StatusCode)
		}
		// The default namespace is created by the API server itself.
		_, errOut, code := kc.kubectl("get", "namespace", "default")
		if code != 0 {
			return fmt.Errorf("default namespace: %s", errOut)
		}
		return nil
	})
	t.Logf("kube-apiserver ready in %v", took)
	return kc
}

func (kc *kubeCluster) kubectl(args ...string) (string, string, int) {
	kc.t.Helper()
	return kc.kubectlIn("", args...)
}

// apply runs `kubectl apply` of a manifest from stdin.
func (kc *kubeCluster) apply(manifest string) (string, string, int) {
	kc.t.Helper()
	return kc.kubectlIn(manifest, "apply", "-f", "-")
}

// kubectlIn runs kubectl with stdin and returns its output and exit code.
func (kc *kubeCluster) kubectlIn(stdin string, args ...string) (string, string, int) {
	kc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kc.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		kc.t.Fatalf("kubectl %s: %v", args[0], err)
	}
	return out.String(), errOut.String(), code
}

func podManifest(name, image string, privileged bool) string {
	sc := ""
	if privileged {
		sc = "\n    securityContext: {privileged: true}"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default}
spec:
  containers:
  - name: app
    image: %s%s
`, name, image, sc)
}

const e2eAdmissionRules = `apiVersion: palisade.dev/v1
kind: AdmissionRule
metadata: {name: cluster-admission}
spec:
  mode: %s
  rules:
  - name: deny-critical-cves
    action: deny
    criteria: [{name: cveCriticalCount, op: ">", value: "0"}]
`

// TestAdmissionWebhookWithKubeAPIServer runs a real etcd and kube-apiserver
// on loopback and a palisade controller with --kubeconfig: the controller
// registers its webhook, kubectl's pod with an image carrying critical CVEs
// is denied with the rule and reason, a clean one is admitted (also by tag,
// resolved through a registry), monitor mode admits while recording the
// would-be denial, a deleted registration is restored, and a rule pushed
// from a federation primary denies a privileged pod.
func TestAdmissionWebhookWithKubeAPIServer(t *testing.T) {
	apiserver := kubeAPIServer(t)
	started := time.Now()
	dir := t.TempDir()
	kc := startKubeCluster(t, apiserver, dir)

	// A registry with one image, pushed by tag.
	regSrv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(regSrv.Close)
	regHost := strings.TrimPrefix(regSrv.URL, "http://")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tagged := regHost + "/shop/api:1.0"
	ref, _ := name.ParseReference(tagged, name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	taggedDigest, _ := img.Digest()

	pw := writeFile(t, dir, "admin.pw", "admission-admin-password")
	webhookAddr := ports.Next(t)
	cs := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: "adm", Replicas: 1, PasswordFile: pw, Extra: []string{
		"--kubeconfig", kc.kubeconfig,
		"--admission-addr", webhookAddr,
		"--admission-url", "https://" + webhookAddr + admission.PathValidate,
		"--admission-insecure-registry",
		"--admission-resync", "1s",
	}})
	c := cs[0]
	token := login(t, c, "admin", "admission-admin-password")
	cli := func(want int, args ...string) string {
		t.Helper()
		env := []string{"PALISADE_API=" + c.API, "PALISADE_CA_FILE=" + c.CAFile(), "PALISADE_TOKEN=" + token}
		out, errOut, code := harness.CLI(t, bin, env, args...)
		if code != want {
			t.Fatalf("palisade %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out
	}
	do := func(method, path string, in, out any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		return c.Client(t, token).Do(ctx, method, path, in, out)
	}
	applyPolicy := func(yaml string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		resp, err := c.Client(t, token).Raw(ctx, "POST", "/v1/policy/apply", "application/yaml", strings.NewReader(yaml))
		if err != nil {
			t.Fatalf("policy apply: %v", err)
		}
		resp.Body.Close()
	}
	waitMode := func(mode string) {
		t.Helper()
		harness.Eventually(t, 15*time.Second, "admission mode "+mode, func() error {
			var st admission.Status
			if err := do("GET", "/v1/admission/status", nil, &st); err != nil {
				return err
			}
			if st.Mode != mode || st.Rules == 0 {
				return fmt.Errorf("status %+v", st)
			}
			return nil
		})
	}

	// The controller registers its webhook.
	harness.Eventually(t, 30*time.Second, "webhook registered", func() error {
		out, errOut, code := kc.kubectl("get", "validatingwebhookconfiguration", "palisade-admission", "-o", "json")
		if code != 0 {
			return fmt.Errorf("%s", errOut)
		}
		var vwc struct {
			Webhooks []struct {
				FailurePolicy  string `json:"failurePolicy"`
				TimeoutSeconds int    `json:"timeoutSeconds"`
				SideEffects    string `json:"sideEffects"`
				ClientConfig   struct {
					URL      string `json:"url"`
					CABundle []byte `json:"caBundle"`
				} `json:"clientConfig"`
			} `json:"webhooks"`
		}
		if err := json.Unmarshal([]byte(out), &vwc); err != nil || len(vwc.Webhooks) != 1 {
			return fmt.Errorf("configuration %s: %v", out, err)
		}
		wh := vwc.Webhooks[0]
		caPEM, _ := os.ReadFile(c.CAFile())
		if wh.FailurePolicy != "Ignore" || wh.TimeoutSeconds != 3 || wh.SideEffects != "None" || string(wh.ClientConfig.CABundle) != string(caPEM) {
			return fmt.Errorf("webhook %+v", wh)
		}
		return nil
	})

	// Rules through the policy API, verdicts through the scan-results API.
	applyPolicy(fmt.Sprintf(e2eAdmissionRules, "protect"))
	waitMode("protect")
	vulnDigest := "sha256:" + strings.Repeat("c0", 32)
	cleanDigest := "sha256:" + strings.Repeat("0c", 32)
	for _, v := range []verdict.Verdict{
		{Digest: vulnDigest, Critical: 3, High: 7, CVEs: []string{"CVE-2024-3094", "CVE-2023-4863", "CVE-2021-44228"}},
		{Digest: cleanDigest},
		{Digest: taggedDigest.String(), Critical: 1, CVEs: []string{"CVE-2024-3094"}},
	} {
		if err := do("PUT", "/v1/scan/results/"+v.Digest, v, nil); err != nil {
			t.Fatalf("seed verdict: %v", err)
		}
	}
	vulnImage := "registry.example/shop/web@" + vulnDigest
	cleanImage := "registry.example/shop/web@" + cleanDigest

	denied := regexp.MustCompile(`admission webhook "admission.palisade.dev" denied the request: denied by admission rule "deny-critical-cves" \(cveCriticalCount > 0; container "app" image "([^"]+)"\)`)
	// The API server may need a moment to pick up the new configuration.
	harness.Eventually(t, 30*time.Second, "vulnerable pod denied", func() error {
		_, errOut, code := kc.apply(podManifest("vulnerable", vulnImage, false))
		if code == 0 {
			kc.kubectl("delete", "pod", "vulnerable", "--wait=false")
			return fmt.Errorf("admitted")
		}
		if m := denied.FindStringSubmatch(errOut); m == nil || m[1] != vulnImage {
			return fmt.Errorf("kubectl: %s", errOut)
		}
		return nil
	})
	if out, errOut, code := kc.apply(podManifest("clean", cleanImage, false)); code != 0 {
		t.Fatalf("clean pod: exit %d %s%s", code, out, errOut)
	}
	if _, errOut, code := kc.apply(podManifest("by-tag", tagged, false)); code == 0 || !denied.MatchString(errOut) {
		t.Fatalf("pod by tag (resolved to a digest with a critical verdict): exit %d %s", code, errOut)
	}
	// The same manifest fails the controller-backed dry run.
	manifest := writeFile(t, dir, "vulnerable.yaml", podManifest("vulnerable", vulnImage, false))
	if out := cli(1, "admission", "test", "-f", manifest, "--api", c.API); !strings.Contains(out, "deny-critical-cves") {
		t.Errorf("admission test --api: %s", out)
	}

	// Monitor mode admits and records the would-be denial.
	applyPolicy(fmt.Sprintf(e2eAdmissionRules, "monitor"))
	waitMode("monitor")
	out, errOut, code := kc.apply(podManifest("monitored", vulnImage, false))
	if code != 0 || !strings.Contains(errOut, `would be denied by admission rule "deny-critical-cves"`) {
		t.Fatalf("monitor mode: exit %d\n%s%s", code, out, errOut)
	}
	var events admission.EventList
	harness.Eventually(t, 10*time.Second, "audit events", func() error {
		if err := do("GET", "/v1/admission/events?denied=true&limit=100", nil, &events); err != nil {
			return err
		}
		var sawDeny, sawWould bool
		for _, e := range events.Items {
			sawDeny = sawDeny || (!e.Allowed && e.Rule == "deny-critical-cves" && e.User == "e2e-admin" && e.Name == "vulnerable" && e.LatencyMicros > 0)
			sawWould = sawWould || (e.Allowed && e.WouldDeny && e.Name == "monitored")
		}
		if !sawDeny || !sawWould {
			return fmt.Errorf("denial %v, would-be denial %v in %d events", sawDeny, sawWould, len(events.Items))
		}
		return nil
	})
	if out := cli(0, "admission", "events", "--denied"); !strings.Contains(out, "would deny") || !strings.Contains(out, "denied") {
		t.Errorf("admission events:\n%s", out)
	}

	// A deleted registration comes back.
	if _, errOut, code := kc.kubectl("delete", "validatingwebhookconfiguration", "palisade-admission"); code != 0 {
		t.Fatal(errOut)
	}
	harness.Eventually(t, 20*time.Second, "webhook re-registered", func() error {
		_, errOut, code := kc.kubectl("get", "validatingwebhookconfiguration", "palisade-admission")
		if code != 0 {
			return fmt.Errorf("%s", errOut)
		}
		return nil
	})

	// A rule pushed from a federation primary denies a privileged pod here.
	fedPW := writeFile(t, dir, "fed.pw", "fed-admin-password")
	primary := startFedCluster(t, dir, "hq", 1, fedPW)
	primary.cli(0, "fed", "promote")
	tok, _ := primary.cli(0, "fed", "token", "create", "--ttl", "10m")
	remoteCluster := &fedCluster{t: t, name: "adm", reps: cs, env: []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, "adm.session")}, token: token}
	remoteCluster.cli(0, "login", "--api", c.API, "--ca-file", c.CAFile(), "--password-file", pw)
	remoteCluster.cli(0, "fed", "join", "--token", strings.TrimSpace(tok))
	res := primary.applyFed(admissionDenyPrivileged, "")
	remoteCluster.waitFederated([]string{"AdmissionRule/fed-no-privileged"}, res.Revision)
	waitMode("protect") // the federated document's mode wins over the local monitor
	fedDenied := regexp.MustCompile(`denied the request: denied by admission rule "deny-privileged" \(runAsPrivileged = true; container "app"`)
	harness.Eventually(t, 15*time.Second, "privileged pod denied by the federated rule", func() error {
		_, errOut, code := kc.apply(podManifest("privileged", cleanImage, true))
		if code == 0 {
			kc.kubectl("delete", "pod", "privileged", "--wait=false")
			return fmt.Errorf("admitted")
		}
		if !fedDenied.MatchString(errOut) {
			return fmt.Errorf("kubectl: %s", errOut)
		}
		return nil
	})
	t.Logf("admission e2e took %v (kube-apiserver and etcd included)", time.Since(started))
}
