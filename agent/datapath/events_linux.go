//go:build linux

package datapath

import (
	"context"
	"errors"
	"fmt"

	"github.com/cilium/ebpf/ringbuf"
)

// ReadEvents calls fn for every flow event until ctx is done. fn runs on the
// calling goroutine. Cancel ctx before Close.
func (d *Datapath) ReadEvents(ctx context.Context, fn func(FlowEvent)) error {
	r, err := ringbuf.NewReader(d.objs.FlowEvents)
	if err != nil {
		return fmt.Errorf("open flow event ring buffer: %w", err)
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-done:
		}
		r.Close()
	}()
	defer func() {
		close(done)
		<-stopped
	}()
	var rec ringbuf.Record
	for {
		if err := r.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("read flow event: %w", err)
		}
		ev, err := DecodeFlowEvent(rec.RawSample)
		if err != nil {
			d.log.Warn("bad flow event", "err", err)
			continue
		}
		fn(ev)
	}
}
