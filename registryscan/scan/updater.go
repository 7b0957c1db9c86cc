package scan

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

// Change is what a feed update changed in one stored report.
type Change struct {
	Digest  string   `json:"digest"`
	Ref     string   `json:"ref"`
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// Update is the outcome of one feed refresh.
type Update struct {
	// Changed is false when the feed's content was the same as before.
	Changed    bool     `json:"changed"`
	FeedDigest string   `json:"feedDigest"`
	Advisories int      `json:"advisories"`
	Images     int      `json:"images"`
	Changes    []Change `json:"changes,omitempty"`
}

// Rematch matches every stored report's inventory against db and stores
// the new findings; nothing is pulled. It returns the reports whose set of
// vulnerability IDs changed.
func (s *Scanner) Rematch(ctx context.Context, db *vulndb.DB) ([]Change, int, error) {
	digests, err := s.cache.ReportDigests(ctx)
	if err != nil {
		return nil, 0, err
	}
	var out []Change
	for _, d := range digests {
		if err := ctx.Err(); err != nil {
			return out, 0, err
		}
		r, ok, err := s.cache.Report(ctx, d)
		if err != nil || !ok {
			continue
		}
		before := map[string]bool{}
		for _, v := range r.Vulnerabilities {
			before[v.ID+"\x00"+v.Package+"\x00"+v.Path] = true
		}
		r.Vulnerabilities = db.MatchPackages(r.OS, r.Packages)
		r.FeedDigest = db.Digest()
		r.MatchedAt = time.Now().UTC()
		c := Change{Digest: d, Ref: r.Ref}
		after := map[string]bool{}
		for _, v := range r.Vulnerabilities {
			k := v.ID + "\x00" + v.Package + "\x00" + v.Path
			after[k] = true
			if !before[k] {
				c.Added = appendUnique(c.Added, v.ID)
			}
		}
		for _, v := range keys(before) {
			if !after[v] {
				c.Removed = appendUnique(c.Removed, v[:indexNUL(v)])
			}
		}
		if err := s.cache.PutReport(ctx, r); err != nil {
			return out, 0, err
		}
		if len(c.Added)+len(c.Removed) > 0 {
			out = append(out, c)
		}
	}
	return out, len(digests), nil
}

func indexNUL(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return i
		}
	}
	return len(s)
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// UpdaterConfig configures an Updater.
type UpdaterConfig struct {
	// Source produces the feed.
	Source vulndb.Source
	// Interval is the time between refreshes.
	Interval time.Duration
	// OnUpdate, if set, is called after each refresh that changed the
	// feed, with what changed; the controller publishes it from here.
	OnUpdate func(ctx context.Context, u Update)
}

// DefaultUpdaterConfig refreshes hourly.
func DefaultUpdaterConfig() UpdaterConfig { return UpdaterConfig{Interval: time.Hour} }

// Validate checks the settings.
func (c UpdaterConfig) Validate() error {
	if c.Source == nil {
		return fmt.Errorf("scan: updater Source not set")
	}
	if c.Interval <= 0 {
		return fmt.Errorf("scan: updater Interval %v must be positive", c.Interval)
	}
	return nil
}

// Updater refreshes a Scanner's feed on a schedule, without a restart.
type Updater struct {
	cfg UpdaterConfig
	s   *Scanner
	log *slog.Logger
}

// NewUpdater builds an Updater for s.
func NewUpdater(cfg UpdaterConfig, s *Scanner, log *slog.Logger) (*Updater, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Updater{cfg: cfg, s: s, log: log}, nil
}

// Refresh loads the feed once; if its content changed, it swaps it into
// the scanner and re-matches every stored report.
func (u *Updater) Refresh(ctx context.Context) (Update, error) {
	db, err := u.cfg.Source.Load(ctx)
	if err != nil {
		return Update{}, fmt.Errorf("refresh feed: %w", err)
	}
	up := Update{FeedDigest: db.Digest(), Advisories: db.Len()}
	if cur := u.s.DB(); cur != nil && cur.Digest() == db.Digest() {
		return up, nil
	}
	u.s.SetDB(db)
	changes, n, err := u.s.Rematch(ctx, db)
	if err != nil {
		return up, fmt.Errorf("re-match after feed update: %w", err)
	}
	up.Changed, up.Images, up.Changes = true, n, changes
	u.log.Info("feed updated", "advisories", db.Len(), "feed", db.Digest(), "images", n, "changed", len(changes))
	if u.cfg.OnUpdate != nil {
		u.cfg.OnUpdate(ctx, up)
	}
	return up, nil
}

// Run refreshes at once and then every Interval until ctx is done. A
// failed refresh is logged and retried at the next tick; the scanner keeps
// the feed it has.
func (u *Updater) Run(ctx context.Context) error {
	t := time.NewTicker(u.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := u.Refresh(ctx); err != nil && ctx.Err() == nil {
			u.log.Warn("feed refresh failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
