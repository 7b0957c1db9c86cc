package policystore

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/shared/store"
)

// manyDocs returns n ClusterSecurityRules, each a group with two rules.
func manyDocs(prefix string, n int) []code.Object {
	var out []code.Object
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		out = append(out, &code.SecurityRule{
			TypeMeta: code.TypeMeta{APIVersion: code.APIVersion, Kind: code.KindClusterSecurityRule},
			Metadata: code.ObjectMeta{Name: name},
			Spec: code.SecurityRuleSpec{
				Target: code.Target{Selector: code.Selector{Name: name, Criteria: []code.Criterion{{Key: "app", Op: "=", Value: name}}}},
				Egress: []code.NetworkPolicy{
					{Name: name + "-dns", Selector: code.Selector{Name: "external"}, Ports: "udp/53", Action: "allow"},
					{Name: name + "-smtp", Selector: code.Selector{Name: "external"}, Ports: "tcp/25", Action: "deny"},
				},
			},
		})
	}
	return out
}

// BenchmarkView reads and composes 500 federated and 500 local documents
// (1,000 groups, 2,000 rules), as every listing request does.
func BenchmarkView(b *testing.B) {
	kv := openKVB(b)
	var ops []store.Op
	for _, o := range manyDocs("fed", 500) {
		k, _ := DocKey(o)
		v, _ := json.Marshal(o)
		ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixFederated + k, Value: v})
	}
	if _, err := kv.Txn(context.Background(), store.Txn{Ops: ops}); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.KV = kv
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Apply(context.Background(), manyDocs("local", 500), ApplyOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		v, err := s.View()
		if err != nil || len(v.Set.Groups) != 1000 || len(v.Problems) != 0 {
			b.Fatalf("view: %d groups, problems %v, %v", len(v.Set.Groups), v.Problems, err)
		}
	}
}

// BenchmarkBuildView builds the same view from scratch, as the first read
// after a policy change does.
func BenchmarkBuildView(b *testing.B) {
	kv := openKVB(b)
	var ops []store.Op
	for _, o := range manyDocs("fed", 500) {
		k, _ := DocKey(o)
		v, _ := json.Marshal(o)
		ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixFederated + k, Value: v})
	}
	for _, o := range manyDocs("local", 500) {
		k, _ := DocKey(o)
		v, _ := json.Marshal(o)
		ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixObjects + k, Value: v})
	}
	if _, err := kv.Txn(context.Background(), store.Txn{Ops: ops}); err != nil {
		b.Fatal(err)
	}
	fed, _ := kv.List(PrefixFederated)
	pol, rev := kv.List(prefixPolicy)
	for b.Loop() {
		if v := buildView(fed, pol, rev); len(v.Set.Groups) != 1000 || len(v.Problems) != 0 {
			b.Fatalf("view: %d groups, problems %v", len(v.Set.Groups), v.Problems)
		}
	}
}
