"""Trace readers: both published formats, malformed rows located exactly, slicing, speed-up."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tiergate.sim import (
    TraceError,
    TraceRequest,
    read_azure_csv,
    read_mooncake_jsonl,
    read_trace,
    scale_rate,
    slice_trace,
    speed_up,
    trace_format,
)

AZURE = (
    "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
    "2023-11-16 18:17:03.9799600,4808,10\r\n"
    "2023-11-16 18:17:04.0319600,3180,8\r\n"
    "2023-11-16 18:17:05.0000001,110,27"  # the published file ends without a newline
)
MOONCAKE = (
    '{"timestamp": 0, "input_length": 1024, "output_length": 6, "hash_ids": [0, 1]}\n'
    '{"timestamp": 40, "input_length": 700, "output_length": 3, "hash_ids": [0, 2]}\n'
    '{"timestamp": 1500, "input_length": 12, "output_length": 80, "hash_ids": []}\n'
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_azure_csv_arrivals_are_relative_to_the_first_row(tmp_path: Path) -> None:
    requests = list(read_azure_csv(write(tmp_path, "t.csv", AZURE)))
    assert [(r.prompt_tokens, r.output_tokens, r.prefix_ids) for r in requests] == [
        (4808, 10, ()),
        (3180, 8, ()),
        (110, 27, ()),
    ]
    assert requests[0].arrival_s == 0.0
    assert requests[1].arrival_s == pytest.approx(0.052, abs=1e-9)
    # All 7 decimals survive: subtracting whole seconds and fractions apart loses nothing.
    assert requests[2].arrival_s == pytest.approx(1.0200401, abs=1e-9)


def test_azure_csv_with_extra_columns_in_any_order_lf_and_a_bom(tmp_path: Path) -> None:
    text = (
        "\ufeffGeneratedTokens,Deployment,TIMESTAMP,ContextTokens\n"
        "5,eastus,2024-05-10 00:00:00.009930+00:00,100\n"
        "\n"
        "7,eastus,2024-05-10 00:00:02.5+00:00,200\n"
    )
    requests = list(read_trace(write(tmp_path, "week.txt", text)))
    assert requests == [TraceRequest(0.0, 100, 5), TraceRequest(pytest.approx(2.49007), 200, 7)]


def test_mooncake_jsonl_keeps_timestamps_and_prefix_blocks(tmp_path: Path) -> None:
    requests = list(read_mooncake_jsonl(write(tmp_path, "t.jsonl", MOONCAKE)))
    assert requests == [
        TraceRequest(0.0, 1024, 6, (0, 1)),
        TraceRequest(0.04, 700, 3, (0, 2)),
        TraceRequest(1.5, 12, 80, ()),
    ]


def test_hash_ids_are_optional(tmp_path: Path) -> None:
    path = write(tmp_path, "t.jsonl", '{"timestamp": 5, "input_length": 3, "output_length": 4}')
    assert list(read_trace(path)) == [TraceRequest(0.005, 3, 4)]


def test_the_format_is_chosen_by_content_then_extension(tmp_path: Path) -> None:
    assert trace_format(write(tmp_path, "trace.txt", AZURE)) == "azure-csv"
    assert trace_format(write(tmp_path, "trace.data", MOONCAKE)) == "mooncake-jsonl"
    assert trace_format(write(tmp_path, "odd.jsonl", "\n\n")) == "mooncake-jsonl"
    with pytest.raises(TraceError) as caught:
        trace_format(write(tmp_path, "odd.txt", "hello,world\n"))
    assert str(caught.value) == (
        f"{tmp_path / 'odd.txt'}: not a known trace format (its first line is 'hello,world'): "
        "expected an Azure LLM inference trace CSV (header TIMESTAMP,ContextTokens,"
        "GeneratedTokens) or a Mooncake JSONL trace (objects with timestamp, input_length, "
        "output_length, hash_ids)"
    )


def test_an_empty_csv_says_what_header_it_needs(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.csv", "\n")
    with pytest.raises(TraceError) as caught:
        list(read_trace(path))
    assert str(caught.value) == (
        f"{path}:1: empty file: expected a header with TIMESTAMP, ContextTokens, "
        "GeneratedTokens (the Azure LLM inference trace format)"
    )


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TraceError) as caught:
        list(read_trace(tmp_path / "nope.csv"))
    assert str(caught.value) == f"{tmp_path / 'nope.csv'}: no such file"


AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZURE_ROW = "2023-11-16 18:17:03.9799600,4808,10\n"
MOONCAKE_ROW = '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [0]}\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            AZURE_HEADER + AZURE_ROW + "2023-11-16 18:17:04,12,ten\n",
            "t.csv:3: GeneratedTokens: expected a whole number of tokens >= 0, got 'ten'",
        ),
        (
            AZURE_HEADER + AZURE_ROW + "2023-11-16 18:17:04,-12,1\n",
            "t.csv:3: ContextTokens: expected a whole number of tokens >= 0, got '-12'",
        ),
        (
            AZURE_HEADER + "16/11/2023 18:17,1,1\n",
            "t.csv:2: TIMESTAMP: expected a date and time such as '2023-11-16 18:17:03.9799600', "
            "got '16/11/2023 18:17'",
        ),
        (
            AZURE_HEADER + "2023-13-16 18:17:03.5,1,1\n",
            "t.csv:2: TIMESTAMP: not a valid date and time: '2023-13-16 18:17:03.5'",
        ),
        (
            AZURE_HEADER + AZURE_ROW + AZURE_ROW + "2023-11-16 18:17:04,12\n",
            "t.csv:4: expected 3 columns as in the header, got 2",
        ),
        (
            "TIMESTAMP,Context,GeneratedTokens\n" + AZURE_ROW,
            "t.csv:1: missing column ContextTokens: expected a header with TIMESTAMP, "
            "ContextTokens, GeneratedTokens (the Azure LLM inference trace format), found "
            "TIMESTAMP, Context, GeneratedTokens",
        ),
    ],
    ids=["words", "negative", "date-format", "bad-date", "short-row", "header"],
)
def test_malformed_azure_rows_name_file_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "t.csv", text)
    with pytest.raises(TraceError) as caught:
        list(read_trace(path))
    assert str(caught.value) == f"{tmp_path}/{message}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"timestamp": 10, "output_length": 5}', "input_length: missing"),
        ("not json", "not a JSON object: Expecting value"),
        ("[1, 2]", "expected a JSON object, got [1, 2]"),
        (
            '{"timestamp": -1, "input_length": 1, "output_length": 1}',
            "timestamp: expected milliseconds >= 0, got -1",
        ),
        (
            '{"timestamp": 1, "input_length": "12", "output_length": 1}',
            'input_length: expected a whole number of tokens >= 0, got "12"',
        ),
        (
            '{"timestamp": 1, "input_length": 12, "output_length": 1.5}',
            "output_length: expected a whole number of tokens >= 0, got 1.5",
        ),
        (
            '{"timestamp": 1, "input_length": 12, "output_length": 1, "hash_ids": [1, "a"]}',
            'hash_ids: expected a list of whole numbers, got [1, "a"]',
        ),
    ],
    ids=["missing", "not-json", "not-object", "negative-time", "string", "float", "hash-ids"],
)
def test_malformed_mooncake_rows_name_file_line_and_field(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write(tmp_path, "t.jsonl", MOONCAKE_ROW + "\n" + line + "\n")
    with pytest.raises(TraceError) as caught:
        list(read_trace(path))
    assert str(caught.value) == f"{path}:3: {message}"
    assert (caught.value.file, caught.value.line) == (str(path), 3)


def test_rows_before_a_malformed_one_are_yielded(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", AZURE_HEADER + AZURE_ROW + "x,1,1\n")
    requests = read_trace(path)
    assert next(requests) == TraceRequest(0.0, 4808, 10)
    with pytest.raises(TraceError):
        next(requests)


def requests_at(*arrivals: float) -> list[TraceRequest]:
    return [TraceRequest(at, 10, 1) for at in arrivals]


def test_slicing_rebases_arrivals_to_the_window_start() -> None:
    window = slice_trace(requests_at(0, 1, 2, 3, 4, 5), start_s=2, duration_s=2)
    assert [r.arrival_s for r in window] == [0, 1]


def test_slicing_by_count_and_with_defaults() -> None:
    assert [r.arrival_s for r in slice_trace(requests_at(0, 1, 2), limit=2)] == [0, 1]
    assert [r.arrival_s for r in slice_trace(requests_at(0, 1, 2))] == [0, 1, 2]
    assert list(slice_trace(requests_at(0, 1, 2), limit=0)) == []


def test_slicing_stops_reading_at_the_window_end() -> None:
    def source() -> Iterator[TraceRequest]:
        yield from requests_at(0, 1, 2)
        raise AssertionError("read past the window")

    assert len(list(slice_trace(source(), duration_s=2))) == 2


def test_speed_up_divides_arrivals_and_keeps_the_rest() -> None:
    compressed = list(speed_up([TraceRequest(10.0, 5, 6, (1,))], 4))
    assert compressed == [TraceRequest(2.5, 5, 6, (1,))]


def test_scale_rate_copies_each_request_within_its_spread_and_keeps_arrival_order() -> None:
    trace = [TraceRequest(float(n), 100 + n, 10 + n, (n,)) for n in range(50)]
    scaled = list(scale_rate(trace, 3, seed=7, spread_s=0.5))
    assert len(scaled) == 3 * len(trace)
    assert all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(scaled))
    for original in trace:
        copies = [r for r in scaled if r.prefix_ids == original.prefix_ids]
        assert len(copies) == 3
        assert original in copies  # the original keeps its arrival
        assert all(r.prompt_tokens == original.prompt_tokens for r in copies)
        assert all(r.output_tokens == original.output_tokens for r in copies)
        assert all(0 <= r.arrival_s - original.arrival_s <= 0.5 for r in copies)
    assert scaled == list(scale_rate(trace, 3, seed=7, spread_s=0.5))  # seeded


def test_scale_rate_by_a_fraction_keeps_that_share_on_average() -> None:
    trace = [TraceRequest(n / 10, 1, 1) for n in range(4000)]
    assert 0.6 * 4000 - 150 < len(list(scale_rate(trace, 0.6))) < 0.6 * 4000 + 150
    assert 2.5 * 4000 - 150 < len(list(scale_rate(trace, 2.5))) < 2.5 * 4000 + 150
    assert list(scale_rate(trace, 1)) == trace


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: list(slice_trace([], start_s=-1)), "start_s must be >= 0, got -1"),
        (lambda: list(slice_trace([], duration_s=0)), "duration_s must be > 0, got 0"),
        (lambda: list(slice_trace([], limit=-2)), "limit must be >= 0, got -2"),
        (lambda: list(speed_up([], 0)), "speedup must be > 0, got 0"),
        (lambda: list(scale_rate([], 0)), "factor must be > 0, got 0"),
        (lambda: list(scale_rate([], 2, spread_s=-1)), "spread_s must be >= 0, got -1"),
    ],
)
def test_slicing_and_speed_up_reject_bad_arguments(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message + "$"):
        call()


def test_the_copied_azure_trace_is_whole(examples: Path) -> None:
    path = examples / "traces" / "AzureLLMInferenceTrace_code.csv"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6"
    requests = list(read_trace(path))
    assert len(requests) == 8819
    assert requests[0] == TraceRequest(0.0, 4808, 10)
    assert requests[-1].prompt_tokens == 549
    assert requests[-1].output_tokens == 173
    # About 58 minutes, in arrival order.
    assert 57 * 60 < requests[-1].arrival_s < 58 * 60
    assert all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(requests))


def test_the_mooncake_slice_reads_whole(test_data: Path) -> None:
    requests = list(read_trace(test_data / "traces" / "mooncake_synthetic_trace_head200.jsonl"))
    assert len(requests) == 200
    assert requests[0].prompt_tokens == 40160
    assert requests[0].prefix_ids[:3] == (0, 1, 2)
    assert requests[2].arrival_s == 0.04
