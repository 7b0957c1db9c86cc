package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft port carries two protocols, told apart by the first byte a
// dialer sends: Raft's own RPCs, and writes forwarded from followers.
const (
	muxRaft    byte = 'R'
	muxForward byte = 'F'
)

// maxForwardCommand bounds a forwarded command (a Txn is at most
// MaxTxnSize plus its encoding).
const maxForwardCommand = 2*MaxTxnSize + 4096

// muxLayer is a raft.StreamLayer over TCP that hands Raft connections to
// the transport and forwarded writes to a handler.
type muxLayer struct {
	ln        net.Listener
	advertise net.Addr
	raftConns chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	forward func(ctx context.Context, cmd []byte) forwardResponse
}

func listenMux(bind, advertise string) (*muxLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on raft address %s: %w", bind, err)
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("resolve raft advertise address %s: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft advertise address %s must name a routable IP (set an advertise address when binding 0.0.0.0)", advertise)
	}
	if adv.Port == 0 {
		adv.Port = ln.Addr().(*net.TCPAddr).Port
	}
	m := &muxLayer{ln: ln, advertise: adv, raftConns: make(chan net.Conn), closed: make(chan struct{})}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

func (m *muxLayer) serveForward(h func(ctx context.Context, cmd []byte) forwardResponse) {
	m.mu.Lock()
	m.forward = h
	m.mu.Unlock()
}

func (m *muxLayer) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.wg.Add(1)
		go m.route(c)
	}
}

func (m *muxLayer) route(c net.Conn) {
	defer m.wg.Done()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch b[0] {
	case muxRaft:
		select {
		case m.raftConns <- c:
		case <-m.closed:
			c.Close()
		}
	case muxForward:
		m.handleForward(c)
	default:
		c.Close()
	}
}

// Accept implements net.Listener for the Raft transport.
func (m *muxLayer) Accept() (net.Conn, error) {
	select {
	case c := <-m.raftConns:
		return c, nil
	case <-m.closed:
		return nil, errors.New("store: raft listener closed")
	}
}

// Close stops accepting; it is safe to call more than once.
func (m *muxLayer) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.closed)
		err = m.ln.Close()
		m.wg.Wait()
	})
	return err
}

// Addr is the advertised address peers dial.
func (m *muxLayer) Addr() net.Addr { return m.advertise }

// Dial implements raft.StreamLayer.
func (m *muxLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{muxRaft}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// forwardResponse is the answer to a forwarded write.
type forwardResponse struct {
	Revision uint64 `json:"rev"`
	// Code is "" on success, "conflict" for a failed condition (Key and
	// Message set), "not_leader" when the receiver does not lead, or
	// "error" for anything else.
	Code    string `json:"code,omitempty"`
	Key     string `json:"key,omitempty"`
	Message string `json:"msg,omitempty"`
}

func (m *muxLayer) handleForward(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	n, err := binary.ReadUvarint(br)
	if err != nil || n == 0 || n > maxForwardCommand {
		return
	}
	cmd := make([]byte, n)
	if _, err := io.ReadFull(br, cmd); err != nil {
		return
	}
	m.mu.Lock()
	h := m.forward
	m.mu.Unlock()
	resp := forwardResponse{Code: "not_leader", Message: "forwarding not ready"}
	if h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		resp = h(ctx, cmd)
		cancel()
	}
	json.NewEncoder(c).Encode(resp)
}

// serveForward applies a command forwarded by a follower.
func (s *Store) serveForward(ctx context.Context, cmd []byte) forwardResponse {
	if len(cmd) == 0 || CommandType(cmd[0]) != CommandTxn {
		return forwardResponse{Code: "error", Message: "unknown command"}
	}
	// Re-validate: the FSM must never see a command it would panic on.
	var txn Txn
	if err := json.Unmarshal(cmd[1:], &txn); err != nil {
		return forwardResponse{Code: "error", Message: "undecodable command: " + err.Error()}
	}
	if err := txn.Validate(); err != nil {
		return forwardResponse{Code: "error", Message: err.Error()}
	}
	if !s.IsLeader() {
		return forwardResponse{Code: "not_leader"}
	}
	res, err := s.applyLocal(ctx, cmd)
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return forwardResponse{Code: "not_leader", Message: err.Error()}
		}
		return forwardResponse{Code: "error", Message: err.Error()}
	}
	out := forwardResponse{Revision: res.Revision}
	var ce *ConflictError
	if errors.As(res.Err, &ce) {
		out.Code, out.Key, out.Message = "conflict", ce.Key, ce.Reason
	} else if res.Err != nil {
		out.Code, out.Message = "error", res.Err.Error()
	}
	return out
}

// errRemote is an error reported by the leader that is not worth retrying.
type errRemote struct{ msg string }

func (e *errRemote) Error() string { return "store: leader refused write: " + e.msg }

// tcpForwarder forwards commands to the leader's Raft port.
type tcpForwarder struct{}

func (tcpForwarder) forward(ctx context.Context, addr raft.ServerAddress, cmd []byte) (applyResult, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return applyResult{}, fmt.Errorf("dial leader %s: %w", addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	buf := make([]byte, 1, 1+binary.MaxVarintLen64+len(cmd))
	buf[0] = muxForward
	buf = binary.AppendUvarint(buf, uint64(len(cmd)))
	buf = append(buf, cmd...)
	if _, err := c.Write(buf); err != nil {
		return applyResult{}, fmt.Errorf("send to leader %s: %w", addr, err)
	}
	var resp forwardResponse
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return applyResult{}, fmt.Errorf("read leader %s response: %w", addr, err)
	}
	return resp.result(addr)
}

// result turns a leader's answer into the write's result, or an error worth
// retrying (the receiver no longer leads).
func (r forwardResponse) result(addr raft.ServerAddress) (applyResult, error) {
	switch r.Code {
	case "":
		return applyResult{Revision: r.Revision}, nil
	case "conflict":
		return applyResult{Revision: r.Revision, Err: &ConflictError{Key: r.Key, Reason: r.Message}}, nil
	case "not_leader":
		return applyResult{}, fmt.Errorf("%s: %w", addr, raft.ErrNotLeader)
	default:
		// Not retried: the leader decided. Reported as the write's result.
		return applyResult{Err: &errRemote{msg: r.Message}}, nil
	}
}
