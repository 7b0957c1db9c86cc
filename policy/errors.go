package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. A [ValidationError] unwraps to ErrInvalid.
var (
	ErrInvalid      = errors.New("policy: invalid policy")
	ErrUnknownGroup = errors.New("policy: unknown group")
	ErrBadMode      = errors.New("policy: bad mode")
	ErrBadPorts     = errors.New("policy: bad ports")
	ErrBadCriterion = errors.New("policy: bad criterion")
)

// ValidationError says which object, which field, and what is wrong:
//
//	network rule "web-to-db": ports: "tcp/99999" is out of range
type ValidationError struct {
	Kind    Kind
	Name    string
	Field   string
	Problem string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q: ", e.Kind.Title(), e.Name)
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// Unwrap lets errors.Is(err, ErrInvalid) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// problem strips a sentinel's "policy: ... :" prefix from an error made by
// this package so that it reads well inside a ValidationError.
func problem(err error) string {
	s := err.Error()
	for _, p := range []error{ErrBadPorts, ErrBadCriterion, ErrBadMode, ErrUnknownGroup} {
		if pre := p.Error() + ": "; strings.HasPrefix(s, pre) {
			return s[len(pre):]
		}
	}
	return s
}
