package scanning

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/registryscan/scan"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/store"
)

// Log field names of this package.
const (
	logRegistry = "registry"
	logRef      = "ref"
	logDigest   = "digest"
	logAttempt  = "attempt"
	logWorker   = "worker"
)

// Module is the scanning module of one controller replica.
type Module struct {
	cfg   Config
	st    *store.Store
	log   *slog.Logger
	cache *scan.DirCache
	// secure and insecure scanners share the cache and the feed.
	secure, insecure *scan.Scanner
	updater          *scan.Updater

	mu        sync.Mutex
	scheduler *scheduler // while this replica leads
}

// New builds the module; Run starts it.
func New(cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cache, err := scan.NewDirCache(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("scanning: cache: %w", err)
	}
	m := &Module{cfg: cfg, st: cfg.Store, log: cfg.Logger.With(logfields.Component, "scanning"), cache: cache}
	sc := cfg.Scan
	sc.Insecure = false
	if m.secure, err = scan.New(sc, nil, cache, m.log); err != nil {
		return nil, fmt.Errorf("scanning: %w", err)
	}
	sc.Insecure = true
	if m.insecure, err = scan.New(sc, nil, cache, m.log); err != nil {
		return nil, fmt.Errorf("scanning: %w", err)
	}
	if cfg.Feed != nil {
		ucfg := scan.UpdaterConfig{Source: cfg.Feed, Interval: cfg.FeedInterval, OnUpdate: m.feedUpdated}
		if m.updater, err = scan.NewUpdater(ucfg, m.secure, m.log); err != nil {
			return nil, fmt.Errorf("scanning: %w", err)
		}
	}
	return m, nil
}

// Scanner returns the scanner for secure or insecure registries.
func (m *Module) scanner(insecure bool) *scan.Scanner {
	if insecure {
		return m.insecure
	}
	return m.secure
}

// Stats returns what this replica's scanners pulled and found cached.
func (m *Module) Stats() scan.Stats {
	a, b := m.secure.Stats(), m.insecure.Stats()
	return scan.Stats{LayersPulled: a.LayersPulled + b.LayersPulled, LayerBytes: a.LayerBytes + b.LayerBytes,
		LayerCacheHits: a.LayerCacheHits + b.LayerCacheHits, ImageCacheHits: a.ImageCacheHits + b.ImageCacheHits}
}

// Run loads the feed, keeps it fresh, and runs the scheduler while this
// replica leads, until ctx ends.
func (m *Module) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if m.updater != nil {
		// The first load happens before any scan, so that no image is
		// matched against an empty feed.
		if _, err := m.updater.Refresh(ctx); err != nil {
			m.log.Error("load vulnerability feed", logfields.Error, err)
		}
		m.insecure.SetDB(m.secure.DB())
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.refreshFeed(ctx)
		}()
	}
	t := time.NewTicker(m.cfg.Tick)
	defer t.Stop()
	var (
		stop func()
		done chan struct{}
	)
	halt := func() {
		if stop != nil {
			stop()
			<-done
			stop = nil
			m.mu.Lock()
			m.scheduler = nil
			m.mu.Unlock()
		}
	}
	defer halt()
	for {
		lead := m.st.IsLeader()
		switch {
		case lead && stop == nil:
			sctx, c := context.WithCancel(ctx)
			s := newScheduler(m)
			stop, done = c, make(chan struct{})
			m.mu.Lock()
			m.scheduler = s
			m.mu.Unlock()
			go func() {
				defer close(done)
				s.run(sctx)
			}()
			m.log.Info("scheduling registry scans", logfields.Count, m.cfg.Workers)
		case !lead && stop != nil:
			m.log.Info("no longer scheduling registry scans")
			halt()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Module) refreshFeed(ctx context.Context) {
	t := time.NewTicker(m.cfg.FeedInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := m.updater.Refresh(ctx); err != nil {
			m.log.Warn("refresh vulnerability feed", logfields.Error, err)
		}
	}
}

// feedUpdated rewrites the results whose findings a new feed changed.
func (m *Module) feedUpdated(ctx context.Context, u scan.Update) {
	m.insecure.SetDB(m.secure.DB())
	if !m.st.IsLeader() {
		return
	}
	var ops []store.Op
	for _, ch := range u.Changes {
		r, ok, err := m.cache.Report(ctx, ch.Digest)
		if err != nil || !ok {
			continue
		}
		b, err := json.Marshal(verdict.FromReport(r))
		if err != nil {
			continue
		}
		for _, p := range []string{PrefixResults, PrefixFedStream} {
			if _, ok, _ := m.st.Get(p + ch.Digest); ok {
				ops = append(ops, store.Op{Type: store.OpPut, Key: p + ch.Digest, Value: b})
			}
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 1000)
		if _, err := m.st.Txn(ctx, store.Txn{Ops: ops[:n]}); err != nil {
			m.log.Warn("rewrite results after a feed update", logfields.Error, err)
			return
		}
		ops = ops[n:]
	}
	m.log.Info("vulnerability feed updated", "feed", u.FeedDigest, "advisories", u.Advisories, logfields.Count, len(u.Changes))
}

// DB returns the feed in use (nil when none is configured or loaded).
func (m *Module) DB() *vulndb.DB { return m.secure.DB() }
