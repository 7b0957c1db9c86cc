package scanning

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/palisade-sec/palisade/registryscan/scan"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

// Config configures the scanning module.
type Config struct {
	// Store is the replica's store.
	Store *store.Store
	// Logger receives the module's logs.
	Logger *slog.Logger
	// CacheDir holds the layer and report cache (scan.DirCache); it must
	// survive restarts so that a digest is never pulled twice.
	CacheDir string
	// Feed is the vulnerability feed; nil scans without one (inventories
	// and secrets only).
	Feed vulndb.Source
	// FeedInterval is how often the feed is reloaded; a changed feed
	// re-matches the stored inventories and rewrites the changed results.
	FeedInterval time.Duration
	// Scan tunes the scanner (timeouts, platform, credentials, transport);
	// Insecure is set per registry.
	Scan scan.Config
	// Workers is how many scan tasks run at once in the leader's process;
	// zero leaves every task to remote scanner workers (palisade scanner).
	Workers int
	// CA returns the cluster CA: it seals registry credentials and anchors
	// the scanner workers' TLS. nil (or nil returned) disables both.
	CA func() *pki.CA
	// PollWait is how long a remote worker's poll waits for a job before
	// it returns empty (the worker then polls again).
	PollWait time.Duration
	// WorkerTimeout is how long a remote worker may go without polling
	// before it counts as lost: its queued tasks go to other workers and
	// the jobs it held are retried as failed attempts.
	WorkerTimeout time.Duration
	// WorkerTokenTTL is the default lifetime of a worker enrolment token.
	WorkerTokenTTL time.Duration
	// GCInterval is how often the leader withdraws federated results no
	// existing federated registry references (also done at once when a
	// registry is deleted).
	GCInterval time.Duration
	// Tick is how often the scheduler looks for registries due a scan.
	Tick time.Duration
	// DefaultInterval is a registry's interval when it sets none.
	DefaultInterval time.Duration
	// MinInterval is the shortest interval a registry may have.
	MinInterval time.Duration
	// MaxAttempts is how many times an image is tried in one pass before
	// its failure is left recorded until the next pass.
	MaxAttempts int
	// RetryBase is the wait after the first failure; it doubles with each
	// further failure up to RetryMax.
	RetryBase time.Duration
	RetryMax  time.Duration
	// ResultBatch is the most store operations written in one
	// transaction; a result waits at most ResultFlush for its batch to
	// fill. Fewer, larger revisions cost less in Raft and in the
	// federation stream.
	ResultBatch int
	ResultFlush time.Duration
	// ServeResultByDigest adds GET /v1/scan/results/:digest. The admission
	// module serves that route (the same stored verdicts) when it runs;
	// set this only when it does not.
	ServeResultByDigest bool
}

// DefaultConfig returns the defaults of `palisade controller`.
func DefaultConfig() Config {
	sc := scan.DefaultConfig()
	return Config{
		FeedInterval:    time.Hour,
		Scan:            sc,
		Workers:         2,
		PollWait:        20 * time.Second,
		WorkerTimeout:   45 * time.Second,
		WorkerTokenTTL:  time.Hour,
		GCInterval:      time.Minute,
		Tick:            250 * time.Millisecond,
		DefaultInterval: time.Hour,
		MinInterval:     time.Minute,
		MaxAttempts:     5,
		RetryBase:       5 * time.Second,
		RetryMax:        5 * time.Minute,
		ResultBatch:     300,
		ResultFlush:     100 * time.Millisecond,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("scanning: config: store is nil")
	case c.Logger == nil:
		return errors.New("scanning: config: logger is nil")
	case c.CacheDir == "":
		return errors.New("scanning: config: cache dir is empty")
	case c.Workers < 0:
		return fmt.Errorf("scanning: config: workers %d must not be negative", c.Workers)
	case c.PollWait <= 0 || c.WorkerTimeout <= c.PollWait:
		return fmt.Errorf("scanning: config: poll wait %s must be positive and below the worker timeout %s", c.PollWait, c.WorkerTimeout)
	case c.WorkerTokenTTL <= 0:
		return fmt.Errorf("scanning: config: worker token TTL %s must be positive", c.WorkerTokenTTL)
	case c.GCInterval <= 0:
		return fmt.Errorf("scanning: config: gc interval %s must be positive", c.GCInterval)
	case c.Tick <= 0:
		return fmt.Errorf("scanning: config: tick %s must be positive", c.Tick)
	case c.MinInterval <= 0:
		return fmt.Errorf("scanning: config: min interval %s must be positive", c.MinInterval)
	case c.DefaultInterval < c.MinInterval:
		return fmt.Errorf("scanning: config: default interval %s is below the minimum %s", c.DefaultInterval, c.MinInterval)
	case c.MaxAttempts < 1:
		return fmt.Errorf("scanning: config: max attempts %d must be at least 1", c.MaxAttempts)
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("scanning: config: retry base %s and max %s must be positive, base <= max", c.RetryBase, c.RetryMax)
	case c.ResultBatch < 3 || c.ResultBatch > store.MaxTxnOps:
		return fmt.Errorf("scanning: config: result batch %d must be from 3 to %d", c.ResultBatch, store.MaxTxnOps)
	case c.ResultFlush <= 0:
		return fmt.Errorf("scanning: config: result flush %s must be positive", c.ResultFlush)
	case c.Feed != nil && c.FeedInterval <= 0:
		return fmt.Errorf("scanning: config: feed interval %s must be positive", c.FeedInterval)
	}
	if err := c.Scan.Validate(); err != nil {
		return fmt.Errorf("scanning: config: %w", err)
	}
	return nil
}

// backoff is the wait before attempt n+1 after n failures (n >= 1).
func (c *Config) backoff(n int) time.Duration {
	d := c.RetryBase
	for i := 1; i < n && d < c.RetryMax; i++ {
		d *= 2
	}
	return min(d, c.RetryMax)
}
