package admit

import (
	"fmt"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

// BenchmarkEvaluate200Rules evaluates one pod against 200 rules of mixed
// criteria, none of which matches, so every rule is looked at.
func BenchmarkEvaluate200Rules(b *testing.B) {
	var rules []policy.AdmissionRule
	for i := range 200 {
		var cs []policy.AdmissionCriterion
		switch i % 5 {
		case 0:
			cs = []policy.AdmissionCriterion{crit("cveCriticalCount", ">", "0"), crit("namespace", "containsAny", fmt.Sprintf("ns%d,other%d", i, i))}
		case 1:
			cs = []policy.AdmissionCriterion{crit("image", "containsAny", fmt.Sprintf("registry%d.local/*", i)), crit("imageSigned", "=", "false")}
		case 2:
			cs = []policy.AdmissionCriterion{crit("labels", "containsAll", fmt.Sprintf("app=x%d,tier", i)), crit("runAsRoot", "=", "true")}
		case 3:
			cs = []policy.AdmissionCriterion{crit("cveNames", "containsAny", fmt.Sprintf("CVE-2019-%04d", i)), crit("envVarSecrets", "=", "true"), crit("namespace", "regex", fmt.Sprintf("^team%d-", i))}
		case 4:
			cs = []policy.AdmissionCriterion{crit("imageRegistry", "notContainsAny", "quay.io,docker.io"), crit("resourceLimit", "=", "false")}
		}
		src := []policy.Source{policy.SourceCode, policy.SourceUser}[i%2]
		rules = append(rules, policy.AdmissionRule{Meta: policy.Meta{Name: fmt.Sprintf("rule-%03d", i), Source: src}, Action: policy.ActionDeny, Criteria: cs})
	}
	e, err := New(rules, policy.AdmissionSettings{Enabled: true, Mode: policy.ModeProtect})
	if err != nil {
		b.Fatal(err)
	}
	req := basePod()
	req.Containers = append(req.Containers, Container{Name: "side", Image: "docker.io/envoyproxy/envoy:v1.30", AllowPrivilegeEscalation: ptr(false), CPULimit: "1", MemoryLimit: "1Gi",
		Env: []EnvVar{{Name: "TOKEN", FromRef: true}, {Name: "MODE", Value: "fast"}}})
	v := baseVerdicts()
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Evaluate(req, v); !d.Allowed {
			b.Fatalf("unexpected deny: %s", d.Message)
		}
	}
}
