package webhooks

import "context"

// Reload is the periodic re-read of the subscriptions.
func (s *Service) Reload(ctx context.Context) { s.reload(ctx) }

// SetAfterRead makes the reloads that begin from now on call f between
// reading the subscriptions and storing them; nil removes it.
func (s *Service) SetAfterRead(f func()) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.afterRead = f
}
