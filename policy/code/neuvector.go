package code

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// NeuVectorAPIVersion is the apiVersion of NeuVector's CRD exports.
const NeuVectorAPIVersion = "neuvector.com/v1"

// Skipped is something a NeuVector document holds that the import could
// not carry over.
type Skipped struct {
	// Document names the document ("NvSecurityRule demo/nv.web.demo").
	Document string `json:"document"`
	// Field is the path of what was left out ("spec.dlp").
	Field string `json:"field"`
	// Reason says why.
	Reason string `json:"reason"`
}

func (s Skipped) String() string {
	return fmt.Sprintf("%s: %s: %s", s.Document, s.Field, s.Reason)
}

type nvSelector struct {
	Name     string        `json:"name"`
	Comment  string        `json:"comment"`
	Criteria []nvCriterion `json:"criteria"`
}

type nvCriterion struct {
	Key   string `json:"key"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

type nvRule struct {
	Name         string     `json:"name"`
	Selector     nvSelector `json:"selector"`
	Ports        string     `json:"ports"`
	Applications []string   `json:"applications"`
	Action       string     `json:"action"`
	Priority     int        `json:"priority"`
	Comment      string     `json:"comment"`
	Disabled     bool       `json:"disabled"`
}

type nvSensors struct {
	Settings []json.RawMessage `json:"settings"`
	Status   bool              `json:"status"`
}

type nvSecuritySpec struct {
	Target struct {
		PolicyMode *string    `json:"policymode"`
		Selector   nvSelector `json:"selector"`
	} `json:"target"`
	Ingress []nvRule `json:"ingress"`
	Egress  []nvRule `json:"egress"`
	Process []struct {
		Name        string `json:"name"`
		Path        string `json:"path"`
		Action      string `json:"action"`
		AllowUpdate bool   `json:"allow_update"`
	} `json:"process"`
	ProcessProfile *struct {
		Baseline string `json:"baseline"`
	} `json:"process_profile"`
	File []struct {
		Filter    string   `json:"filter"`
		Recursive bool     `json:"recursive"`
		Behavior  string   `json:"behavior"`
		App       []string `json:"app"`
	} `json:"file"`
	DLP *nvSensors `json:"dlp"`
	WAF *nvSensors `json:"waf"`
}

var nvSecurityFields = []string{"target", "ingress", "egress", "process", "process_profile", "file", "dlp", "waf"}

type nvAdmCriterion struct {
	Name        string           `json:"name"`
	Op          string           `json:"op"`
	Value       string           `json:"value"`
	Path        string           `json:"path"`
	SubCriteria []nvAdmCriterion `json:"sub_criteria"`
}

type nvAdmSpec struct {
	Config *struct {
		Enable     *bool  `json:"enable"`
		Mode       string `json:"mode"`
		ClientMode string `json:"client_mode"`
	} `json:"config"`
	Rules []struct {
		ID         int              `json:"id"`
		Action     string           `json:"action"`
		Comment    string           `json:"comment"`
		Disabled   bool             `json:"disabled"`
		Containers []string         `json:"containers"`
		Criteria   []nvAdmCriterion `json:"criteria"`
		RuleMode   string           `json:"rule_mode"`
	} `json:"rules"`
}

// importer collects converted documents and what was left out.
type importer struct {
	objs    []Object
	skipped []Skipped
}

func (im *importer) skip(doc, field, format string, args ...any) {
	im.skipped = append(im.skipped, Skipped{Document: doc, Field: field, Reason: fmt.Sprintf(format, args...)})
}

// ImportNeuVector converts NeuVector's exported CRD YAML (a stream of
// documents or a kind: List) into palisade.dev/v1 documents. What cannot be
// carried over is listed in skipped: a network or admission rule that
// cannot be converted whole is left out entirely rather than widened or
// narrowed. The error is for input that is not NeuVector YAML at all.
func ImportNeuVector(data []byte) (objs []Object, skipped []Skipped, err error) {
	docs, err := splitStream(data)
	if err != nil {
		return nil, nil, err
	}
	im := &importer{}
	for _, d := range docs {
		var head struct {
			Metadata ObjectMeta      `json:"metadata"`
			Spec     json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(d.json, &head); err != nil {
			return nil, nil, fmt.Errorf("%w: document %d: %s", ErrDecode, d.index, shortJSONError(err))
		}
		doc := d.meta.Kind + " " + head.Metadata.Name
		if head.Metadata.Namespace != "" {
			doc = d.meta.Kind + " " + head.Metadata.Namespace + "/" + head.Metadata.Name
		}
		if d.meta.APIVersion != NeuVectorAPIVersion {
			return nil, nil, fmt.Errorf("%w: document %d (%s): apiVersion %q is not %s", ErrDecode, d.index, doc, d.meta.APIVersion, NeuVectorAPIVersion)
		}
		if len(head.Spec) == 0 {
			head.Spec = []byte("{}")
		}
		switch d.meta.Kind {
		case "NvSecurityRule", "NvClusterSecurityRule":
			var spec nvSecuritySpec
			if err := json.Unmarshal(head.Spec, &spec); err != nil {
				return nil, nil, fmt.Errorf("%w: %s: spec: %s", ErrDecode, doc, shortJSONError(err))
			}
			im.unknownFields(doc, head.Spec, nvSecurityFields)
			im.securityRule(doc, d.meta.Kind == "NvSecurityRule", head.Metadata, &spec)
		case "NvGroupDefinition":
			var spec struct {
				Selector nvSelector `json:"selector"`
			}
			if err := json.Unmarshal(head.Spec, &spec); err != nil {
				return nil, nil, fmt.Errorf("%w: %s: spec: %s", ErrDecode, doc, shortJSONError(err))
			}
			if sel, ok := im.selector(doc, "spec.selector", spec.Selector); ok && len(sel.Criteria) > 0 {
				im.objs = append(im.objs, &GroupDefinition{TypeMeta: TypeMeta{APIVersion, KindGroupDefinition},
					Metadata: ObjectMeta{Name: sel.Name}, Spec: GroupDefinitionSpec{Selector: sel}})
			}
		case "NvAdmissionControlSecurityRule":
			var spec nvAdmSpec
			if err := json.Unmarshal(head.Spec, &spec); err != nil {
				return nil, nil, fmt.Errorf("%w: %s: spec: %s", ErrDecode, doc, shortJSONError(err))
			}
			im.admission(doc, head.Metadata, &spec)
		default:
			im.skip(doc, "kind", "kind %q has no Palisade equivalent", d.meta.Kind)
		}
	}
	return im.objs, im.skipped, nil
}

// unknownFields reports spec fields the importer does not know.
func (im *importer) unknownFields(doc string, spec json.RawMessage, known []string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(spec, &m) != nil {
		return
	}
	var extra []string
	for k := range m {
		if !slices.Contains(known, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		im.skip(doc, "spec."+k, "unknown field")
	}
}

// selector converts a NeuVector selector; reserved groups lose their
// criteria, and address ranges become CIDRs.
func (im *importer) selector(doc, field string, s nvSelector) (Selector, bool) {
	out := Selector{Name: s.Name, Comment: s.Comment}
	if s.Name == "" {
		im.skip(doc, field, "selector without a name")
		return out, false
	}
	if policy.IsReservedGroup(s.Name) {
		return out, true
	}
	for i, c := range s.Criteria {
		if c.Key == "address" && strings.Contains(c.Value, "-") {
			ps, err := rangeToPrefixes(c.Value)
			if err != nil {
				im.skip(doc, fmt.Sprintf("%s.criteria[%d]", field, i), "address %q: %v", c.Value, err)
				return out, false
			}
			for _, p := range ps {
				out.Criteria = append(out.Criteria, Criterion{Key: "address", Op: "=", Value: p.String()})
			}
			continue
		}
		out.Criteria = append(out.Criteria, Criterion(c))
	}
	return out, true
}

// rangeToPrefixes turns "10.0.0.1-10.0.0.20" into the fewest CIDRs
// covering exactly that range.
func rangeToPrefixes(r string) ([]netip.Prefix, error) {
	a, b, _ := strings.Cut(r, "-")
	lo, err1 := netip.ParseAddr(strings.TrimSpace(a))
	hi, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo.Is4() != hi.Is4() || hi.Less(lo) || lo.Zone() != "" || hi.Zone() != "" {
		return nil, fmt.Errorf("not an address range")
	}
	var out []netip.Prefix
	for len(out) < 256 {
		bits := lo.BitLen()
		// Grow the prefix while it starts at lo and stays within hi.
		for bits > 0 {
			p, _ := lo.Prefix(bits - 1)
			if p.Addr() != lo || lastAddr(p).Compare(hi) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		last := lastAddr(p)
		if last.Compare(hi) >= 0 {
			return out, nil
		}
		lo = last.Next()
	}
	return nil, fmt.Errorf("range needs more than 256 prefixes")
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (im *importer) securityRule(doc string, namespaced bool, meta ObjectMeta, spec *nvSecuritySpec) {
	target, ok := im.selector(doc, "spec.target.selector", spec.Target.Selector)
	if !ok {
		im.skip(doc, "spec", "document left out: its target cannot be converted")
		return
	}
	sr := &SecurityRule{TypeMeta: TypeMeta{APIVersion, KindClusterSecurityRule}, Metadata: ObjectMeta{Name: meta.Name}}
	if namespaced {
		sr.Kind, sr.Metadata.Namespace = KindSecurityRule, meta.Namespace
	}
	sr.Spec.Target.Selector = target
	if pm := spec.Target.PolicyMode; pm != nil && *pm != "" && *pm != "N/A" {
		if m, err := policy.ParseMode(*pm); err == nil {
			sr.Spec.Target.Mode, sr.Spec.Target.ProcessMode = title(m), title(m)
		} else {
			im.skip(doc, "spec.target.policymode", "%q is not Discover, Monitor or Protect", *pm)
		}
	}
	if pp := spec.ProcessProfile; pp != nil && pp.Baseline != "" {
		switch strings.ToLower(pp.Baseline) {
		case "zero-drift", "zerodrift":
			sr.Spec.ProcessProfile = &ProcessProfile{Baseline: string(policy.BaselineZeroDrift)}
		case "basic", "default":
			sr.Spec.ProcessProfile = &ProcessProfile{Baseline: string(policy.BaselineBasic)}
		default:
			im.skip(doc, "spec.process_profile.baseline", "unknown baseline %q", pp.Baseline)
		}
	}
	rules := func(dir string, in []nvRule) []NetworkPolicy {
		var out []NetworkPolicy
		for i, r := range in {
			field := fmt.Sprintf("spec.%s[%d]", dir, i)
			if r.Name != "" {
				field += fmt.Sprintf(" (%s)", r.Name)
			}
			peer, ok := im.selector(doc, field+".selector", r.Selector)
			if !ok {
				im.skip(doc, field, "rule left out: its peer group cannot be converted")
				continue
			}
			np := NetworkPolicy{Name: r.Name, Comment: r.Comment, Selector: peer, Ports: r.Ports, Action: r.Action, Disabled: r.Disabled}
			bad := false
			for _, a := range r.Applications {
				if strings.EqualFold(a, "any") {
					continue
				}
				ca, known := policy.CanonicalApplication(a)
				if !known {
					im.skip(doc, field+".applications", "rule left out: application %q is not detected by Palisade", a)
					bad = true
					break
				}
				np.Applications = append(np.Applications, ca)
			}
			if bad {
				continue
			}
			if _, err := policy.ParsePorts(r.Ports); err != nil {
				im.skip(doc, field+".ports", "rule left out: %v", strings.TrimPrefix(err.Error(), policy.ErrBadPorts.Error()+": "))
				continue
			}
			if r.Priority != 0 {
				im.skip(doc, field+".priority", "priority %d not carried over: Palisade orders rules by source, deny before allow", r.Priority)
			}
			out = append(out, np)
		}
		return out
	}
	sr.Spec.Ingress = rules("ingress", spec.Ingress)
	sr.Spec.Egress = rules("egress", spec.Egress)
	for i, p := range spec.Process {
		if p.AllowUpdate {
			im.skip(doc, fmt.Sprintf("spec.process[%d].allow_update", i), "allow_update not carried over: %s stays pinned to its path", p.Path)
		}
		sr.Spec.Process = append(sr.Spec.Process, ProcessPolicy{Name: p.Name, Path: p.Path, Action: p.Action})
	}
	for _, f := range spec.File {
		sr.Spec.File = append(sr.Spec.File, FilePolicy{Filter: f.Filter, Recursive: f.Recursive, Behavior: string(fileBehavior(f.Behavior)), Applications: f.App})
	}
	if spec.DLP != nil && len(spec.DLP.Settings) > 0 {
		im.skip(doc, "spec.dlp", "%d DLP sensor(s) not carried over: Palisade has no DLP", len(spec.DLP.Settings))
	}
	if spec.WAF != nil && len(spec.WAF.Settings) > 0 {
		im.skip(doc, "spec.waf", "%d WAF sensor(s) not carried over: Palisade has no WAF", len(spec.WAF.Settings))
	}
	if len(target.Criteria) == 0 {
		// A NeuVector rule on a reserved or undefined target: keep its
		// rules as rules of the peer groups where possible.
		im.skip(doc, "spec.target", "target %q has no criteria; the document is left out", target.Name)
		return
	}
	im.objs = append(im.objs, sr)
}

func (im *importer) admission(doc string, meta ObjectMeta, spec *nvAdmSpec) {
	ar := &AdmissionRule{TypeMeta: TypeMeta{APIVersion, KindAdmissionRule}, Metadata: ObjectMeta{Name: meta.Name}}
	mode := ""
	if c := spec.Config; c != nil {
		ar.Spec.Enabled = c.Enable
		if c.Mode != "" {
			m, err := policy.ParseMode(c.Mode)
			if err != nil || m == policy.ModeDiscover {
				im.skip(doc, "spec.config.mode", "%q is not monitor or protect", c.Mode)
			} else {
				ar.Spec.Mode, mode = string(m), string(m)
			}
		}
		if c.ClientMode != "" {
			im.skip(doc, "spec.config.client_mode", "the webhook's client mode is set by the controller")
		}
	}
rules:
	for i, r := range spec.Rules {
		name := fmt.Sprintf("nv-%d", r.ID)
		if r.ID == 0 {
			name = fmt.Sprintf("nv-rule-%d", i)
		}
		field := fmt.Sprintf("spec.rules[%d] (id %d)", i, r.ID)
		if r.RuleMode != "" && !strings.EqualFold(r.RuleMode, mode) {
			if strings.EqualFold(r.RuleMode, "monitor") && r.Action == "deny" {
				im.skip(doc, field+".rule_mode", "rule left out: it only logged in NeuVector (rule_mode monitor) and would block under the cluster's %s mode", mode)
				continue
			}
			im.skip(doc, field+".rule_mode", "per-rule mode %q not carried over: the rule uses the cluster's admission mode", r.RuleMode)
		}
		e := AdmissionEntry{Name: name, Action: r.Action, Comment: r.Comment, Disabled: r.Disabled}
		for _, c := range r.Containers {
			switch c {
			case "containers":
				e.Containers = append(e.Containers, string(policy.ContainersMain))
			case "init_containers":
				e.Containers = append(e.Containers, string(policy.ContainersInit))
			case "ephemeral_containers":
				e.Containers = append(e.Containers, string(policy.ContainersEphemeral))
			default:
				im.skip(doc, field+".containers", "rule left out: unknown container kind %q", c)
				continue rules
			}
		}
		for j, c := range r.Criteria {
			cf := fmt.Sprintf("%s.criteria[%d]", field, j)
			if len(c.SubCriteria) > 0 {
				im.skip(doc, cf, "rule left out: criterion %q has sub-criteria, which Palisade does not evaluate", c.Name)
				continue rules
			}
			if policy.AdmissionCriterionType(c.Name) == policy.CriterionUnknown {
				im.skip(doc, cf, "rule left out: criterion %q has no Palisade equivalent", c.Name)
				continue rules
			}
			ac, ok := nvAdmissionCriterion(c)
			if !ok {
				im.skip(doc, cf, "rule left out: operator %q of %q has no Palisade equivalent", c.Op, c.Name)
				continue rules
			}
			if err := policy.CheckAdmissionCriterion(policy.AdmissionCriterion(ac)); err != nil {
				im.skip(doc, cf, "rule left out: %s", strings.TrimPrefix(err.Error(), policy.ErrBadCriterion.Error()+": "))
				continue rules
			}
			e.Criteria = append(e.Criteria, ac)
		}
		if len(e.Criteria) == 0 {
			im.skip(doc, field, "rule left out: no criteria")
			continue
		}
		ar.Spec.Rules = append(ar.Spec.Rules, e)
	}
	im.objs = append(im.objs, ar)
}

// nvAdmissionCriterion maps NeuVector's operators and values.
func nvAdmissionCriterion(c nvAdmCriterion) (AdmissionCriterion, bool) {
	out := AdmissionCriterion{Name: c.Name, Op: c.Op, Value: c.Value}
	switch c.Op {
	case "regexContainsAnyEx", "regexNotContainsAnyEx":
		var alts []string
		for _, it := range policy.SplitList(c.Value) {
			alts = append(alts, "(?:"+it+")")
		}
		out.Op, out.Value = policy.AdmOpRegex, strings.Join(alts, "|")
		if c.Op == "regexNotContainsAnyEx" {
			out.Op = policy.AdmOpNotRegex
		}
	case "=", "!=", ">", ">=", "<", "<=", "containsAny", "containsAll", "notContainsAny", "containsOtherThan":
	default:
		return out, false
	}
	if c.Name == policy.CritImageRegistry {
		var regs []string
		for _, it := range policy.SplitList(c.Value) {
			it = strings.TrimPrefix(strings.TrimPrefix(it, "https://"), "http://")
			regs = append(regs, strings.TrimSuffix(it, "/"))
		}
		out.Value = strings.Join(regs, ",")
	}
	return out, true
}
