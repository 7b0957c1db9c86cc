// Package controller runs one replica of a cluster controller: the
// replicated store, the leader-only duties (creating the cluster CA, the
// cluster identity and the admin account, pruning sessions), the cluster
// CA's certificate on disk for clients, and the HTTPS REST API.
package controller

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

// KeyCA is where the cluster CA is kept in the replicated store.
const KeyCA = "pki/ca"

// Config configures one controller replica.
type Config struct {
	// Name is this replica's name, unique in the cluster.
	Name string
	// ClusterName names the cluster; it is recorded on first start.
	ClusterName string
	// DataDir holds the replica's Raft state and ca.crt.
	DataDir string
	// APIAddr is where the HTTPS API listens.
	APIAddr string
	// RaftAddr and GossipAddr are the replication and discovery addresses.
	RaftAddr   string
	GossipAddr string
	// AdvertiseHost is the IP peers and clients use to reach this replica
	// when the listen addresses are 0.0.0.0; it defaults to the listen IP.
	AdvertiseHost string
	// Join lists gossip addresses of other replicas.
	Join []string
	// BootstrapExpect is how many replicas form a new cluster.
	BootstrapExpect int
	// AdminPassword sets the first admin password; empty generates one
	// that is logged once.
	AdminPassword string
	// APISANs are extra DNS names or IPs for the API certificate.
	APISANs []string
	// ReapTimeout is how long an unreachable replica stays a member.
	ReapTimeout time.Duration
	// LeaveOnStop makes a stopping replica leave the cluster (it is removed
	// from the Raft configuration) instead of stopping to restart later.
	LeaveOnStop bool
	// Auth configures sessions and login limits.
	Auth auth.Config
	// Modules add API routes and background work; they are built once the
	// store is open. Modules that implement httpapi.Runner are run for the
	// replica's whole life.
	Modules func(h *Handle) []httpapi.Module
	// UI serves the web console at paths outside /v1 (see api.Config.UI);
	// nil serves none.
	UI http.Handler
	// Meta is published to the other replicas (for example this replica's
	// federation address).
	Meta map[string]string
	// Logger receives the controller's logs.
	Logger *slog.Logger
	// RaftLogOutput receives Raft and gossip logs (nil discards them).
	RaftLogOutput io.Writer
}

// DefaultConfig returns the defaults of `palisade controller`.
func DefaultConfig() Config {
	return Config{
		ClusterName:     "palisade",
		APIAddr:         "0.0.0.0:10443",
		RaftAddr:        "0.0.0.0:18300",
		GossipAddr:      "0.0.0.0:18301",
		BootstrapExpect: 1,
		ReapTimeout:     5 * time.Minute,
		Auth:            auth.DefaultConfig(),
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("controller: config: name is empty (--name)")
	case c.DataDir == "":
		return errors.New("controller: config: data dir is empty (--data-dir)")
	case c.ClusterName == "":
		return errors.New("controller: config: cluster name is empty")
	case c.BootstrapExpect < 1:
		return fmt.Errorf("controller: config: bootstrap-expect %d must be at least 1", c.BootstrapExpect)
	}
	for _, a := range []struct{ flag, v string }{{"--api-addr", c.APIAddr}, {"--raft-addr", c.RaftAddr}, {"--gossip-addr", c.GossipAddr}} {
		if _, port, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("controller: config: %s %q: %w", a.flag, a.v, err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("controller: config: %s %q: bad port", a.flag, a.v)
		}
	}
	if c.AdvertiseHost != "" && net.ParseIP(c.AdvertiseHost) == nil {
		return fmt.Errorf("controller: config: advertise address %q is not an IP", c.AdvertiseHost)
	}
	return c.Auth.Validate()
}

// Handle gives modules access to the running replica.
type Handle struct {
	Store    *store.Store
	Auth     *auth.Authenticator
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// CA returns the cluster CA (available once Run has started serving).
	CA func() *pki.CA
	// Cluster returns the cluster's identity.
	Cluster func() clusterinfo.Info
	// Advertise turns a listen address into the address peers reach.
	Advertise func(addr string) string
	// API returns the replica's REST API handler once it is built (nil
	// before), for requests that arrive by other ways than its listener.
	API func() http.Handler
}

// Controller is one running replica.
type Controller struct {
	cfg Config
	log *slog.Logger

	mu  sync.Mutex
	ca  *pki.CA
	api http.Handler
}

// New checks the configuration.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Controller{cfg: cfg, log: cfg.Logger.With(logfields.Component, "controller", logfields.Replica, cfg.Name)}, nil
}

// advertise replaces an unspecified host in addr with the advertise host.
func (c *Controller) advertise(addr string) string { return Advertise(addr, c.cfg.AdvertiseHost) }

// Advertise returns the address peers use for a listen address: addr
// itself, or, when it binds all interfaces, host (default: this machine's
// first non-loopback IPv4 address) with addr's port.
func Advertise(addr, host string) string {
	h, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		h = host
		if h == "" {
			h = defaultAdvertiseIP()
		}
	}
	return net.JoinHostPort(h, port)
}

// Run runs the replica until ctx ends. It returns an error when the replica
// cannot start (bad data dir, ports in use) or stops abnormally.
func (c *Controller) Run(ctx context.Context) error {
	scfg := store.DefaultConfig()
	scfg.Name = c.cfg.Name
	scfg.DataDir = c.cfg.DataDir
	scfg.RaftAddr = c.cfg.RaftAddr
	scfg.RaftAdvertise = c.advertise(c.cfg.RaftAddr)
	scfg.GossipAddr = c.cfg.GossipAddr
	scfg.Join = c.cfg.Join
	scfg.BootstrapExpect = c.cfg.BootstrapExpect
	scfg.APIAddr = c.advertise(c.cfg.APIAddr)
	scfg.ReapTimeout = c.cfg.ReapTimeout
	scfg.Logger = c.cfg.Logger
	scfg.RaftLogOutput = c.cfg.RaftLogOutput
	scfg.Meta = c.cfg.Meta
	st, err := store.Open(scfg)
	if err != nil {
		return err
	}
	defer st.Close()

	authn, err := auth.New(st, c.cfg.Auth)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "palisade_store_revision", Help: "Latest revision applied on this replica."},
		func() float64 { return float64(st.Revision()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "palisade_store_leader", Help: "1 when this replica leads the cluster."},
		func() float64 {
			if st.IsLeader() {
				return 1
			}
			return 0
		}))

	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.leaderLoop(runCtx, st, authn)
	}()

	ca, err := c.waitForCA(runCtx, st)
	if err != nil {
		return err
	}
	caPath := filepath.Join(c.cfg.DataDir, "ca.crt")
	if err := os.WriteFile(caPath, ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", caPath, err)
	}
	tlsCert, err := c.serverCertificate(ca)
	if err != nil {
		return err
	}
	h := &Handle{Store: st, Auth: authn, Logger: c.cfg.Logger, Registry: reg, CA: c.currentCA,
		Cluster: func() clusterinfo.Info { return clusterinfo.Get(st) }, Advertise: c.advertise, API: c.currentAPI}
	acfg := api.DefaultConfig()
	acfg.Store = st
	acfg.Auth = authn
	acfg.Cluster = h.Cluster
	acfg.Logger = c.cfg.Logger
	acfg.Registry = reg
	acfg.LeaderURL = func() string { return leaderURL(st) }
	acfg.UI = c.cfg.UI
	acfg.LeaderTransport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}
	if c.cfg.Modules != nil {
		acfg.Modules = c.cfg.Modules(h)
	}
	srv, err := api.New(acfg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.api = srv.Handler()
	c.mu.Unlock()
	for _, m := range acfg.Modules {
		if r, ok := m.(httpapi.Runner); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.Run(runCtx); err != nil && runCtx.Err() == nil {
					c.log.Error("module stopped", logfields.Error, err)
				}
			}()
		}
	}
	ln, err := net.Listen("tcp", c.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen on API address %s: %w", c.cfg.APIAddr, err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{tlsCert}},
		ErrorLog:          slog.NewLogLogger(c.cfg.Logger.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- hs.ServeTLS(ln, "", "")
	}()
	c.log.Info("controller ready", "api", "https://"+c.advertise(ln.Addr().String()), "ca", caPath)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			cancel()
			return fmt.Errorf("serve API: %w", err)
		}
	}
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shutCancel()
	hs.Shutdown(shutCtx)
	if c.cfg.LeaveOnStop {
		c.log.Info("leaving the cluster")
		leaveCtx, leaveCancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer leaveCancel()
		if err := st.Leave(leaveCtx); err != nil {
			c.log.Warn("leave the cluster", logfields.Error, err)
		}
	}
	c.log.Info("controller stopping")
	return nil
}

func (c *Controller) currentAPI() http.Handler {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.api
}

func (c *Controller) currentCA() *pki.CA {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ca
}

// leaderURL is the leader's API base URL, from gossip, or "".
func leaderURL(st *store.Store) string {
	name, _ := st.Leader()
	for _, r := range st.Replicas() {
		if r.Name == name && r.APIAddress != "" {
			return "https://" + r.APIAddress
		}
	}
	return ""
}

type storedCA struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// waitForCA returns the cluster CA once the leader has finished setting up
// the cluster (or a previous run did).
func (c *Controller) waitForCA(ctx context.Context, st *store.Store) (*pki.CA, error) {
	logged := false
	for {
		_, formed, _ := st.Get(clusterinfo.Key)
		if kv, ok, _ := st.Get(KeyCA); ok && formed {
			var s storedCA
			if err := json.Unmarshal(kv.Value, &s); err != nil {
				return nil, fmt.Errorf("decode cluster CA from store: %w", err)
			}
			ca, err := pki.ParseCA([]byte(s.Cert), []byte(s.Key))
			if err != nil {
				return nil, fmt.Errorf("cluster CA in store: %w", err)
			}
			c.mu.Lock()
			c.ca = ca
			c.mu.Unlock()
			return ca, nil
		}
		if !logged {
			c.log.Info("waiting for the cluster to form", "bootstrapExpect", c.cfg.BootstrapExpect)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Controller) serverCertificate(ca *pki.CA) (tls.Certificate, error) {
	req := pki.LeafRequest{CommonName: c.cfg.Name, DNSNames: []string{"localhost", c.cfg.Name}, Server: true, Validity: 365 * 24 * time.Hour}
	ips := map[string]bool{"127.0.0.1": true, "::1": true}
	if host, _, _ := net.SplitHostPort(c.advertise(c.cfg.APIAddr)); host != "" {
		ips[host] = true
	}
	for _, san := range c.cfg.APISANs {
		if net.ParseIP(san) != nil {
			ips[san] = true
		} else {
			req.DNSNames = append(req.DNSNames, san)
		}
	}
	for ip := range ips {
		req.IPs = append(req.IPs, net.ParseIP(ip))
	}
	leaf, err := ca.Issue(req)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue API certificate: %w", err)
	}
	return leaf.TLSCertificate(ca)
}

// leaderLoop runs leader-only duties while this replica leads.
func (c *Controller) leaderLoop(ctx context.Context, st *store.Store, authn *auth.Authenticator) {
	ch, unsub := st.SubscribeLeadership()
	defer unsub()
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-ch:
			switch {
			case isLeader && stop == nil:
				stop = c.startLeading(ctx, st, authn)
			case !isLeader && stop != nil:
				stop()
				stop = nil
			}
		}
	}
}

// startLeading runs lead until the returned stop is called.
func (c *Controller) startLeading(ctx context.Context, st *store.Store, authn *auth.Authenticator) (stop func()) {
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.lead(lctx, st, authn)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (c *Controller) lead(ctx context.Context, st *store.Store, authn *auth.Authenticator) {
	c.log.Info("leading the cluster")
	for ctx.Err() == nil {
		if err := c.ensureClusterState(ctx, st, authn); err != nil {
			c.log.Warn("set up cluster state", logfields.Error, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		break
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := authn.PruneSessions(ctx); err != nil {
				c.log.Warn("prune sessions", logfields.Error, err)
			} else if n > 0 {
				c.log.Info("pruned expired sessions", logfields.Count, n)
			}
		}
	}
}

// ensureClusterState creates, once per cluster, the CA, the cluster
// identity and the admin account.
func (c *Controller) ensureClusterState(ctx context.Context, st *store.Store, authn *auth.Authenticator) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, ok, _ := st.Get(KeyCA); !ok {
		ca, err := pki.NewCA(c.cfg.ClusterName+" cluster CA", 10*365*24*time.Hour)
		if err != nil {
			return err
		}
		certPEM, keyPEM, err := pki.MarshalCA(ca)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(storedCA{Cert: string(certPEM), Key: string(keyPEM)})
		if _, err := st.Create(wctx, KeyCA, b); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("store cluster CA: %w", err)
		}
		c.log.Info("created cluster CA", "fingerprint", ca.Fingerprint())
	}
	pw, generated, err := authn.Bootstrap(wctx, c.cfg.AdminPassword)
	if err != nil {
		return fmt.Errorf("create admin account: %w", err)
	}
	if generated {
		c.log.Warn("created the admin account with a generated password; it is shown only this once",
			logfields.User, "admin", "password", pw)
	} else if pw != "" {
		c.log.Info("created the admin account with the password from --admin-password-file")
	}
	// Written last: replicas wait for it, so once it exists the CA and the
	// admin account do too.
	if _, ok, _ := st.Get(clusterinfo.Key); !ok {
		b, _ := json.Marshal(clusterinfo.Info{Name: c.cfg.ClusterName, Role: clusterinfo.Standalone})
		if _, err := st.Create(wctx, clusterinfo.Key, b); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("store cluster info: %w", err)
		}
	}
	return nil
}

// defaultAdvertiseIP picks this host's first non-loopback IPv4 address, or
// loopback when there is none.
func defaultAdvertiseIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
