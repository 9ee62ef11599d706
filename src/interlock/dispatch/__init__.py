"""Dispatch: retries, fallbacks, cooldowns, timeouts and shared state.

The public entry point is `dispatch.dispatcher.Dispatcher` (with `Attempt`,
`DispatchResult`, `DispatchStream`); `retry.RetryPolicy`,
`health.CooldownTracker`, `state.StateBackend` and `clock.Clock` are its
parts. Nothing is imported here, so `import interlock` stays fast.
See docs/reliability.md.

Imports: `adapters`, `catalog`, `types`, `errors`; redis lazily. Never
`routing`, `costs`, `gateway` or `server` (budgets reach in through the
`gates.AttemptGate` protocol instead).
"""
