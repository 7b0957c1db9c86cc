//go:build linux

package procguard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// ExecEvent is one successful exec.
type ExecEvent struct {
	KernelTimeNs uint64
	Pid          uint32
	UID          uint32
	CgroupID     uint64
	Comm         string
	// Filename is the name given to execve (it may be relative).
	Filename string
	// Path is the executable as the host sees it (/proc/PID/exe), or ""
	// when the process was gone before it could be read.
	Path string
}

// Observer reports every exec on the node.
type Observer struct {
	log  *slog.Logger
	objs bpf.ExecObjects
	tp   link.Link
}

// NewObserver loads the exec program and attaches it to the
// sched_process_exec tracepoint, mounting tracefs if needed.
func NewObserver(log *slog.Logger) (*Observer, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	if err := ensureTracefs(); err != nil {
		return nil, err
	}
	o := &Observer{log: log}
	if err := bpf.LoadExecObjects(&o.objs, nil); err != nil {
		return nil, fmt.Errorf("load exec program: %w", err)
	}
	tp, err := link.Tracepoint("sched", "sched_process_exec", o.objs.PalisadeExec, nil)
	if err != nil {
		o.objs.Close()
		return nil, fmt.Errorf("attach sched_process_exec: %w", err)
	}
	o.tp = tp
	return o, nil
}

func ensureTracefs() error {
	for _, p := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("mount tracefs on /sys/kernel/tracing: %w", err)
	}
	return nil
}

// Close detaches the program and frees its maps.
func (o *Observer) Close() error {
	return errors.Join(o.tp.Close(), o.objs.Close())
}

// Lost returns how many events the kernel could not queue.
func (o *Observer) Lost() (uint64, error) {
	var n uint64
	if err := o.objs.ExecLost.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read lost exec events: %w", err)
	}
	return n, nil
}

// Run calls fn for every exec until ctx is done.
func (o *Observer) Run(ctx context.Context, fn func(ExecEvent)) error {
	r, err := ringbuf.NewReader(o.objs.ExecEvents)
	if err != nil {
		return fmt.Errorf("open exec ring buffer: %w", err)
	}
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-stop:
		}
		r.Close()
	}()
	defer func() {
		close(stop)
		<-stopped
	}()
	var rec ringbuf.Record
	for {
		if err := r.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("read exec event: %w", err)
		}
		ev, err := DecodeExecEvent(rec.RawSample)
		if err != nil {
			o.log.Warn("bad exec event", "err", err)
			continue
		}
		if p, err := os.Readlink("/proc/" + strconv.Itoa(int(ev.Pid)) + "/exe"); err == nil {
			ev.Path = p
		}
		fn(ev)
	}
}

// DecodeExecEvent decodes one raw ring buffer record.
func DecodeExecEvent(raw []byte) (ExecEvent, error) {
	var e bpf.ExecExecEvent
	if _, err := binary.Decode(raw, binary.LittleEndian, &e); err != nil {
		return ExecEvent{}, fmt.Errorf("decode exec event of %d bytes: %w", len(raw), err)
	}
	return ExecEvent{
		KernelTimeNs: e.TsNs,
		Pid:          e.Pid,
		UID:          e.Uid,
		CgroupID:     e.CgroupId,
		Comm:         cstring(e.Comm[:]),
		Filename:     cstring(e.Filename[:]),
	}, nil
}

// Watch runs the observer and applies every exec to policy: in Discover
// the executable joins its group's profile (Learned), in Monitor and
// Protect one outside the profile is a Violation (in Protect the Guard
// denies what it marks before it runs, so what arrives here ran outside its
// marks). report, if not nil, gets every Learned and Violation exec, with
// Path set to the path decided on (see DecisionPath).
func (o *Observer) Watch(ctx context.Context, policy *Policy, report func(ExecEvent, Verdict, Mode)) error {
	return o.Run(ctx, func(e ExecEvent) {
		if !policy.Has(e.CgroupID) {
			return
		}
		e.Path = DecisionPath(e)
		v, mode, _ := policy.Check(e.CgroupID, e.Path)
		if report != nil && (v == Learned || v == Violation) {
			report(e, v, mode)
		}
	})
}

// DecisionPath is the path an exec is decided on, the one the Guard sees
// first: the executable (/proc/PID/exe), except for a script, whose
// executable is its interpreter, where it is the script named to execve.
func DecisionPath(e ExecEvent) string {
	if e.Path == "" {
		return e.Filename
	}
	if filepath.IsAbs(e.Filename) && filepath.Base(e.Filename) != filepath.Base(e.Path) {
		if real, err := filepath.EvalSymlinks(e.Filename); err == nil && real != e.Path {
			return real
		}
	}
	return e.Path
}
