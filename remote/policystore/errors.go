package policystore

import (
	"errors"
	"fmt"
)

// Sentinel errors; the typed errors below match them with errors.Is.
var (
	// ErrReadOnly is matched by every *ReadOnlyError.
	ErrReadOnly = errors.New("policystore: federated objects are read-only here")
	// ErrInvalid is matched by every *InvalidError.
	ErrInvalid = errors.New("policystore: invalid policy")
	// ErrUnknownGroup is returned for a mode change of a group that does
	// not exist.
	ErrUnknownGroup = errors.New("policystore: unknown group")
)

// ReadOnlyError is a write refused because it would create, change or
// delete a federated object.
type ReadOnlyError struct {
	// Object names the object ("group \"web\"", "ClusterSecurityRule web").
	Object string
}

func (e *ReadOnlyError) Error() string {
	return fmt.Sprintf("%s is federated and read-only in this cluster", e.Object)
}

// Is makes errors.Is(err, ErrReadOnly) true.
func (e *ReadOnlyError) Is(target error) bool { return target == ErrReadOnly }

// InvalidError is input that cannot be decoded, converted or validated.
type InvalidError struct {
	// Field is the field at fault, when one is known ("ports",
	// "metadata.namespace", "body").
	Field string
	// Problem is the message, naming the object.
	Problem string
}

func (e *InvalidError) Error() string { return e.Problem }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }
