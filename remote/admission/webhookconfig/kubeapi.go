package webhookconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// ErrKubeconfig is returned for a kubeconfig that cannot be used.
var ErrKubeconfig = errors.New("webhookconfig: bad kubeconfig")

// Client talks to one Kubernetes API server with the credentials of a
// kubeconfig or of the pod's service account.
type Client struct {
	server string
	http   *http.Client
	// token returns the bearer token for each request ("" for none).
	token    func() (string, error)
	username string
	password string
}

// kubeconfig holds the fields of a kubeconfig file the client uses.
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData string `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
			TLSServerName            string `json:"tls-server-name"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Token                 string         `json:"token"`
			TokenFile             string         `json:"tokenFile"`
			ClientCertificate     string         `json:"client-certificate"`
			ClientCertificateData string         `json:"client-certificate-data"`
			ClientKey             string         `json:"client-key"`
			ClientKeyData         string         `json:"client-key-data"`
			Username              string         `json:"username"`
			Password              string         `json:"password"`
			Exec                  map[string]any `json:"exec"`
			AuthProvider          map[string]any `json:"auth-provider"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

// LoadKubeconfig builds a client from a kubeconfig file's current context.
// Certificates and keys may be inline (-data) or files (relative to the
// kubeconfig's directory); exec and auth-provider plugins are not supported.
func LoadKubeconfig(path string) (*Client, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKubeconfig, err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKubeconfig, path, err)
	}
	dir := filepath.Dir(path)
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: "+format, append([]any{ErrKubeconfig, path}, a...)...)
	}
	if kc.CurrentContext == "" {
		return nil, bad("current-context is not set")
	}
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
		}
	}
	if !found {
		return nil, bad("context %q not found", kc.CurrentContext)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	cl := &Client{token: func() (string, error) { return "", nil }}
	found = false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		cl.server = strings.TrimSuffix(c.Cluster.Server, "/")
		tlsCfg.ServerName = c.Cluster.TLSServerName
		tlsCfg.InsecureSkipVerify = c.Cluster.InsecureSkipTLSVerify
		caPEM, err := dataOrFile(c.Cluster.CertificateAuthorityData, c.Cluster.CertificateAuthority, dir)
		if err != nil {
			return nil, bad("cluster %q: certificate authority: %v", clusterName, err)
		}
		if caPEM != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(caPEM) {
				return nil, bad("cluster %q: certificate authority holds no PEM certificate", clusterName)
			}
			tlsCfg.RootCAs = pool
		}
	}
	if !found {
		return nil, bad("cluster %q not found", clusterName)
	}
	if u, err := url.Parse(cl.server); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, bad("cluster %q: server %q is not an https URL", clusterName, cl.server)
	}
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		switch {
		case u.User.Exec != nil:
			return nil, bad("user %q: exec credential plugins are not supported; use a token or a client certificate", userName)
		case u.User.AuthProvider != nil:
			return nil, bad("user %q: auth-provider plugins are not supported; use a token or a client certificate", userName)
		}
		certPEM, err := dataOrFile(u.User.ClientCertificateData, u.User.ClientCertificate, dir)
		if err != nil {
			return nil, bad("user %q: client certificate: %v", userName, err)
		}
		keyPEM, err := dataOrFile(u.User.ClientKeyData, u.User.ClientKey, dir)
		if err != nil {
			return nil, bad("user %q: client key: %v", userName, err)
		}
		if (certPEM == nil) != (keyPEM == nil) {
			return nil, bad("user %q: client certificate and key must be given together", userName)
		}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, bad("user %q: client certificate: %v", userName, err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
		switch {
		case u.User.Token != "":
			tok := u.User.Token
			cl.token = func() (string, error) { return tok, nil }
		case u.User.TokenFile != "":
			cl.token = tokenFile(resolve(u.User.TokenFile, dir))
		}
		cl.username, cl.password = u.User.Username, u.User.Password
	}
	cl.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil}}
	return cl, nil
}

// In-cluster service-account files.
const (
	saDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// InCluster builds a client from the pod's service account; ok is false
// when the process does not run in a pod.
func InCluster() (cl *Client, ok bool, err error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, false, nil
	}
	caPEM, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, true, fmt.Errorf("webhookconfig: in-cluster: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, true, errors.New("webhookconfig: in-cluster: ca.crt holds no PEM certificate")
	}
	cl = &Client{
		server: "https://" + strings.TrimSuffix(host+":"+port, ":"),
		http:   &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}},
		token:  tokenFile(filepath.Join(saDir, "token")),
	}
	if strings.Contains(host, ":") {
		cl.server = "https://[" + host + "]:" + port
	}
	return cl, true, nil
}

// tokenFile reads a bearer token from a file at each request, so rotated
// service-account tokens are picked up.
func tokenFile(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}

func resolve(p, dir string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func dataOrFile(data, file, dir string) ([]byte, error) {
	if data != "" {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("-data is not base64: %v", err)
		}
		return b, nil
	}
	if file == "" {
		return nil, nil
	}
	return os.ReadFile(resolve(file, dir))
}

// StatusError is an error answer of the API server.
type StatusError struct {
	Code    int
	Reason  string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("kubernetes API: %d %s: %s", e.Code, e.Reason, e.Message)
}

// Server is the API server's URL.
func (c *Client) Server() string { return c.server }

// do sends one JSON request; out may be nil. A non-2xx answer is a
// *StatusError.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	tok, err := c.token()
	if err != nil {
		return err
	}
	switch {
	case tok != "":
		req.Header.Set("Authorization", "Bearer "+tok)
	case c.username != "":
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		se := &StatusError{Code: resp.StatusCode}
		var st struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &st) == nil {
			se.Reason, se.Message = st.Reason, st.Message
		}
		if se.Message == "" {
			se.Message = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return se
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}
