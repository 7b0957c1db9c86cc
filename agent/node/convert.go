package node

import (
	"fmt"

	"github.com/palisade-sec/palisade/agent/datapath"
	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
)

// ToDatapath converts a node's compiled table into the datapath's table.
//
// A verdict that names an application the kernel classifies (every one
// agent/appdetect names: HTTP, HTTP/2, gRPC, TLS, SSH, Redis, DNS,
// PostgreSQL, MySQL, MongoDB, Kafka; datapath.ParseApp) keeps it: the
// kernel checks the flow's first payload. An application the kernel does
// not know is decided at L4: such a verdict is enforced as its L4 entry
// when it allows and no entry without an application has the same key
// (the application is still detected and reported); one that denies one
// application only is left to reporting, since denying the whole port
// would block the other applications on it.
func ToDatapath(t *compile.Table) (datapath.Table, error) {
	out := datapath.Table{Modes: map[datapath.Identity]datapath.Mode{}}
	for _, e := range t.Endpoints {
		out.Endpoints = append(out.Endpoints, datapath.EndpointEntry{Prefix: e.Prefix, Identity: datapath.Identity(e.ID)})
	}
	plain := map[compile.VerdictKey]bool{}
	for _, v := range t.Verdicts {
		if v.App == "" {
			plain[v.Key()] = true
		}
	}
	seen := map[compile.VerdictKey]bool{}
	for _, v := range t.Verdicts {
		var a datapath.Action
		switch v.Action {
		case policy.ActionAllow:
			a = datapath.ActionAllow
		case policy.ActionDeny:
			a = datapath.ActionDeny
		default:
			return datapath.Table{}, fmt.Errorf("node: verdict %d->%d: unknown action %q", v.SrcID, v.DstID, v.Action)
		}
		if app, ok := datapath.ParseApp(v.App); ok {
			out.Verdicts = append(out.Verdicts, datapath.VerdictEntry{SrcID: datapath.Identity(v.SrcID), DstID: datapath.Identity(v.DstID),
				Proto: v.Proto, PortLo: v.PortLo, PortHi: v.PortHi, App: app, Action: a, RuleID: v.RuleID})
			continue
		}
		if v.App != "" {
			k := v.Key()
			k.App = ""
			if a != datapath.ActionAllow || plain[k] || seen[k] {
				continue
			}
			seen[k] = true
		}
		out.Verdicts = append(out.Verdicts, datapath.VerdictEntry{SrcID: datapath.Identity(v.SrcID), DstID: datapath.Identity(v.DstID),
			Proto: v.Proto, PortLo: v.PortLo, PortHi: v.PortHi, Action: a, RuleID: v.RuleID})
	}
	for _, p := range t.Profiles {
		m := datapath.ModeDiscover
		if p.NetworkMode != "" {
			pm, err := datapath.ParseMode(string(p.NetworkMode))
			if err != nil {
				return datapath.Table{}, fmt.Errorf("node: identity %d: %w", p.ID, err)
			}
			m = pm
		}
		out.Modes[datapath.Identity(p.ID)] = m
	}
	return out, nil
}
