"""Schemathesis against the gateway's own OpenAPI document, served by a live ``tiergate serve``.

For every operation ``GET /openapi.json`` lists, schemathesis generates requests that fit the
document (positive) and requests that break it (negative), sends them with the campaign's
virtual key (the master key on ``/admin/``), and checks that the gateway never answers 5xx of
its own (``not_a_server_error``, less the 502s of a cascade that ran out, which the fleet's
``lonely`` tier gives) and that every answer has a documented status, a documented content type and a body
matching its schema. As in the other campaigns, the distinct failures are reported together.

(Schemathesis' pytest plugin, ``schemathesis.pytest.from_fixture``, does not run under the
pinned pytest 9: it sets ``Function._nodeid``, which pytest 9 no longer has; its strategies are
used with ``@given`` instead.)
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.campaign.conftest import LiveGateway, not_its_own_5xx


def no_5xx_of_its_own(ctx: Any, response: Any, case: Any) -> None:
    """schemathesis' ``not_a_server_error``, less the 5xx tiergate answers on purpose (a cascade
    that ran out: 502/503/504 with ``upstream_error`` and the attempts)."""
    status = response.status_code
    if status >= 500 and (status == 500 or not_its_own_5xx(status, response.content, case.path)):
        not_a_server_error(ctx, response, case)


CHECKS = [
    no_5xx_of_its_own,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 120  # per generation mode, over all operations
# A failed check raises FailureGroup, a BaseExceptionGroup: ``except Exception`` misses it.


def _run(live_gateway: LiveGateway, mode: GenerationMode) -> dict[str, str]:
    schema = schemathesis.openapi.from_url(live_gateway.url + "/openapi.json")
    failures: dict[str, str] = {}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],  # every example is checked: nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    @given(schema.as_strategy(mode))
    def campaign(case: Any) -> None:
        token = live_gateway.master if case.path.startswith("/admin/") else live_gateway.key
        try:
            case.call_and_validate(
                base_url=live_gateway.url,
                headers={"Authorization": f"Bearer {token}"},
                checks=CHECKS,
                timeout=10,
            )
        except FailureGroup as group:
            titles = ", ".join(sorted({failure.title for failure in group.exceptions}))
            failures.setdefault(f"{case.method} {case.path}: {titles}", str(group)[:1500])
        except Exception as exc:  # noqa: BLE001 - a transport error is collected like a check
            failures.setdefault(f"{case.method} {case.path}: {type(exc).__name__}", str(exc))

    campaign()
    return failures


def test_the_gateway_answers_as_its_openapi_document_says(live_gateway: LiveGateway) -> None:
    failures = {
        f"[{mode.value}] {kind}": detail
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for kind, detail in _run(live_gateway, mode).items()
    }
    report = "\n\n".join(f"{kind}\n{detail}" for kind, detail in failures.items())
    assert not failures, f"{len(failures)} distinct failures:\n\n{report}"
