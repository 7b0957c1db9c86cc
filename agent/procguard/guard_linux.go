//go:build linux

package procguard

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Scope says what a fanotify mark covers.
type Scope uint8

// Scopes.
const (
	ScopeDirectory  Scope = iota // the files directly in a directory
	ScopeMount                   // a mount
	ScopeFilesystem              // a whole filesystem
)

// Mark is one place whose executions (and, with Files, file opens and
// changes) the guard answers.
type Mark struct {
	Path  string
	Scope Scope
	// Files also watches opens (to enforce blocking file rules) and
	// writes (to report changes) of files under the mark.
	Files bool
}

// GuardConfig configures a Guard.
type GuardConfig struct {
	// Marks are the places guarded, typically the root filesystem of each
	// protected workload.
	Marks []Mark
	// CgroupRoot is the mount point of the cgroup v2 hierarchy, used to
	// find the cgroup id of an executing process.
	CgroupRoot string
}

// DefaultGuardConfig guards nothing yet and finds cgroup v2 where this
// project's nodes mount it.
func DefaultGuardConfig() GuardConfig {
	return GuardConfig{CgroupRoot: "/sys/fs/cgroup/unified"}
}

// Validate reports the first problem of the configuration.
func (c GuardConfig) Validate() error {
	if !filepath.IsAbs(c.CgroupRoot) {
		return fmt.Errorf("procguard config: CgroupRoot %q is not absolute", c.CgroupRoot)
	}
	for _, m := range c.Marks {
		if !filepath.IsAbs(m.Path) {
			return fmt.Errorf("procguard config: mark path %q is not absolute", m.Path)
		}
		if m.Scope > ScopeFilesystem {
			return fmt.Errorf("procguard config: mark %q: unknown scope %d", m.Path, m.Scope)
		}
	}
	return nil
}

// EventKind says what a Decision is about.
type EventKind uint8

// Event kinds.
const (
	EventExec       EventKind = iota + 1 // an exec
	EventFileOpen                        // an open under a file rule
	EventFileChange                      // a file under a file rule was written
)

// Decision is the guard's answer to one event.
type Decision struct {
	Kind     EventKind
	Pid      int
	CgroupID uint64
	Path     string
	Verdict  Verdict // for execs
	Mode     Mode
	Denied   bool
	// Rule is the file rule an open or a change fell under.
	Rule FileRule
}

// Guard answers fanotify exec-permission events.
type Guard struct {
	cfg    GuardConfig
	log    *slog.Logger
	policy *Policy
	f      *os.File
	self   int
	// execs remembers, by pid, the interpreter an allowed exec names (an
	// ELF executable's PT_INTERP loader, a script's #! interpreter), which
	// the same execve opens next and which is allowed with it. Only the
	// goroutine running Run uses it.
	execs map[int]pendingExec
}

// pendingExec is the interpreter an allowed exec will open.
type pendingExec struct {
	path string
	at   time.Time
}

// NewGuard opens a fanotify group and places the marks.
func NewGuard(cfg GuardConfig, policy *Policy, log *slog.Logger) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fanotify init: %w", err)
	}
	g := &Guard{cfg: cfg, log: log, policy: policy, f: os.NewFile(uintptr(fd), "fanotify"), self: os.Getpid(), execs: map[int]pendingExec{}}
	for _, m := range cfg.Marks {
		if err := g.AddMark(m); err != nil {
			g.f.Close()
			return nil, err
		}
	}
	return g, nil
}

// AddMark starts guarding m.
func (g *Guard) AddMark(m Mark) error {
	if err := g.mark(unix.FAN_MARK_ADD, m); err != nil {
		return fmt.Errorf("fanotify mark %s: %w", m.Path, err)
	}
	return nil
}

// RemoveMark stops guarding m: it takes away what AddMark(m) placed (a
// place marked by two Marks of the same scope loses both).
func (g *Guard) RemoveMark(m Mark) error {
	if err := g.mark(unix.FAN_MARK_REMOVE, m); err != nil {
		return fmt.Errorf("fanotify unmark %s: %w", m.Path, err)
	}
	return nil
}

// mark adds or removes (op) the events and scope m asks for.
func (g *Guard) mark(op uint, m Mark) error {
	flags := op
	mask := uint64(unix.FAN_OPEN_EXEC_PERM)
	if m.Files {
		mask |= unix.FAN_OPEN_PERM | unix.FAN_CLOSE_WRITE
	}
	switch m.Scope {
	case ScopeDirectory:
		mask |= unix.FAN_EVENT_ON_CHILD
	case ScopeMount:
		flags |= unix.FAN_MARK_MOUNT
	case ScopeFilesystem:
		flags |= unix.FAN_MARK_FILESYSTEM
	}
	return unix.FanotifyMark(int(g.f.Fd()), flags, mask, unix.AT_FDCWD, m.Path)
}

// Close removes every mark; executions pending an answer are allowed.
func (g *Guard) Close() error { return g.f.Close() }

// Run answers permission events until ctx is done. report, if not nil, is
// called after the answer is sent for every denial, for every open a file
// rule covers and for every change to a covered file.
func (g *Guard) Run(ctx context.Context, report func(Decision)) error {
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			g.f.SetReadDeadline(time.Now())
		case <-stop:
		}
	}()
	defer func() {
		close(stop)
		<-stopped
	}()
	buf := make([]byte, 16<<10)
	for {
		n, err := g.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read fanotify events: %w", err)
		}
		g.handle(buf[:n], report)
	}
}

const metadataSize = 24

func (g *Guard) handle(b []byte, report func(Decision)) {
	for len(b) >= metadataSize {
		var m unix.FanotifyEventMetadata
		if _, err := binary.Decode(b[:metadataSize], binary.NativeEndian, &m); err != nil {
			return
		}
		if m.Event_len < metadataSize || int(m.Event_len) > len(b) {
			return
		}
		b = b[m.Event_len:]
		if m.Vers != unix.FANOTIFY_METADATA_VERSION || m.Fd < 0 {
			continue
		}
		var d Decision
		switch {
		case m.Mask&unix.FAN_OPEN_EXEC_PERM != 0:
			d = g.decide(int(m.Fd), int(m.Pid))
		case m.Mask&(unix.FAN_OPEN_PERM|unix.FAN_CLOSE_WRITE) != 0:
			d = g.decideFile(int(m.Fd), int(m.Pid), m.Mask&unix.FAN_CLOSE_WRITE != 0)
		}
		if m.Mask&(unix.FAN_OPEN_EXEC_PERM|unix.FAN_OPEN_PERM) != 0 {
			resp := uint32(unix.FAN_ALLOW)
			if d.Denied {
				resp = unix.FAN_DENY
			}
			out, _ := binary.Append(nil, binary.NativeEndian, unix.FanotifyResponse{Fd: m.Fd, Response: resp})
			if _, err := g.f.Write(out); err != nil {
				g.log.Error("fanotify answer failed", "pid", d.Pid, "path", d.Path, "err", err)
			}
		}
		unix.Close(int(m.Fd))
		if d.Denied {
			g.log.Warn("access denied", "pid", d.Pid, "path", d.Path, "cgroup", d.CgroupID)
		}
		if report != nil && (d.Denied || d.Kind == EventFileOpen || d.Kind == EventFileChange) {
			report(d)
		}
	}
}

// decideFile matches an open or a change against the file rules. A process
// in no group, or an unreadable event, is allowed and not reported.
func (g *Guard) decideFile(fd, pid int, change bool) Decision {
	d := Decision{Pid: pid}
	if pid == g.self {
		return d
	}
	// The link names the file as the processes of its mount namespace see
	// it (a container's file by its path in the container); its device
	// tells one root filesystem from another.
	path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return d
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return d
	}
	cg, err := CgroupOf(g.cfg.CgroupRoot, pid)
	if err != nil {
		if !change {
			return d
		}
		// The writer is gone (the close came with its exit): attribute
		// the change to the group whose rule covers the file.
		var ok bool
		if cg, ok = g.policy.FileOwner(st.Dev, path); !ok {
			return d
		}
	}
	rule, matched, mode, deny := g.policy.CheckFile(cg, st.Dev, path, change)
	if !matched {
		return d
	}
	if !change && len(rule.Apps) > 0 {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		if err == nil && rule.Allows(exe) {
			return d
		}
	}
	d.Path, d.CgroupID, d.Mode, d.Rule = path, cg, mode, rule
	if change {
		d.Kind = EventFileChange
		return d
	}
	d.Kind, d.Denied = EventFileOpen, deny
	return d
}

// loaderWindow bounds the time between an allowed exec and the opening of
// its interpreter.
const loaderWindow = 5 * time.Second

// fdReader reads a file by its descriptor without moving its offset.
type fdReader int

func (r fdReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(r), p, off)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	if n < 0 {
		n = 0
	}
	return n, err
}

// Interpreter returns the interpreter an exec of the file will open next,
// as the host sees it: an ELF executable's PT_INTERP loader or a script's
// #! interpreter; "" when there is none or it cannot be read.
func Interpreter(r io.ReaderAt) string {
	head := make([]byte, 256)
	n, _ := r.ReadAt(head, 0)
	head = head[:n]
	var name string
	switch {
	case bytes.HasPrefix(head, []byte("#!")):
		line, _, _ := bytes.Cut(head[2:], []byte("\n"))
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			return ""
		}
		name = fields[0]
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		f, err := elf.NewFile(r)
		if err != nil {
			return ""
		}
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP || p.Filesz == 0 || p.Filesz > 4096 {
				continue
			}
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return ""
			}
			name = string(bytes.TrimRight(b, "\x00"))
			break
		}
	}
	if !filepath.IsAbs(name) {
		return ""
	}
	if real, err := filepath.EvalSymlinks(name); err == nil {
		return real
	}
	return name
}

// decide never fails closed on its own errors: a process whose cgroup or
// path cannot be read is not guarded. The interpreter an allowed exec names
// (its dynamic loader, or a script's interpreter and then that one's
// loader) is allowed when the same process opens it next; run on its own,
// an interpreter is decided like any executable.
func (g *Guard) decide(fd, pid int) Decision {
	d := Decision{Kind: EventExec, Pid: pid, Verdict: Unguarded}
	if pid == g.self {
		return d
	}
	path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return d
	}
	d.Path = path
	cg, err := CgroupOf(g.cfg.CgroupRoot, pid)
	if err != nil {
		return d
	}
	d.CgroupID = cg
	now := time.Now()
	if pe, ok := g.execs[pid]; ok {
		delete(g.execs, pid)
		if pe.path == path && now.Sub(pe.at) < loaderWindow {
			d.Verdict = Allowed
			g.expect(fd, pid, now)
			return d
		}
	}
	d.Verdict, d.Mode, d.Denied = g.policy.Decide(cg, path)
	if d.Verdict != Unguarded && !d.Denied {
		g.expect(fd, pid, now)
	}
	return d
}

// expect remembers the interpreter the exec of fd by pid opens next.
func (g *Guard) expect(fd, pid int, now time.Time) {
	next := Interpreter(fdReader(fd))
	if next == "" {
		return
	}
	if len(g.execs) >= 4096 {
		for p, pe := range g.execs {
			if now.Sub(pe.at) >= loaderWindow {
				delete(g.execs, p)
			}
		}
	}
	if len(g.execs) < 4096 {
		g.execs[pid] = pendingExec{path: next, at: now}
	}
}

// CgroupOf returns the cgroup v2 id (the inode of its directory under
// root) of process pid.
func CgroupOf(root string, pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return 0, fmt.Errorf("read cgroup of %d: %w", pid, err)
	}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		line := s.Bytes()
		if rel, ok := bytes.CutPrefix(line, []byte("0::")); ok {
			var st unix.Stat_t
			p := filepath.Join(root, string(rel))
			if err := unix.Stat(p, &st); err != nil {
				return 0, fmt.Errorf("stat cgroup %s: %w", p, err)
			}
			return st.Ino, nil
		}
	}
	return 0, fmt.Errorf("procguard: process %d has no cgroup v2 entry", pid)
}
