package admission

import (
	"fmt"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/admit"
	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/shared/store"
)

// Store prefixes of AdmissionRule documents (JSON of the policy/code kind).
const (
	PrefixRules          = "policy/objects/" + code.KindAdmissionRule + "/"
	PrefixFederatedRules = "federated/objects/" + code.KindAdmissionRule + "/"
)

// Rules is a compiled rule set with what the webhook needs besides the
// engine.
type Rules struct {
	Engine *admit.Engine
	// Settings are the effective admission settings.
	Settings policy.AdmissionSettings
	// Count is the number of rules in the engine.
	Count int
	// Actions maps each rule to its action, to tell a monitor-mode
	// would-be denial from an allow.
	Actions map[string]policy.Action
	// Problems name the documents and rules left out because they are
	// invalid.
	Problems []string
	// Revision is the store revision the rules were read at.
	Revision uint64
}

// CompileRules builds rules from AdmissionRule documents: federated ones
// first (their rules shadow local rules of the same name, and their mode and
// enabled setting win), then local ones. Invalid documents and rules are
// left out and reported in Problems. defaultMode applies when no document
// sets a mode.
func CompileRules(federated, local []store.KV, defaultMode policy.Mode) *Rules {
	out := &Rules{Actions: map[string]policy.Action{}}
	settings := policy.AdmissionSettings{Enabled: true}
	var (
		rules      []policy.AdmissionRule
		seen       = map[string]bool{}
		setEnabled bool
	)
	for _, layer := range []struct {
		kvs []store.KV
		src policy.Source
	}{{federated, policy.SourceFederated}, {local, policy.SourceCode}} {
		for _, kv := range layer.kvs {
			set, err := decodeRules(kv.Value, layer.src)
			if err != nil {
				out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", kv.Key, err))
				continue
			}
			if settings.Mode == "" && set.Admission.Mode != "" {
				settings.Mode = set.Admission.Mode
			}
			if !setEnabled {
				settings.Enabled, setEnabled = set.Admission.Enabled, true
			}
			for _, r := range set.AdmissionRules {
				if seen[r.Name] {
					continue
				}
				if _, err := admit.New([]policy.AdmissionRule{r}, settings); err != nil {
					out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", kv.Key, err))
					continue
				}
				seen[r.Name] = true
				rules = append(rules, r)
			}
		}
	}
	if settings.Mode == "" {
		settings.Mode = defaultMode
	}
	eng, err := admit.New(rules, settings)
	if err != nil {
		// Each rule compiled on its own above; a failure here is a bug in
		// the engine, and nothing is safer than no rules.
		out.Problems = append(out.Problems, err.Error())
		rules = nil
		eng, _ = admit.New(nil, settings)
	}
	for _, r := range rules {
		out.Actions[r.Name] = r.Action
	}
	out.Engine, out.Settings, out.Count = eng, settings, len(rules)
	return out
}

// decodeRules reads one stored document (or, for dry runs, a YAML stream)
// of AdmissionRule kind.
func decodeRules(data []byte, src policy.Source) (*policy.Set, error) {
	objs, err := code.Decode(data)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.GetKind() != code.KindAdmissionRule {
			return nil, fmt.Errorf("kind %s is not %s", o.GetKind(), code.KindAdmissionRule)
		}
	}
	set, err := code.ToSet(objs, src)
	if err != nil {
		return nil, err
	}
	return set, nil
}

// LoadRules compiles the AdmissionRule documents of a YAML stream (other
// kinds are ignored), for dry runs. Unlike the webhook, it fails on the
// first invalid rule.
func LoadRules(yamlDocs []byte, defaultMode policy.Mode) (*Rules, error) {
	objs, err := code.Decode(yamlDocs)
	if err != nil {
		return nil, err
	}
	objs = slices.DeleteFunc(objs, func(o code.Object) bool { return o.GetKind() != code.KindAdmissionRule })
	if len(objs) == 0 {
		return nil, fmt.Errorf("admission: no %s document in the rules", code.KindAdmissionRule)
	}
	set, err := code.ToSet(objs, policy.SourceCode)
	if err != nil {
		return nil, err
	}
	if set.Admission.Mode == "" {
		set.Admission.Mode = defaultMode
	}
	eng, err := admit.New(set.AdmissionRules, set.Admission)
	if err != nil {
		return nil, err
	}
	r := &Rules{Engine: eng, Settings: set.Admission, Count: len(set.AdmissionRules), Actions: map[string]policy.Action{}}
	for _, ar := range set.AdmissionRules {
		r.Actions[ar.Name] = ar.Action
	}
	return r, nil
}

// wouldDeny reports whether an allowed decision is a denial monitor mode
// let through.
func (r *Rules) wouldDeny(d *admit.Decision) bool {
	return d.Allowed && d.Rule != "" && d.Mode == policy.ModeMonitor && r.Actions[d.Rule] == policy.ActionDeny
}

func trimKey(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }
