package auth

import (
	"sync"
	"time"
)

// limiter counts failed logins per client and user name on this replica.
// After MaxFailures failures the client waits LockoutBase, doubling with
// every further failure up to LockoutMax; a success clears the record.
type limiter struct {
	cfg Config
	mu  sync.Mutex
	m   map[string]*failures
}

type failures struct {
	count int
	until time.Time
	last  time.Time
}

// maxTracked bounds the table so a flood of distinct names cannot grow it
// without limit; the stalest records are dropped first.
const maxTracked = 10000

func newLimiter(cfg Config) *limiter { return &limiter{cfg: cfg, m: map[string]*failures{}} }

func (l *limiter) blocked(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.m[key]
	if !ok {
		return 0
	}
	if wait := f.until.Sub(l.cfg.Now()); wait > 0 {
		return wait
	}
	return 0
}

// fail records a failure and returns the wait it imposes, if any.
func (l *limiter) fail(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	f, ok := l.m[key]
	if !ok {
		if len(l.m) >= maxTracked {
			l.evict(now)
		}
		f = &failures{}
		l.m[key] = f
	}
	// Failures older than the longest lockout are forgotten.
	if now.Sub(f.last) > l.cfg.LockoutMax {
		f.count = 0
	}
	f.count++
	f.last = now
	if f.count < l.cfg.MaxFailures {
		return 0
	}
	wait := l.cfg.LockoutBase << uint(min(f.count-l.cfg.MaxFailures, 20))
	if wait > l.cfg.LockoutMax || wait <= 0 {
		wait = l.cfg.LockoutMax
	}
	f.until = now.Add(wait)
	return wait
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	delete(l.m, key)
	l.mu.Unlock()
}

func (l *limiter) evict(now time.Time) {
	for k, f := range l.m {
		if now.Sub(f.last) > l.cfg.LockoutMax {
			delete(l.m, k)
		}
	}
	if len(l.m) < maxTracked {
		return
	}
	var oldestKey string
	var oldest time.Time
	for k, f := range l.m {
		if oldestKey == "" || f.last.Before(oldest) {
			oldestKey, oldest = k, f.last
		}
	}
	delete(l.m, oldestKey)
}
