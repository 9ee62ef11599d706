"""Offline evaluation of routers on outcome data: loaders (`datasets`), k-fold
cross-validation (`crossval`), RouteLLM's metrics (`metrics`), the cost axis
and quality-cost curves (`cost_axis`, `frontier`), the run (`runner`) and its
outputs (`report`, `plots`). Behind `interlock eval`.

Imports: `routing` and `costs` (prices), numpy, matplotlib lazily; never
`server`, `gateway` or `dispatch`: evaluation makes no call to any model.
"""
