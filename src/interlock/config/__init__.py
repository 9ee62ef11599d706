"""Config: a YAML file or dicts -> `InterlockConfig` -> `Catalog`.

The file takes the shape of a LiteLLM proxy config (`model_list` entries with
`litellm_params`, `router_settings`, `litellm_settings`, `general_settings`,
`environment_variables`) plus Interlock's own sections (`routing`, `prices`,
`budgets`, `ledger`), so a LiteLLM user's file loads unchanged.

    config = load_config("examples/claude-gemini.yaml")   # or a dict
    for line in config.warnings: ...                      # unavailable deployments, ignored keys
    catalog = build_catalog(config)

A bad file raises `ConfigError` listing every problem with its path, value and
what was expected. A missing key never fails a load: the deployment is built
unavailable, with a reason naming the variable. No repr, warning or error
carries a key's value.

Modules: `schema` (the models), `loading` (load_config, Router kwargs),
`report` (error lines, did-you-mean), `checks` (across sections), `build`
(key resolution and the catalog).

Imports: `config.*` only.
"""

from interlock.config.build import build_catalog
from interlock.config.loading import config_from_router_kwargs, load_config
from interlock.config.schema import (
    DeploymentParams,
    GeneralSettings,
    InterlockConfig,
    LiteLLMSettings,
    ModelEntry,
    ModelInfo,
)

__all__ = [
    "DeploymentParams",
    "GeneralSettings",
    "InterlockConfig",
    "LiteLLMSettings",
    "ModelEntry",
    "ModelInfo",
    "build_catalog",
    "config_from_router_kwargs",
    "load_config",
]
