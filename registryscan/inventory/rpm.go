package inventory

import (
	"errors"
	"fmt"
)

// ErrRPMUnsupported is returned for an rpm database this package cannot
// read yet.
var ErrRPMUnsupported = errors.New("inventory: rpm database format not supported")

// ParseRPMDB reads an rpm package database.
func ParseRPMDB(data []byte) ([]Package, error) {
	return nil, fmt.Errorf("%w (%d bytes)", ErrRPMUnsupported, len(data))
}
