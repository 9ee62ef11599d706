"""Deciding which model group serves a request: `policy` (request -> a
`decision.RoutingDecision`), `rules`, `intents`, the learned routers in
`learned/` with their `features`, `data`, `training`, `calibrate` and
`quality_policy`, and the config section in `settings`.

Imports: `types`, `catalog`, `errors`, numpy/scipy. Routing makes no network
call of its own: the `llm` router and the embeddings featuriser are handed an
async function to call (the gateway gives the `llm` router its `ask`). It
never imports `dispatch`, `gateway` or `server`.
"""
