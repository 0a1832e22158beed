package engine

import (
	"math/rand/v2"
	"time"
)

// Backoff is an exponential retry policy: Base, 2×Base, 4×Base, … capped at
// Max, with ±Jitter. Tasker's defaults are base 1 s, max 300 s, 10 % jitter,
// giving 1, 2, 4, 8, 16, 32 s … for attempts 1, 2, 3, ….
type Backoff struct {
	Base   time.Duration
	Max    time.Duration
	Jitter float64 // fraction, e.g. 0.1 for ±10 %
}

// DefaultBackoff is Tasker's policy.
var DefaultBackoff = Backoff{Base: time.Second, Max: 300 * time.Second, Jitter: 0.1}

// Delay is the wait before the attempt after failed attempt number attempt
// (1-based). A server-requested retryAfter wins, capped at Max. Delays are
// relative: the database adds them to its own now(), so replicas' clocks
// never matter.
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	base, maxDelay := b.Base, b.Max
	if base <= 0 {
		base = DefaultBackoff.Base
	}
	if maxDelay <= 0 {
		maxDelay = DefaultBackoff.Max
	}
	if retryAfter > 0 {
		return min(retryAfter, maxDelay)
	}
	d := base
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	if b.Jitter > 0 {
		j := (rand.Float64()*2 - 1) * b.Jitter
		d = time.Duration(float64(d) * (1 + j))
	}
	// Jitter never brings a delay below the base, nor above the cap.
	return max(min(d, maxDelay), min(base, maxDelay))
}
