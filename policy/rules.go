package policy

import "slices"

// ContainerKind selects which containers of a pod an admission rule looks at.
type ContainerKind string

// The container kinds.
const (
	ContainersMain      ContainerKind = "containers"
	ContainersInit      ContainerKind = "initContainers"
	ContainersEphemeral ContainerKind = "ephemeralContainers"
)

// AdmissionRule allows (an exception) or denies pods whose spec and images
// meet every criterion.
type AdmissionRule struct {
	Meta
	// Action is allow (an exception that stops evaluation) or deny.
	Action Action `json:"action"`
	// Disabled rules are kept but not evaluated.
	Disabled bool `json:"disabled,omitempty"`
	// Containers are the kinds of container the rule looks at; empty is all.
	Containers []ContainerKind `json:"containers,omitempty"`
	// Criteria must all hold for the rule to match.
	Criteria []AdmissionCriterion `json:"criteria"`
}

// AdmissionCriterion is one condition of an admission rule.
type AdmissionCriterion struct {
	// Name is the criterion ("cveHighCount", "runAsRoot", ...); see
	// [AdmissionCriterionType].
	Name string `json:"name"`
	// Op is the operator; which ones apply depends on the criterion's type.
	Op string `json:"op"`
	// Value is a number, true/false, or a comma-separated list of items.
	Value string `json:"value"`
}

// CriterionType is the type of an admission criterion's value.
type CriterionType int

// The admission criterion types.
const (
	CriterionUnknown CriterionType = iota
	// CriterionNumber compares a count: = != > >= < <=.
	CriterionNumber
	// CriterionBool compares true or false: = !=.
	CriterionBool
	// CriterionSet compares a set of strings with a list of items (which
	// may use * and ? wildcards): containsAny containsAll notContainsAny
	// containsOtherThan = != regex !regex.
	CriterionSet
)

// The admission criterion names.
const (
	CritCVECriticalCount        = "cveCriticalCount"
	CritCVECriticalWithFixCount = "cveCriticalWithFixCount"
	CritCVEHighCount            = "cveHighCount"
	CritCVEHighWithFixCount     = "cveHighWithFixCount"
	CritCVEMediumCount          = "cveMediumCount"
	CritCVEMediumWithFixCount   = "cveMediumWithFixCount"
	CritCVENames                = "cveNames"
	CritImageScanned            = "imageScanned"
	CritImageSigned             = "imageSigned"
	CritRunAsRoot               = "runAsRoot"
	CritRunAsPrivileged         = "runAsPrivileged"
	CritAllowPrivEscalation     = "allowPrivEscalation"
	CritShareIPCWithHost        = "shareIpcWithHost"
	CritSharePIDWithHost        = "sharePidWithHost"
	CritShareNetWithHost        = "shareNetWithHost"
	CritEnvVarSecrets           = "envVarSecrets"
	CritResourceLimit           = "resourceLimit"
	CritNamespace               = "namespace"
	CritLabels                  = "labels"
	CritAnnotations             = "annotations"
	CritImage                   = "image"
	CritImageRegistry           = "imageRegistry"
)

// AdmissionCriterionType returns the type of a named admission criterion,
// or CriterionUnknown.
func AdmissionCriterionType(name string) CriterionType {
	switch name {
	case CritCVECriticalCount, CritCVECriticalWithFixCount, CritCVEHighCount,
		CritCVEHighWithFixCount, CritCVEMediumCount, CritCVEMediumWithFixCount:
		return CriterionNumber
	case CritImageScanned, CritImageSigned, CritRunAsRoot, CritRunAsPrivileged,
		CritAllowPrivEscalation, CritShareIPCWithHost, CritSharePIDWithHost,
		CritShareNetWithHost, CritEnvVarSecrets, CritResourceLimit:
		return CriterionBool
	case CritCVENames, CritNamespace, CritLabels, CritAnnotations, CritImage, CritImageRegistry:
		return CriterionSet
	}
	return CriterionUnknown
}

// AdmissionCriterionNames lists every admission criterion, sorted.
func AdmissionCriterionNames() []string {
	n := []string{
		CritCVECriticalCount, CritCVECriticalWithFixCount, CritCVEHighCount,
		CritCVEHighWithFixCount, CritCVEMediumCount, CritCVEMediumWithFixCount,
		CritCVENames, CritImageScanned, CritImageSigned, CritRunAsRoot,
		CritRunAsPrivileged, CritAllowPrivEscalation, CritShareIPCWithHost,
		CritSharePIDWithHost, CritShareNetWithHost, CritEnvVarSecrets,
		CritResourceLimit, CritNamespace, CritLabels, CritAnnotations, CritImage,
		CritImageRegistry,
	}
	slices.Sort(n)
	return n
}

// The admission operators.
const (
	AdmOpEqual             = "="
	AdmOpNotEqual          = "!="
	AdmOpGreater           = ">"
	AdmOpGreaterEqual      = ">="
	AdmOpLess              = "<"
	AdmOpLessEqual         = "<="
	AdmOpContainsAny       = "containsAny"
	AdmOpContainsAll       = "containsAll"
	AdmOpNotContainsAny    = "notContainsAny"
	AdmOpContainsOtherThan = "containsOtherThan"
	AdmOpRegex             = "regex"
	AdmOpNotRegex          = "!regex"
)

// AdmissionOpValid reports whether op applies to criteria of type t.
func AdmissionOpValid(t CriterionType, op string) bool {
	switch t {
	case CriterionNumber:
		switch op {
		case AdmOpEqual, AdmOpNotEqual, AdmOpGreater, AdmOpGreaterEqual, AdmOpLess, AdmOpLessEqual:
			return true
		}
	case CriterionBool:
		return op == AdmOpEqual || op == AdmOpNotEqual
	case CriterionSet:
		switch op {
		case AdmOpEqual, AdmOpNotEqual, AdmOpContainsAny, AdmOpContainsAll,
			AdmOpNotContainsAny, AdmOpContainsOtherThan, AdmOpRegex, AdmOpNotRegex:
			return true
		}
	}
	return false
}

// EventKind is a kind of security event a response rule reacts to.
type EventKind string

// The event kinds.
const (
	EventNetworkViolation EventKind = "networkViolation"
	EventProcessViolation EventKind = "processViolation"
	EventFileViolation    EventKind = "fileViolation"
	EventAdmissionDenied  EventKind = "admissionDenied"
	EventThreat           EventKind = "threat"
	EventCVEReport        EventKind = "cveReport"
)

func (e EventKind) valid() bool {
	switch e {
	case EventNetworkViolation, EventProcessViolation, EventFileViolation,
		EventAdmissionDenied, EventThreat, EventCVEReport:
		return true
	}
	return false
}

// ResponseAction is what a response rule does.
type ResponseAction string

// The response actions.
const (
	ResponseWebhook     ResponseAction = "webhook"     // post the event to Webhook
	ResponseQuarantine  ResponseAction = "quarantine"  // cut the workload off the network
	ResponseSuppressLog ResponseAction = "suppressLog" // do not record the event
)

// ResponseRule reacts to security events of one kind.
type ResponseRule struct {
	Meta
	// Event is the kind of event the rule reacts to.
	Event EventKind `json:"event"`
	// Group limits the rule to events about this group's workloads; empty is any.
	Group string `json:"group,omitempty"`
	// Actions are what to do.
	Actions []ResponseAction `json:"actions"`
	// Webhook is the URL events are posted to with the webhook action.
	Webhook string `json:"webhook,omitempty"`
	// Disabled rules are kept but not applied.
	Disabled bool `json:"disabled,omitempty"`
}

// Applies reports whether the rule reacts to an event of kind ev about a
// workload that is a member of groups.
func (r *ResponseRule) Applies(ev EventKind, groups []string) bool {
	if r.Disabled || r.Event != ev {
		return false
	}
	return r.Group == "" || slices.Contains(groups, r.Group)
}

// Responses returns the response rules of s that apply to an event, in
// precedence order.
func (s *Set) Responses(ev EventKind, groups []string) []*ResponseRule {
	var out []*ResponseRule
	for i := range s.ResponseRules {
		if s.ResponseRules[i].Applies(ev, groups) {
			out = append(out, &s.ResponseRules[i])
		}
	}
	slices.SortFunc(out, func(a, b *ResponseRule) int { return compareMeta(&a.Meta, &b.Meta) })
	return out
}
