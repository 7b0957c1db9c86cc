// Package apiclient is the HTTP client for a Palisade controller's REST
// API: TLS trusting the cluster CA, bearer-token sessions, JSON in and out,
// API errors decoded back into *apierr.Error, and listings read one window
// or followed page by page.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/palisade-sec/palisade/shared/apierr"
)

// Config says where the API is and how to trust and authenticate to it.
type Config struct {
	// URL is the API's base URL, for example https://127.0.0.1:10443.
	URL string
	// Token is the session token sent as a bearer token.
	Token string
	// CAFile is a PEM file with the cluster CA; when empty the system
	// roots are used.
	CAFile string
	// Timeout bounds each request.
	Timeout time.Duration
}

// Client calls the API.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New checks the configuration and builds a client.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("apiclient: no API URL (use --api or PALISADE_API, or log in first)")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("apiclient: API URL %q must look like https://HOST:PORT", cfg.URL)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pemBytes, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("apiclient: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("apiclient: CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Client{
		base:  u,
		token: cfg.Token,
		http:  &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}},
	}, nil
}

// WithToken returns a copy of the client that sends token.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// Do sends in (JSON-encoded, unless nil) with method to path and decodes a
// JSON response into out (unless nil). A non-2xx answer is returned as
// *apierr.Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("apiclient: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.Raw(ctx, method, path, "application/json", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("apiclient: decode %s %s response: %w", method, path, err)
	}
	return nil
}

// Raw sends a request with a body of the given content type and returns
// the response when it is 2xx; otherwise its error as *apierr.Error.
func (c *Client) Raw(ctx context.Context, method, path, contentType string, body io.Reader) (*http.Response, error) {
	u := c.base.JoinPath(strings.SplitN(path, "?", 2)[0])
	if i := strings.IndexByte(path, '?'); i >= 0 {
		u.RawQuery = path[i+1:]
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("apiclient: build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("apiclient: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var ae apierr.Error
	if json.Unmarshal(raw, &ae) != nil || ae.Code == "" {
		return nil, &apierr.Error{Code: apierr.CodeInternal, Message: fmt.Sprintf("HTTP %d from %s %s: %s", resp.StatusCode, method, path, strings.TrimSpace(string(raw)))}
	}
	return nil, &ae
}
