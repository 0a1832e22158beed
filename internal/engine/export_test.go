package engine

// Abandon stops the engine as a crash would: claiming, renewing and
// rescuing stop, handlers are left hanging, nothing is released. The later
// Stop only cancels the hanging handlers, whose late results are fenced out.
func Abandon(e *Engine) {
	e.abandoned.Store(true)
	e.stopClaim()
	e.loops.Wait()
}
