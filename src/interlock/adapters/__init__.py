"""Provider adapters: one module per provider behind the `Adapter` protocol."""
