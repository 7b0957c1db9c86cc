package agents

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/agentproto"
	"github.com/palisade-sec/palisade/shared/enroltoken"
)

func TestCheckToken(t *testing.T) {
	f := newFixture(t, nil)
	good, _ := agentTokens().Parse(f.tok)
	wrong := good
	wrong.Secret = strings.Repeat("0", 64)
	unknown := good
	unknown.ID = strings.Repeat("0", 16)
	tests := []struct {
		name string
		tok  string
		now  time.Time
		want error
	}{
		{"good", f.tok, time.Now(), nil},
		{"wrong secret", wrong.String(), time.Now(), enroltoken.ErrSecret},
		{"unknown", unknown.String(), time.Now(), enroltoken.ErrUnknown},
		{"expired", f.tok, time.Now().Add(2 * time.Hour), enroltoken.ErrExpired},
		{"malformed", "pat1.x", time.Now(), enroltoken.ErrMalformed},
	}
	for _, tc := range tests {
		if err := f.m.checkToken(tc.tok, tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, nil)
	addr := f.m.cfg.Addr
	good, _ := agentTokens().Parse(f.tok)
	bad := good
	bad.Secret = strings.Repeat("1", 64)
	_, msg := enroll(t, addr, bad.String(), "n1")
	if r, ok := msg.(*agentproto.Refuse); !ok || r.Code != agentproto.RefuseToken || !strings.Contains(r.Reason, "secret") {
		t.Errorf("enroll with a wrong secret: got %+v, want a token refusal naming the secret", msg)
	}
	anon := &testAgent{}
	if msg := anon.connect(t, addr, "n1"); msg.Type() != agentproto.TypeRefuse || msg.(*agentproto.Refuse).Code != agentproto.RefuseIdentity {
		t.Errorf("hello without a certificate: got %+v, want an identity refusal", msg)
	}
	a, msg := enroll(t, addr, f.tok, "n1")
	if msg.Type() != agentproto.TypeEnrolled {
		t.Fatalf("enroll: got %+v", msg)
	}
	if msg := a.connect(t, addr, "n2"); msg.Type() != agentproto.TypeRefuse || !strings.Contains(msg.(*agentproto.Refuse).Reason, `"n1"`) {
		t.Errorf("hello as another node: got %+v, want a refusal naming n1", msg)
	}
}

func TestSessionLearnsAndPushes(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxEvents = 3; c.MaxFlows = 3 })
	addr := f.m.cfg.Addr
	a, msg := enroll(t, addr, f.tok, "n1")
	if msg.Type() != agentproto.TypeEnrolled {
		t.Fatalf("enroll: got %+v", msg)
	}
	if msg := a.connect(t, addr, "n1"); msg.Type() != agentproto.TypeTable {
		t.Fatalf("hello: got %+v, want Table", msg)
	}
	orders, payments := netip.MustParseAddr("10.231.1.2"), netip.MustParseAddr("10.231.2.2")
	if err := a.enc.Encode(&agentproto.Workloads{Workloads: []agentproto.Workload{
		{ID: "shop/orders", Name: "orders", Namespace: "shop", Service: "orders", Addresses: []netip.Addr{orders}},
		{ID: "shop/payments", Name: "payments", Namespace: "shop", Service: "payments", Addresses: []netip.Addr{payments}},
	}}); err != nil {
		t.Fatal(err)
	}
	a.until(t, "workloads in the table", func(tb *compile.Table) bool {
		_, ok1 := tb.IdentityOf("shop/orders")
		_, ok2 := tb.IdentityOf("shop/payments")
		return ok1 && ok2
	})

	now := time.Now().UTC()
	if err := a.enc.Encode(&agentproto.Flows{Flows: []agentproto.Flow{
		{Client: orders, Server: payments, Proto: 6, Port: 8080, App: "http", Mode: "discover", Flows: 2, FirstSeen: now, LastSeen: now},
	}}); err != nil {
		t.Fatal(err)
	}
	// The learned rule reaches the agent as a diff allowing orders -> payments.
	a.until(t, "learned verdict", func(tb *compile.Table) bool {
		src, _ := tb.IdentityOf("shop/orders")
		dst, _ := tb.IdentityOf("shop/payments")
		v, ok := tb.Lookup(src, dst, 6, 8080, "HTTP")
		return ok && v.Action == policy.ActionAllow
	})
	view, err := f.ps.View()
	if err != nil {
		t.Fatal(err)
	}
	rules := view.Rules(policystoreLearned())
	if len(rules) != 1 || rules[0].From != "learned.orders.shop" || rules[0].To != "learned.payments.shop" || rules[0].Ports != "tcp/8080" {
		t.Fatalf("learned rules: got %+v, want one learned.orders.shop -> learned.payments.shop tcp/8080", rules)
	}
	flows := f.m.Flows("learned.payments.shop")
	if len(flows) != 1 || flows[0].Client != "shop/orders" || flows[0].Server != "shop/payments" || flows[0].App != "http" || flows[0].Flows != 2 {
		t.Fatalf("flows of learned.payments.shop: got %+v", flows)
	}
	if got := f.m.Flows("no-such-group"); len(got) != 0 {
		t.Errorf("flows of an unknown group: got %d, want 0", len(got))
	}

	// Events and flows stay bounded.
	var evs []agentproto.Event
	for i := range 5 {
		evs = append(evs, agentproto.Event{Time: now.Add(time.Duration(i) * time.Millisecond), Kind: agentproto.EventViolation,
			Action: "deny", Mode: "protect", Client: payments, Server: orders, Proto: 6, Port: uint16(9000 + i)})
	}
	if err := a.enc.Encode(&agentproto.Events{Events: evs}); err != nil {
		t.Fatal(err)
	}
	var more []agentproto.Flow
	for i := range 4 {
		more = append(more, agentproto.Flow{Client: payments, Server: orders, Proto: 6, Port: uint16(7000 + i), Mode: "protect",
			Flows: 1, Violations: 1, FirstSeen: now.Add(time.Duration(i) * time.Second), LastSeen: now.Add(time.Duration(i) * time.Second)})
	}
	if err := a.enc.Encode(&agentproto.Flows{Flows: more}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "events stored", func() error {
		got := f.m.Events()
		if len(got) != 3 {
			return fmt.Errorf("%d events, want 3", len(got))
		}
		if got[0].Port != 9004 || got[2].Port != 9002 || got[0].Client != "shop/payments" || got[0].Server != "shop/orders" {
			return fmt.Errorf("events: got %+v, want ports 9004..9002 newest first with workload names", got)
		}
		return nil
	})
	waitFor(t, 10*time.Second, "flows bounded", func() error {
		got := f.m.Flows("")
		if len(got) != 3 {
			return fmt.Errorf("%d flows, want 3", len(got))
		}
		if got[0].Port != 7003 {
			return fmt.Errorf("newest flow on port %d, want 7003", got[0].Port)
		}
		return nil
	})
}

func policystoreLearned() policystore.Filter { return policystore.Filter{Learned: true} }
