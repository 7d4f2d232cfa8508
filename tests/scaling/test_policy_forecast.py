"""The short-term rate forecast behind tiergate's capacity planning."""

from __future__ import annotations

import pytest

from tiergate.scaling.policy import Forecast, forecast


def fc(samples: list[tuple[float, float]], now: float = 60.0, **kwargs: float) -> Forecast | None:
    settings = {
        "horizon_s": 300.0,
        "stable_window_s": 60.0,
        "panic_window_s": 6.0,
        "max_growth": 10.0,
    }
    settings.update(kwargs)
    return forecast(samples, now, **settings)


CASES = [
    # id, samples, expected (level, slope, value)
    ("flat: the level", [(15, 5.0), (30, 5.0), (45, 5.0), (60, 5.0)], (5.0, 0.0, 5.0)),
    (
        "rising: the fitted line at now + horizon",
        [(15, 2.0), (30, 3.0), (45, 4.0), (60, 5.0)],
        (5.0, 1 / 15, 25.0),
    ),
    (
        "falling: never projected down",
        [(15, 5.0), (30, 4.0), (45, 3.0), (60, 2.0)],
        (2.0, -1 / 15, 2.0),
    ),
    ("two samples: no trend", [(45, 2.0), (60, 4.0)], (4.0, 0.0, 4.0)),
    ("span under half the window: no trend", [(50, 2.0), (55, 3.0), (60, 4.0)], (3.5, 0.0, 3.5)),
    (
        "level: mean over the panic window",
        [(15, 2.0), (30, 2.0), (55, 20.0), (58, 30.0)],
        (25.0, None, None),
    ),
    (
        "samples out of the window ignored",
        [(-100, 50.0), (0, 50.0), (30, 5.0), (45, 5.0), (60, 5.0)],
        (5.0, 0.0, 5.0),
    ),
]


@pytest.mark.parametrize(("samples", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_forecast(
    samples: list[tuple[float, float]], expected: tuple[float, float | None, float | None]
) -> None:
    result = fc(samples)
    assert result is not None
    level, slope, value = expected
    assert result.level == pytest.approx(level)
    if slope is not None:
        assert result.slope == pytest.approx(slope)
    if value is not None:
        assert result.value == pytest.approx(value)
        assert result.growth == pytest.approx(value / level)


def test_growth_is_capped() -> None:
    result = fc([(15, 2.0), (30, 3.0), (45, 4.0), (60, 5.0)], max_growth=2.0)
    assert result is not None
    assert result.value == pytest.approx(10.0)


def test_no_sample_no_forecast() -> None:
    assert fc([]) is None
    assert fc([(-10, 1.0)]) is None


def test_zero_level_has_unit_growth() -> None:
    result = fc([(60, 0.0)])
    assert result is not None
    assert result.growth == 1.0
