package fedserver

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/palisade-sec/palisade/shared/fedproto"
)

// session is one remote's stream of revisions.
type session struct {
	name   string
	conn   *quic.Conn
	cancel context.CancelFunc

	mu            sync.Mutex
	dismissReason fedproto.DismissReason
}

func (ss *session) dismiss(reason fedproto.DismissReason) {
	ss.mu.Lock()
	if ss.dismissReason == "" {
		ss.dismissReason = reason
	}
	ss.mu.Unlock()
	ss.cancel()
}

func (ss *session) dismissed() fedproto.DismissReason {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.dismissReason
}

// serveSession authenticates a Hello and streams revisions until the
// stream ends, the remote is dismissed or the server stops.
func (s *Server) serveSession(ctx context.Context, conn *quic.Conn, str *quic.Stream, enc *fedproto.Encoder, dec *fedproto.Decoder, id peer, hello *fedproto.Hello) {
	member, ok := s.cfg.Members.Get(id.name)
	switch {
	case !ok:
		s.refuseStream(str, enc, fedproto.RefuseNotMember, fmt.Sprintf("cluster %s is not a member of this federation", id.name))
		return
	case member.Kicked:
		s.refuseStream(str, enc, fedproto.RefuseKicked, fmt.Sprintf("cluster %s was kicked from the federation", id.name))
		return
	case member.CertFingerprint != id.fingerprint:
		s.refuseStream(str, enc, fedproto.RefuseUnauthorized, fmt.Sprintf("certificate of %s is not the one issued at its join", id.name))
		return
	case hello.Cluster != id.name:
		s.refuseStream(str, enc, fedproto.RefuseBadRequest, fmt.Sprintf("hello names cluster %q, certificate names %q", hello.Cluster, id.name))
		return
	}
	if err := fedproto.Compatible(s.version, hello.Version); err != nil {
		s.log.Warn("remote refused", logRemote, id.name, logErr, err)
		s.refuseStream(str, enc, fedproto.RefuseVersion, err.Error())
		s.mu.Lock()
		rs := s.remoteLocked(id.name, member)
		s.mu.Unlock()
		rs.mu.Lock()
		rs.st.LinkError, rs.st.Version = err.Error(), hello.Version
		rs.mu.Unlock()
		return
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ss := &session{name: id.name, conn: conn, cancel: cancel}
	now := s.cfg.Now()
	s.mu.Lock()
	if old := s.sessions[id.name]; old != nil {
		old.cancel() // the newest connection of a remote wins
	}
	s.sessions[id.name] = ss
	rs := s.remoteLocked(id.name, member)
	rs.mu.Lock()
	st := &rs.st
	st.Labels, st.Connected, st.Addr, st.Version = member.Labels, true, id.addr, hello.Version
	st.ConnectedSince, st.LastContact, st.HeldAt = now, now, 0
	st.Sessions++
	if hello.Applied > st.AckedRevision {
		st.AckedRevision = hello.Applied
	}
	rs.mu.Unlock()
	s.mu.Unlock()
	s.log.Info("remote connected", logRemote, id.name, logAddr, id.addr, logRevision, hello.Applied, "version", hello.Version.String())

	var wg sync.WaitGroup
	endErr := make(chan error, 3)
	defer func() {
		cancel()
		str.CancelRead(quic.StreamErrorCode(codeOK))
		wg.Wait()
		var reason string
		select {
		case err := <-endErr:
			reason = err.Error()
		default:
		}
		s.mu.Lock()
		if s.sessions[id.name] == ss {
			delete(s.sessions, id.name)
			rs.mu.Lock()
			st.Connected, st.HeldAt = false, 0
			if reason != "" {
				st.LinkError = reason
			}
			rs.mu.Unlock()
		}
		s.mu.Unlock()
		s.log.Info("remote disconnected", logRemote, id.name, logErr, reason)
	}()

	// A remote that stops reading blocks our writes on flow control; once
	// the session ends, give writes (a Dismiss) a bounded time.
	unblock := context.AfterFunc(ctx, func() { _ = str.SetWriteDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout)) })
	defer unblock()

	if err := enc.Encode(&fedproto.Welcome{Version: s.version, Primary: s.cfg.Primary}); err != nil {
		endErr <- err
		return
	}
	wg.Go(func() {
		if err := s.readAcks(id.name, dec); err != nil {
			endErr <- err
		}
		cancel()
	})
	wg.Go(func() { s.ping(ctx, enc, ss) })

	err := s.stream(ctx, id.name, enc, hello.Applied)
	if reason := ss.dismissed(); reason != "" {
		_ = enc.Encode(&fedproto.Dismiss{Reason: reason})
		_ = str.Close()
		s.log.Info("remote dismissed", logRemote, id.name, "reason", string(reason))
		wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.HandshakeTimeout)
		select { // give the remote a moment to read Dismiss and hang up
		case <-conn.Context().Done():
		case <-wctx.Done():
		}
		wcancel()
		_ = conn.CloseWithError(codeDismiss, string(reason))
		endErr <- fmt.Errorf("dismissed: %s", reason)
		return
	}
	if err != nil && ctx.Err() == nil {
		endErr <- err
	}
	_ = str.Close()
}

// remoteLocked returns the status record of a remote, creating it; s.mu
// must be held.
func (s *Server) remoteLocked(name string, m Member) *remoteState {
	rs := s.status[name]
	if rs == nil {
		rs = &remoteState{st: RemoteStatus{Name: name, Labels: m.Labels, Healthy: true}}
		s.status[name] = rs
	}
	return rs
}

// readAcks consumes what the remote sends on its stream.
func (s *Server) readAcks(name string, dec *fedproto.Decoder) error {
	for {
		m, err := dec.ReadMessage()
		if err != nil {
			return fmt.Errorf("read from %s: %s", name, readErr(err))
		}
		switch m := m.(type) {
		case *fedproto.Ack:
			s.noteAck(name, m)
		case *fedproto.Pong:
			s.updateStatus(name, func(st *RemoteStatus) { st.LastContact = s.cfg.Now() })
		default:
			return fmt.Errorf("remote %s sent %s on its stream", name, m.Type())
		}
	}
}

// ping pings the remote and checks that it is still a member (a kick or a
// leave recorded by another primary replica ends the session here too).
func (s *Server) ping(ctx context.Context, enc *fedproto.Encoder, ss *session) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	var n uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if m, ok := s.cfg.Members.Get(ss.name); !ok {
				ss.dismiss(fedproto.DismissLeft)
				return
			} else if m.Kicked {
				ss.dismiss(fedproto.DismissKicked)
				return
			}
			n++
			if err := enc.Encode(&fedproto.Ping{Nonce: n}); err != nil {
				return
			}
		}
	}
}

// stream sends the remote everything after applied, then every new
// revision as it commits.
func (s *Server) stream(ctx context.Context, name string, enc *fedproto.Encoder, applied uint64) error {
	// A remote ahead of the log (the primary's store was restored from an
	// older backup) holds revisions the log never had: resync it.
	if rl, ok := s.cfg.Log.(interface{ Revision() uint64 }); ok && applied > rl.Revision() {
		w, sent, err := s.resyncSnapshot(ctx, name, enc)
		if err != nil {
			return err
		}
		w.Close()
		applied = sent
	}
	w, err := s.cfg.Log.Watch(ctx, applied)
	if err != nil && !s.cfg.IsCompacted(err) {
		return fmt.Errorf("watch after %d: %w", applied, err)
	}
	if err != nil {
		if w, applied, err = s.resyncSnapshot(ctx, name, enc); err != nil {
			return err
		}
	}
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	sent := applied
	for {
		d, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if s.cfg.IsCompacted(err) { // fell behind while streaming
				w.Close()
				if w, sent, err = s.resyncSnapshot(ctx, name, enc); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("watch: %w", err)
		}
		if d.Revision <= sent {
			continue
		}
		if err := s.waitGate(ctx, name, d.Revision); err != nil {
			return nil
		}
		if s.resync(name, sent, d.Revision) {
			w.Close()
			if w, sent, err = s.resyncSnapshot(ctx, name, enc); err != nil {
				return err
			}
			continue
		}
		var ops []fedproto.Op
		filtered := false
		if s.cfg.Target == nil {
			ops = d.Ops
		} else {
			// Labels may have changed: targeting reads the member afresh.
			member, ok := s.cfg.Members.Get(name)
			if !ok || member.Kicked {
				return fmt.Errorf("cluster %s is no longer a member", name)
			}
			ops, filtered = s.target(member, d.Ops)
		}
		var frame fedproto.Frame
		if filtered {
			frame, err = fedproto.Marshal(&fedproto.Delta{Revision: d.Revision, Ops: ops})
		} else {
			frame, err = s.frames.get(d)
		}
		if err != nil {
			return err
		}
		if err := enc.WriteFrame(frame); err != nil {
			return err
		}
		sent = d.Revision
		s.updateStatus(name, func(st *RemoteStatus) { st.SentRevision = sent; st.Deltas++ })
	}
}

// waitGate blocks while the rollout holds name below rev. rev has
// committed, so the stored rollout is read first: a rollout committed with
// rev gates it even before anything else installed it.
func (s *Server) waitGate(ctx context.Context, name string, rev uint64) error {
	held := false
	for {
		s.syncRollout()
		limit, limited, changed := s.gateFor(name)
		if !limited || rev <= limit {
			if held {
				s.updateStatus(name, func(st *RemoteStatus) { st.HeldAt = 0 })
			}
			return nil
		}
		held = true
		s.updateStatus(name, func(st *RemoteStatus) { st.HeldAt = limit })
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// resyncSnapshot sends the full keyspace and returns a watcher after it.
func (s *Server) resyncSnapshot(ctx context.Context, name string, enc *fedproto.Encoder) (Watcher, uint64, error) {
	rev, objs, err := s.cfg.Log.Snapshot(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	if err := s.waitGate(ctx, name, rev); err != nil {
		return nil, 0, err
	}
	member, ok := s.cfg.Members.Get(name)
	if !ok || member.Kicked {
		return nil, 0, fmt.Errorf("cluster %s is no longer a member", name)
	}
	s.updateStatus(name, func(st *RemoteStatus) { st.Snapshots++ })
	if err := s.sendSnapshot(enc, member, rev, objs); err != nil {
		return nil, 0, err
	}
	w, err := s.cfg.Log.Watch(ctx, rev)
	if err != nil {
		return nil, 0, fmt.Errorf("watch after snapshot %d: %w", rev, err)
	}
	s.updateStatus(name, func(st *RemoteStatus) { st.SentRevision = rev })
	return w, rev, nil
}

func (s *Server) sendSnapshot(enc *fedproto.Encoder, m Member, rev uint64, objs []fedproto.Object) error {
	chunk := fedproto.Snapshot{Revision: rev}
	size := 0
	for _, o := range objs {
		if s.cfg.Target != nil && !s.cfg.Target(m, o.Key, o.Value) {
			continue
		}
		// JSON of an object: base64 value (4/3) plus key and syntax.
		osize := len(o.Key) + (len(o.Value)+2)/3*4 + 32
		if size > 0 && size+osize > s.cfg.SnapshotChunk {
			if err := enc.Encode(&chunk); err != nil {
				return err
			}
			chunk = fedproto.Snapshot{Revision: rev, Seq: chunk.Seq + 1}
			size = 0
		}
		chunk.Objects = append(chunk.Objects, o)
		size += osize
	}
	chunk.Last = true
	return enc.Encode(&chunk)
}

// target filters a revision's ops for one remote: puts the remote should
// not have become deletes, so a retargeted object disappears there. It
// reports whether anything changed.
func (s *Server) target(m Member, ops []fedproto.Op) ([]fedproto.Op, bool) {
	if s.cfg.Target == nil {
		return ops, false
	}
	var out []fedproto.Op
	for i, op := range ops {
		if op.Kind != fedproto.OpPut || s.cfg.Target(m, op.Key, op.Value) {
			continue
		}
		if out == nil {
			out = append(make([]fedproto.Op, 0, len(ops)), ops...)
		}
		out[i] = fedproto.Op{Kind: fedproto.OpDelete, Key: op.Key}
	}
	if out == nil {
		return ops, false
	}
	return out, true
}

// frameCache holds the encodings of the latest unfiltered deltas, so a
// revision streamed to a thousand remotes is marshalled once. A revision
// always carries the same changes, so an entry never goes stale.
type frameCache struct {
	slots [16]atomic.Pointer[cachedFrame]
}

type cachedFrame struct {
	rev   uint64
	frame fedproto.Frame
}

func (c *frameCache) get(d fedproto.Delta) (fedproto.Frame, error) {
	slot := &c.slots[d.Revision%uint64(len(c.slots))]
	if cf := slot.Load(); cf != nil && cf.rev == d.Revision {
		return cf.frame, nil
	}
	f, err := fedproto.Marshal(&d)
	if err != nil {
		return fedproto.Frame{}, err
	}
	slot.Store(&cachedFrame{rev: d.Revision, frame: f})
	return f, nil
}
