package admit

import (
	"regexp"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// evaluation caches what one request's criteria look at.
type evaluation struct {
	req         *Request
	labels      []string // "key=value"
	annotations []string
	containers  [3][]*containerFacts
}

// containerFacts are one container's derived attributes, computed once
// per request.
type containerFacts struct {
	c                 *Container
	verdict           ImageVerdict
	images            []string
	registry          []string
	runAsRoot         bool
	privileged        bool
	privEsc           bool
	secrets, computed bool
	limits            bool
}

func newEvaluation(req *Request, verdicts Verdicts) *evaluation {
	ev := &evaluation{req: req, labels: kvs(req.Labels), annotations: kvs(req.Annotations)}
	for k, list := range [3][]Container{req.Containers, req.InitContainers, req.EphemeralContainers} {
		for i := range list {
			ev.containers[k] = append(ev.containers[k], facts(req, &list[i], verdicts))
		}
	}
	return ev
}

func kvs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func facts(req *Request, c *Container, verdicts Verdicts) *containerFacts {
	f := &containerFacts{c: c, verdict: verdicts[c.Image]}
	ref := parseImage(c.Image)
	f.images = ref.forms(c.Image)
	reg := ref.registry
	if f.verdict.Registry != "" {
		reg = f.verdict.Registry
	}
	f.registry = []string{reg}
	if reg == "docker.io" {
		f.registry = append(f.registry, "index.docker.io", "registry-1.docker.io")
	}
	f.privileged = c.Privileged != nil && *c.Privileged
	f.privEsc = f.privileged || c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation
	uid, nonRoot := req.RunAsUser, req.RunAsNonRoot
	if c.RunAsUser != nil {
		uid = c.RunAsUser
	}
	if c.RunAsNonRoot != nil {
		nonRoot = c.RunAsNonRoot
	}
	switch {
	case uid != nil:
		f.runAsRoot = *uid == 0
	case nonRoot != nil && *nonRoot:
		f.runAsRoot = false
	default:
		u := f.verdict.User
		f.runAsRoot = u == "" || u == "0" || u == "root" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root:")
	}
	f.limits = c.CPULimit != "" && c.MemoryLimit != ""
	return f
}

// match reports whether every criterion of r holds; for rules with
// container criteria it also returns the first container that meets them.
func (ev *evaluation) match(r *rule) (*containerFacts, bool) {
	for _, c := range r.pod {
		if !ev.podCriterion(c) {
			return nil, false
		}
	}
	if len(r.containers) == 0 {
		return nil, true
	}
	for k := range 3 {
		if !r.kinds[k] {
			continue
		}
	next:
		for _, f := range ev.containers[k] {
			for _, c := range r.containers {
				if !containerCriterion(c, f) {
					continue next
				}
			}
			return f, true
		}
	}
	return nil, false
}

func (ev *evaluation) podCriterion(c *criterion) bool {
	switch c.c.Name {
	case policy.CritNamespace:
		return setOp(c, []string{ev.req.Namespace}, policy.Glob)
	case policy.CritLabels:
		return kvOp(c, ev.labels)
	case policy.CritAnnotations:
		return kvOp(c, ev.annotations)
	case policy.CritShareIPCWithHost:
		return boolOp(c, ev.req.HostIPC)
	case policy.CritSharePIDWithHost:
		return boolOp(c, ev.req.HostPID)
	case policy.CritShareNetWithHost:
		return boolOp(c, ev.req.HostNetwork)
	}
	return false
}

func containerCriterion(c *criterion, f *containerFacts) bool {
	v := &f.verdict
	switch c.c.Name {
	case policy.CritCVECriticalCount:
		return numOp(c, v.CriticalCount)
	case policy.CritCVECriticalWithFixCount:
		return numOp(c, v.CriticalWithFix)
	case policy.CritCVEHighCount:
		return numOp(c, v.HighCount)
	case policy.CritCVEHighWithFixCount:
		return numOp(c, v.HighWithFix)
	case policy.CritCVEMediumCount:
		return numOp(c, v.MediumCount)
	case policy.CritCVEMediumWithFixCount:
		return numOp(c, v.MediumWithFix)
	case policy.CritCVENames:
		return setOp(c, v.CVENames, policy.Glob)
	case policy.CritImageScanned:
		return boolOp(c, v.Scanned)
	case policy.CritImageSigned:
		return boolOp(c, v.Signed)
	case policy.CritRunAsRoot:
		return boolOp(c, f.runAsRoot)
	case policy.CritRunAsPrivileged:
		return boolOp(c, f.privileged)
	case policy.CritAllowPrivEscalation:
		return boolOp(c, f.privEsc)
	case policy.CritEnvVarSecrets:
		if !f.computed {
			f.secrets, f.computed = hasSecret(f.c.Env), true
		}
		return boolOp(c, f.secrets)
	case policy.CritResourceLimit:
		return boolOp(c, f.limits)
	case policy.CritImage:
		return imageOp(c, f.images)
	case policy.CritImageRegistry:
		return setOp(c, f.registry, policy.Glob)
	}
	return false
}

func numOp(c *criterion, n int) bool {
	v := uint64(max(n, 0))
	switch c.c.Op {
	case policy.AdmOpEqual:
		return v == c.num
	case policy.AdmOpNotEqual:
		return v != c.num
	case policy.AdmOpGreater:
		return v > c.num
	case policy.AdmOpGreaterEqual:
		return v >= c.num
	case policy.AdmOpLess:
		return v < c.num
	case policy.AdmOpLessEqual:
		return v <= c.num
	}
	return false
}

func boolOp(c *criterion, v bool) bool {
	if c.c.Op == policy.AdmOpNotEqual {
		return v != c.boolv
	}
	return v == c.boolv
}

// setOp applies a set operator to the subject values, matching items with
// match(item, subject).
func setOp(c *criterion, subjects []string, match func(item, s string) bool) bool {
	if c.re != nil {
		found := slices.ContainsFunc(subjects, c.re.MatchString)
		return found == (c.c.Op == policy.AdmOpRegex)
	}
	anyItem := func(s string) bool {
		for _, it := range c.items {
			if match(it, s) {
				return true
			}
		}
		return false
	}
	switch c.c.Op {
	case policy.AdmOpEqual, policy.AdmOpContainsAny:
		return slices.ContainsFunc(subjects, anyItem)
	case policy.AdmOpNotEqual, policy.AdmOpNotContainsAny:
		return !slices.ContainsFunc(subjects, anyItem)
	case policy.AdmOpContainsAll:
		for _, it := range c.items {
			if !slices.ContainsFunc(subjects, func(s string) bool { return match(it, s) }) {
				return false
			}
		}
		return true
	case policy.AdmOpContainsOtherThan:
		return slices.ContainsFunc(subjects, func(s string) bool { return !anyItem(s) })
	}
	return false
}

// imageOp matches image items against every spelling of each image; an
// image counts as one subject however many spellings match.
func imageOp(c *criterion, forms []string) bool {
	if c.re != nil {
		found := slices.ContainsFunc(forms, c.re.MatchString)
		return found == (c.c.Op == policy.AdmOpRegex)
	}
	hit := func(it string) bool {
		return slices.ContainsFunc(forms, func(f string) bool { return policy.Glob(it, f) })
	}
	anyItem := slices.ContainsFunc(c.items, hit)
	switch c.c.Op {
	case policy.AdmOpEqual, policy.AdmOpContainsAny:
		return anyItem
	case policy.AdmOpNotEqual, policy.AdmOpNotContainsAny:
		return !anyItem
	case policy.AdmOpContainsAll:
		for _, it := range c.items {
			if !hit(it) {
				return false
			}
		}
		return true
	case policy.AdmOpContainsOtherThan:
		return !anyItem
	}
	return false
}

// kvOp matches "key" items against label keys and "key=value" items
// (with wildcards in the value) against key=value pairs.
func kvOp(c *criterion, subjects []string) bool {
	return setOp(c, subjects, func(item, s string) bool {
		if strings.Contains(item, "=") {
			return policy.Glob(item, s)
		}
		k, _, _ := strings.Cut(s, "=")
		return policy.Glob(item, k)
	})
}

var (
	secretName  = regexp.MustCompile(`(?i)(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|credential)`)
	secretValue = regexp.MustCompile(`AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|gh[pousr]_[A-Za-z0-9]{36}|xox[abprs]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.|sk_live_[A-Za-z0-9]{16,}`)
)

// hasSecret reports whether a literal environment value looks like a
// secret: a secret-like name with a value of some length, or a value in a
// well-known credential format.
func hasSecret(env []EnvVar) bool {
	for _, e := range env {
		if e.FromRef || e.Value == "" {
			continue
		}
		if len(e.Value) >= 6 && secretName.MatchString(e.Name) {
			return true
		}
		if secretValue.MatchString(e.Value) {
			return true
		}
	}
	return false
}
