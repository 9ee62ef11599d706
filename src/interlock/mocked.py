"""Whether an attempt answers with `mock_response` instead of calling its
provider (`adapters.mock` makes the answer). Apart from the adapter, which
needs the HTTP stack, so that the budgets and the ledger's recorder, which
charge a mocked answer nothing, can ask without loading it.

Imports: `catalog`, `types`.
"""

from __future__ import annotations

from interlock.catalog import Deployment
from interlock.types import ChatRequest


def mock_text(request: ChatRequest, deployment: Deployment) -> str | None:
    """The text this attempt answers with instead of calling the provider, or None.

    The request's own `mock_response` wins over the deployment's (a string: the
    config schema checks `litellm_params.mock_response`). A request with a mock
    failure still owed (`mock_failures`, `mock_timeout`) is the mock adapter's too."""
    if request.mock_failures or request.mock_timeout:
        return request.mock_response or deployment.extra.get("mock_response") or ""
    if request.mock_response is not None:
        return request.mock_response
    configured: str | None = deployment.extra.get("mock_response")
    return configured
