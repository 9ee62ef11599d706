"""The `router_settings` section of the config: retries, fallbacks, cooldowns.

A leaf schema module (pydantic only) so that `config` can compose it without
importing the dispatcher.

Imports: pydantic, the standard library, `masking`, `ignored_keys`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from interlock.ignored_keys import AcceptsIgnoredKeys
from interlock.masking import MaskedModel


class GroupAlias(BaseModel):
    """One `model_group_alias` entry in LiteLLM's long form."""

    model_config = ConfigDict(extra="forbid")

    model: str
    hidden: bool = False  # routable, but not listed by /v1/models


class RetryPolicySettings(AcceptsIgnoredKeys):
    """Retries on the same deployment, per error class (None: use num_retries)."""

    model_config = ConfigDict(extra="forbid")
    # LiteLLM's names for errors Interlock never retries on the same deployment
    # (it tries another one, or the content-policy fallbacks), accepted with a warning.
    IGNORED: ClassVar[frozenset[str]] = frozenset({
        "BadRequestErrorRetries", "AuthenticationErrorRetries",
        "ContentPolicyViolationErrorRetries"})

    RateLimitErrorRetries: int | None = Field(default=None, ge=0)
    OverloadedErrorRetries: int | None = Field(default=None, ge=0)
    TimeoutErrorRetries: int | None = Field(default=None, ge=0)
    InternalServerErrorRetries: int | None = Field(default=None, ge=0)
    ConnectionErrorRetries: int | None = Field(default=None, ge=0)


class AllowedFailsPolicySettings(AcceptsIgnoredKeys):
    """LiteLLM's `allowed_fails_policy`: the failures a deployment may have within
    `allowed_fails_window` before it cools down, per error class (None: use
    `allowed_fails`). A limit set for authentication failures replaces their
    cooldown at the first one."""

    model_config = ConfigDict(extra="forbid")
    # LiteLLM's names for errors that never cool a deployment down here (the
    # request was at fault, not the deployment), accepted with a warning.
    IGNORED: ClassVar[frozenset[str]] = frozenset({
        "BadRequestErrorAllowedFails", "ContentPolicyViolationErrorAllowedFails"})

    RateLimitErrorAllowedFails: int | None = Field(default=None, ge=0)
    OverloadedErrorAllowedFails: int | None = Field(default=None, ge=0)
    TimeoutErrorAllowedFails: int | None = Field(default=None, ge=0)
    InternalServerErrorAllowedFails: int | None = Field(default=None, ge=0)
    ConnectionErrorAllowedFails: int | None = Field(default=None, ge=0)
    AuthenticationErrorAllowedFails: int | None = Field(default=None, ge=0)


# LiteLLM's names for the strategies Interlock has under shorter ones.
_LITELLM_STRATEGIES = {"latency-based-routing": "latency-based",
                       "usage-based-routing": "usage-based",
                       "usage-based-routing-v2": "usage-based"}


class RouterSettings(AcceptsIgnoredKeys, MaskedModel):
    model_config = ConfigDict(extra="forbid")
    SECRET_FIELDS = frozenset({"redis_password"})
    URL_FIELDS = frozenset({"redis_url"})
    # LiteLLM Router arguments accepted so that ported code and config files load;
    # loading warns that each has no effect here.
    IGNORED: ClassVar[frozenset[str]] = frozenset({
        "set_verbose", "debug_level", "client_ttl", "polling_interval",
        "routing_strategy_args", "alerting_config", "retry_after", "cache_responses",
        "cache_kwargs", "caching_groups",
    })

    num_retries: int = Field(default=2, ge=0, le=20)
    timeout: float | None = Field(default=600.0, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    first_token_timeout: float | None = Field(default=None, gt=0)
    stream_idle_timeout: float | None = Field(default=None, gt=0)
    retry_policy: RetryPolicySettings | None = None
    # LiteLLM's per-group retry policies, used instead of retry_policy in those groups.
    model_group_retry_policy: dict[str, RetryPolicySettings] = Field(default_factory=dict)
    retry_after_cap: float = Field(default=60.0, ge=0)
    # The most an upstream's Retry-After counts for: the cooldown it opens and the
    # Retry-After the caller is given. A broken or hostile header (99999999999)
    # must not take a deployment out for a day; past the cap a probe asks again.
    max_upstream_retry_after: float = Field(default=300.0, ge=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    # [{"group": ["fallback-group", ...]}] as LiteLLM writes it, or {"group": [...]}.
    fallbacks: list[dict[str, list[str]]] | dict[str, list[str]] = Field(default_factory=list)
    context_window_fallbacks: list[dict[str, list[str]]] | dict[str, list[str]] = Field(
        default_factory=list)
    content_policy_fallbacks: list[dict[str, list[str]]] | dict[str, list[str]] = Field(
        default_factory=list)
    default_fallbacks: list[str] = Field(default_factory=list)
    max_fallbacks: int = Field(default=5, ge=0)
    cooldown_time: float = Field(default=5.0, ge=0)
    # LiteLLM's switch: failures never cool a deployment down (retries still apply).
    disable_cooldowns: bool = False
    # LiteLLM's: a request with tags goes only to deployments sharing one; one
    # without, to deployments tagged "default" when the group has any.
    enable_tag_filtering: bool = False
    allowed_fails: int = Field(default=3, ge=0)
    allowed_fails_window: float = Field(default=60.0, gt=0)
    allowed_fails_policy: AllowedFailsPolicySettings | None = None
    # LiteLLM's: each deployment's cap on calls in flight unless it sets its own
    # max_parallel_requests (None: no cap).
    default_max_parallel_requests: int | None = Field(default=None, ge=1)
    auth_cooldown_time: float = Field(default=300.0, ge=0)
    enable_pre_call_checks: bool = False
    pre_call_safety_margin: float = Field(default=0.05, ge=0, lt=1)
    routing_strategy: Literal["simple-shuffle", "latency-based", "least-busy",
                              "usage-based"] = "simple-shuffle"
    stream_continuation: bool = False
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int | None = None
    redis_password: str | None = None
    # Keys live under this prefix, so several routers can share one Redis.
    redis_prefix: str = "interlock"
    # Per-operation Redis timeout; past it the process's own memory takes over.
    redis_timeout: float = Field(default=0.5, gt=0)
    # How often to try Redis again while it is down.
    redis_retry_interval: float = Field(default=1.0, gt=0)
    # How long a breaker state read from Redis is trusted locally.
    redis_cache_ttl: float = Field(default=0.05, ge=0, le=1.0)
    wait_for_recovery: bool = True
    # The longest a request waits for a cooling deployment to come back; a longer
    # cooldown fails it at once (NoDeploymentAvailable with Retry-After, or the
    # provider's own error), so no caller sits silently through minutes of one.
    max_cooldown_wait: float = Field(default=10.0, ge=0)
    # How long a half-open probe may hold its lease before another caller may probe.
    probe_timeout: float = Field(default=30.0, gt=0)
    # Weight of the newest observation in the latency and error EWMAs.
    latency_ewma_alpha: float = Field(default=0.3, gt=0, le=1)
    # The upstream connection pool every deployment shares (adapters.http): at
    # most this many connections in all, and at most the second to one upstream
    # host, so that one hanging provider (or one client's flood to it) cannot
    # leave the others without a connection. The defaults are adapters.http's
    # (not imported: this schema stays a leaf, free of aiohttp; a test pins them).
    max_upstream_connections: int = Field(default=1000, ge=1)
    max_upstream_connections_per_host: int = Field(default=1000, ge=1)

    # LiteLLM's aliases: a request for the key goes to the named group.
    model_group_alias: dict[str, str | GroupAlias] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _a_host_s_share_within_the_pool(self) -> RouterSettings:
        if self.max_upstream_connections_per_host > self.max_upstream_connections:
            raise ValueError(
                f"max_upstream_connections_per_host ({self.max_upstream_connections_per_host})"
                f" is more than max_upstream_connections ({self.max_upstream_connections}): "
                "one upstream host could take the whole pool; lower it or raise the total")
        return self

    @field_validator("routing_strategy", mode="before")
    @classmethod
    def _litellm_strategy_names(cls, value: Any) -> Any:
        return _LITELLM_STRATEGIES.get(value, value) if isinstance(value, str) else value

    def request_timeout(self, *, stream: bool) -> float | None:
        """The deadline of one request: `stream_timeout` for streams when set, else
        `timeout` (None: no deadline)."""
        return (self.stream_timeout or self.timeout) if stream else self.timeout

    def group_aliases(self) -> dict[str, GroupAlias]:
        """`model_group_alias` with every entry in the long form."""
        return {name: target if isinstance(target, GroupAlias) else GroupAlias(model=target)
                for name, target in self.model_group_alias.items()}

    def redis_connection_url(self) -> str | None:
        """redis_url, else one built from LiteLLM's redis_host/port/password, for
        the parts (budgets) that connect by URL only."""
        if self.redis_url or not self.redis_host:
            return self.redis_url
        password = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{password}{self.redis_host}:{self.redis_port or 6379}/0"
