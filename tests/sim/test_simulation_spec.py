"""The spec's simulation section: defaults with their sources, the workload's profile."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tiergate.sim.distributions import Distribution
from tiergate.spec.simulation import Simulation


def test_an_empty_section_has_the_documented_defaults() -> None:
    section = Simulation.model_validate({})
    assert section.slo.ttft_p95_s == 2.0  # the seed's TTFT p95 <= 2 s
    assert section.slo.attainment_target == 0.95
    assert section.slo.itl_p95_s is None
    assert section.managed == {}
    assert section.faults == []
    assert section.workload.profile is None
    assert section.workload.profile_file is None


def test_a_full_section_reads_in_camel_case() -> None:
    section = Simulation.model_validate(
        {
            "managed": {
                "bedrock": {
                    "ttftS": {"lognormal": {"median": 0.6, "p95": 1.5}},
                    "outputTokensPerS": {"uniform": [40, 80]},
                    "quota": {"requestsPerMinute": 100, "tokensPerMinute": 200_000},
                    "outputBurndown": 5,
                    "priceSource": "alternate",
                }
            },
            "workload": {"profile": [1] * 168},
            "slo": {"ttftP95S": 1.5, "itlP95S": 0.05, "attainmentTarget": 0.99},
        }
    )
    bedrock = section.managed["bedrock"]
    assert bedrock.ttft_s == Distribution.lognormal(0.6, 1.5)
    assert bedrock.output_tokens_per_s == Distribution.uniform(40, 80)
    assert bedrock.quota.tokens_per_minute == 200_000
    assert bedrock.price_source == "alternate"
    assert section.slo.itl_p95_s == 0.05


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        ({"profile": [1] * 167}, "expected 168 values"),
        ({"profile": [0] * 168}, "a profile of zeros has no traffic"),
        ({"profile": [1] * 168, "profileFile": "week.csv"}, "not both"),
    ],
)
def test_bad_profiles_are_refused(workload: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Simulation.model_validate({"workload": workload})
    assert caught.value.errors()[0]["loc"][0] == "workload"
    assert message in str(caught.value)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="quotaa"):
        Simulation.model_validate({"managed": {"bedrock": {"quotaa": {}}}})
