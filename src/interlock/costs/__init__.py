"""What calls cost, what was spent, and what routing saved.

- `settings`  the `prices`, `budgets` and `ledger` config sections (pydantic)
- `prices`    `ModelPrice`, `lookup_model_price` (genai-prices' bundled data), `PriceBook`
- `context_windows` the context window genai-prices' data gives a deployment's model
- `ledger`    `Ledger`, `LedgerRow`: one row per request, written off the request path
- `writer_process` the ledger's batches written from a child process (the server's)
- `schema`    the ledger's tables and named, ordered migrations
- `queries`   `LedgerReader`: spend summaries and usage for replays and reports
- `budgets`   `BudgetGate`: spending limits as a dispatch attempt gate (Redis-shared)
- `simulate`  the cost simulator and ledger replay
- `report`    the self-contained HTML savings report

Nothing is imported here, so `import interlock` does not load SQLAlchemy or genai-prices.

Imports: `catalog`, `types`, `errors`, `masking`; SQLAlchemy, genai-prices,
redis and matplotlib lazily. Never `dispatch`, `gateway`, `server` or
`routing`: `BudgetGate` fits `dispatch.gates.AttemptGate` by its shape.
"""
