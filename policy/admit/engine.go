package admit

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// ErrBadRule is returned by [New] for a rule it cannot evaluate.
var ErrBadRule = errors.New("admit: bad rule")

// Decision is the outcome of one admission request.
type Decision struct {
	// Allowed says whether the pod may run.
	Allowed bool `json:"allowed"`
	// Rule is the rule that decided; empty when none matched.
	Rule string `json:"rule,omitempty"`
	// Message says why, for the user and the audit log.
	Message string `json:"message"`
	// Mode is the admission mode the decision was made in.
	Mode policy.Mode `json:"mode"`
}

// Engine evaluates admission requests against compiled rules. It is
// immutable and safe for concurrent use.
type Engine struct {
	settings policy.AdmissionSettings
	rules    []*rule
}

type rule struct {
	r          *policy.AdmissionRule
	kinds      [3]bool // containers, init, ephemeral
	pod        []*criterion
	containers []*criterion
}

type criterion struct {
	c     policy.AdmissionCriterion
	typ   policy.CriterionType
	num   uint64
	boolv bool
	items []string
	re    *regexp.Regexp
}

// New compiles admission rules. Rules must be valid (see [policy.Set.Validate]);
// New returns an error naming the first rule it cannot use.
func New(rules []policy.AdmissionRule, settings policy.AdmissionSettings) (*Engine, error) {
	e := &Engine{settings: settings}
	if settings.Mode == "" {
		e.settings.Mode = policy.ModeProtect
	}
	for _, r := range policy.SortedAdmissionRules(rules) {
		cr := &rule{r: r}
		if len(r.Containers) == 0 {
			cr.kinds = [3]bool{true, true, true}
		}
		for _, k := range r.Containers {
			switch k {
			case policy.ContainersMain:
				cr.kinds[0] = true
			case policy.ContainersInit:
				cr.kinds[1] = true
			case policy.ContainersEphemeral:
				cr.kinds[2] = true
			default:
				return nil, fmt.Errorf("%w: admission rule %q: containers: unknown kind %q", ErrBadRule, r.Name, k)
			}
		}
		if len(r.Criteria) == 0 {
			return nil, fmt.Errorf("%w: admission rule %q: no criteria", ErrBadRule, r.Name)
		}
		for _, c := range r.Criteria {
			cc, err := compileCriterion(c)
			if err != nil {
				return nil, fmt.Errorf("%w: admission rule %q: %w", ErrBadRule, r.Name, err)
			}
			if podLevel(c.Name) {
				cr.pod = append(cr.pod, cc)
			} else {
				cr.containers = append(cr.containers, cc)
			}
		}
		e.rules = append(e.rules, cr)
	}
	return e, nil
}

// NewFromSet compiles the admission rules and settings of a policy set.
func NewFromSet(s *policy.Set) (*Engine, error) { return New(s.AdmissionRules, s.Admission) }

func compileCriterion(c policy.AdmissionCriterion) (*criterion, error) {
	if err := policy.CheckAdmissionCriterion(c); err != nil {
		return nil, err
	}
	cc := &criterion{c: c, typ: policy.AdmissionCriterionType(c.Name)}
	v := strings.TrimSpace(c.Value)
	switch cc.typ {
	case policy.CriterionNumber:
		cc.num, _ = strconv.ParseUint(v, 10, 32)
	case policy.CriterionBool:
		cc.boolv, _ = strconv.ParseBool(v)
	case policy.CriterionSet:
		if c.Op == policy.AdmOpRegex || c.Op == policy.AdmOpNotRegex {
			re, err := policy.CompileRegex(c.Value)
			if err != nil {
				return nil, err
			}
			cc.re = re
		} else {
			cc.items = policy.SplitList(c.Value)
		}
	}
	return cc, nil
}

// podLevel reports whether a criterion looks at the pod rather than at
// each container.
func podLevel(name string) bool {
	switch name {
	case policy.CritNamespace, policy.CritLabels, policy.CritAnnotations,
		policy.CritShareIPCWithHost, policy.CritSharePIDWithHost, policy.CritShareNetWithHost:
		return true
	}
	return false
}

// Evaluate decides one request.
func (e *Engine) Evaluate(req *Request, verdicts Verdicts) Decision {
	if !e.settings.Enabled {
		return Decision{Allowed: true, Message: "admission control is disabled", Mode: e.settings.Mode}
	}
	ev := newEvaluation(req, verdicts)
	for _, r := range e.rules {
		c, ok := ev.match(r)
		if !ok {
			continue
		}
		d := Decision{Rule: r.r.Name, Mode: e.settings.Mode}
		what := describe(r, c)
		switch {
		case r.r.Action == policy.ActionAllow:
			d.Allowed = true
			d.Message = fmt.Sprintf("allowed by admission rule %q (%s)", r.r.Name, what)
		case e.settings.Mode == policy.ModeMonitor:
			d.Allowed = true
			d.Message = fmt.Sprintf("would be denied by admission rule %q (%s); allowed in monitor mode", r.r.Name, what)
		default:
			d.Message = fmt.Sprintf("denied by admission rule %q (%s)", r.r.Name, what)
		}
		return d
	}
	return Decision{Allowed: true, Message: "no admission rule matched", Mode: e.settings.Mode}
}

// Evaluate compiles rules and decides one request; use [New] once and
// [Engine.Evaluate] per request on the hot path.
func Evaluate(rules []policy.AdmissionRule, settings policy.AdmissionSettings, req *Request, verdicts Verdicts) (Decision, error) {
	e, err := New(rules, settings)
	if err != nil {
		return Decision{}, err
	}
	return e.Evaluate(req, verdicts), nil
}

func describe(r *rule, c *containerFacts) string {
	var b strings.Builder
	for i, cr := range r.r.Criteria {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s %s", cr.Name, cr.Op, cr.Value)
	}
	if c != nil {
		fmt.Fprintf(&b, "; container %q image %q", c.c.Name, c.c.Image)
	}
	return b.String()
}
