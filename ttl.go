package rendezvous

import (
	"fmt"
	"time"
)

// The TTL bounds that the specification recommends.
const (
	// DefaultTTL is the TTL of a REGISTER that gives none.
	DefaultTTL = 2 * time.Hour
	// DefaultMinTTL is the shortest TTL accepted by default.
	DefaultMinTTL = 2 * time.Hour
	// DefaultMaxTTL is the longest TTL accepted by default.
	DefaultMaxTTL = 72 * time.Hour
)

// TTLPolicy is the range of TTLs that a point accepts (or that a client is
// willing to ask for) and the TTL used when a REGISTER gives none.
type TTLPolicy struct {
	// Min is the shortest TTL accepted. Default DefaultMinTTL.
	Min time.Duration
	// Max is the longest TTL accepted. Default DefaultMaxTTL.
	Max time.Duration
	// Default is the TTL of a REGISTER that gives none (or 0). Default DefaultTTL.
	Default time.Duration
}

// DefaultTTLPolicy returns the policy the specification recommends:
// [2 h, 72 h] with 2 h by default.
func DefaultTTLPolicy() TTLPolicy {
	return TTLPolicy{Min: DefaultMinTTL, Max: DefaultMaxTTL, Default: DefaultTTL}
}

// Validate reports a policy that cannot work: Min above Max, a Default
// outside [Min, Max], or bounds that are not whole positive seconds.
func (p TTLPolicy) Validate() error {
	switch {
	case p.Min < time.Second:
		return fmt.Errorf("minimum TTL %v is below 1s", p.Min)
	case p.Max < p.Min:
		return fmt.Errorf("maximum TTL %v is below the minimum %v", p.Max, p.Min)
	case p.Default < p.Min || p.Default > p.Max:
		return fmt.Errorf("default TTL %v is outside [%v, %v]", p.Default, p.Min, p.Max)
	case p.Min%time.Second != 0 || p.Max%time.Second != 0 || p.Default%time.Second != 0:
		return fmt.Errorf("TTLs must be whole seconds")
	}
	return nil
}

// Resolve returns the TTL to grant for a requested number of seconds. Zero
// means none was given (proto3-style encoders cannot tell 0 from absent) and
// yields Default. A TTL outside [Min, Max] is refused with StatusInvalidTTL,
// never clamped.
func (p TTLPolicy) Resolve(seconds uint64) (time.Duration, error) {
	if seconds == 0 {
		return p.Default, nil
	}
	if seconds < uint64(p.Min/time.Second) || seconds > uint64(p.Max/time.Second) {
		return 0, Errorf(StatusInvalidTTL, "ttl %ds is outside [%ds, %ds]", seconds, uint64(p.Min/time.Second), uint64(p.Max/time.Second))
	}
	return time.Duration(seconds) * time.Second, nil
}
