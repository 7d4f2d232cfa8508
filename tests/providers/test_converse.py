"""OpenAI ↔ Converse translation, case by case: what Bedrock requires and what clients send."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from tiergate.errors import TranslationError
from tiergate.providers import Usage
from tiergate.providers.converse import from_converse, to_converse, tool_use_id
from tiergate.providers.converse_stream import ChunkWriter, StreamProtocolError

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages), **fields}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def call(call_id: str, name: str = "get_weather", arguments: str = '{"city":"Paris"}') -> Any:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_system_messages_go_to_system_in_order_wherever_they_are() -> None:
    body = chat(
        {"role": "system", "content": "first"},
        user("hi"),
        {"role": "developer", "content": [{"type": "text", "text": "second"}]},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "third"},
        user("again"),
    )
    converse = to_converse(body)
    assert converse["system"] == [{"text": "first"}, {"text": "second"}, {"text": "third"}]
    assert [m["role"] for m in converse["messages"]] == ["user", "assistant", "user"]


def test_consecutive_same_role_messages_are_merged_in_order() -> None:
    converse = to_converse(chat(user("a"), user("b"), {"role": "assistant", "content": "c"}))
    assert converse["messages"] == [
        {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
        {"role": "assistant", "content": [{"text": "c"}]},
    ]


def test_blank_text_is_dropped_and_an_emptied_message_disappears() -> None:
    converse = to_converse(
        chat(user("a"), {"role": "assistant", "content": "  "}, user(""), user("b"))
    )
    assert converse["messages"] == [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]


def test_tool_round_trip_history_becomes_tool_use_and_tool_results() -> None:
    body = chat(
        user("weather in Paris and Oslo?"),
        {"role": "assistant", "content": None, "tool_calls": [call("call_1"), call("call_2")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "9C"}]},
        user("thanks"),
        tools=[WEATHER_TOOL],
    )
    messages = to_converse(body)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Paris"}}},
        ],
    }
    # Both results and the next user text form one user turn, results first, no status.
    assert messages[2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "9C"}]}},
            {"text": "thanks"},
        ],
    }


def test_tool_call_ids_outside_converse_alphabet_map_the_same_everywhere() -> None:
    odd = "call/with spaces+and-a-very-long-suffix-that-goes-beyond-sixty-four-characters"
    body = chat(
        user("go"),
        {"role": "assistant", "tool_calls": [call(odd)]},
        {"role": "tool", "tool_call_id": odd, "content": "ok"},
        tools=[WEATHER_TOOL],
    )
    messages = to_converse(body)["messages"]
    used = messages[1]["content"][0]["toolUse"]["toolUseId"]
    answered = messages[2]["content"][0]["toolResult"]["toolUseId"]
    assert used == answered == tool_use_id(odd)
    assert used != odd
    assert len(used) <= 64
    assert tool_use_id("call_abc.1:2-3") == "call_abc.1:2-3"


def test_base64_image_parts_become_image_blocks() -> None:
    body = chat(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}},
            ],
        }
    )
    content = to_converse(body)["messages"][0]["content"]
    assert content == [
        {"text": "what is this?"},
        {"image": {"format": "jpeg", "source": {"bytes": PNG}}},
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/cat.png", "base64 data URL"),
        (f"data:image/bmp;base64,{PNG}", "image type 'image/bmp' is not supported"),
    ],
)
def test_images_bedrock_cannot_take_are_refused_naming_the_part(url: str, expected: str) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    with pytest.raises(TranslationError, match=expected) as caught:
        to_converse(chat({"role": "user", "content": [part]}))
    assert caught.value.param == "messages[0].content[0].image_url"


def test_audio_parts_are_refused_with_their_type() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(TranslationError, match="'input_audio'"):
        to_converse(chat({"role": "user", "content": [part]}))


@pytest.mark.parametrize(
    ("fields", "cap", "expected"),
    [
        ({"max_tokens": 9000}, 4096, 4096),
        ({"max_tokens": 100}, 4096, 100),
        ({"max_completion_tokens": 50, "max_tokens": 900}, 4096, 50),
        ({}, 4096, 4096),
        ({"max_tokens": 9000}, None, 9000),
    ],
)
def test_max_tokens_is_capped_by_the_tier(
    fields: dict[str, int], cap: int | None, expected: int
) -> None:
    config = to_converse(chat(user("x"), **fields), max_tokens_cap=cap)["inferenceConfig"]
    assert config["maxTokens"] == expected


def test_no_max_tokens_and_no_cap_sends_no_inference_config() -> None:
    assert "inferenceConfig" not in to_converse(chat(user("x")))


def test_sampling_parameters_map_and_out_of_range_values_are_clamped() -> None:
    config = to_converse(chat(user("x"), temperature=1.7, top_p=0.9, stop=["END", ""]))[
        "inferenceConfig"
    ]
    assert config == {"temperature": 1.0, "topP": 0.9, "stopSequences": ["END"]}
    assert to_converse(chat(user("x"), stop="###"))["inferenceConfig"]["stopSequences"] == ["###"]


def test_unsupported_parameters_are_ignored_with_a_debug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tiergate.providers.converse"):
        converse = to_converse(chat(user("x"), n=2, seed=7, logprobs=True, presence_penalty=1))
    assert set(converse) == {"messages"}
    assert "logprobs, model" not in caplog.text
    assert "logprobs, n, presence_penalty, seed: ignored" in caplog.text


def test_tools_are_always_forwarded_and_an_empty_description_is_left_out() -> None:
    tool = {"type": "function", "function": {"name": "lookup", "description": ""}}
    config = to_converse(chat(user("x"), tools=[WEATHER_TOOL, tool]))["toolConfig"]
    assert config == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Current weather of a city",
                    "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},
                }
            },
            {
                "toolSpec": {
                    "name": "lookup",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            },
        ]
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"tool": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_maps_to_converse(choice: Any, expected: dict[str, Any]) -> None:
    config = to_converse(chat(user("x"), tools=[WEATHER_TOOL], tool_choice=choice))["toolConfig"]
    assert config["toolChoice"] == expected


def test_tool_choice_none_sends_no_tool_config() -> None:
    assert "toolConfig" not in to_converse(
        chat(user("x"), tools=[WEATHER_TOOL], tool_choice="none")
    )


def test_tool_blocks_always_come_with_a_tool_config() -> None:
    history = (
        user("go"),
        {"role": "assistant", "tool_calls": [call("call_1")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    )
    # tool_choice none with tool blocks: the tools still go (Converse requires them).
    kept = to_converse(chat(*history, tools=[WEATHER_TOOL], tool_choice="none"))["toolConfig"]
    assert kept["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert "toolChoice" not in kept
    # No tools at all: the tools used in the conversation are declared.
    declared = to_converse(chat(*history))["toolConfig"]
    assert declared == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            }
        ]
    }


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (chat({"role": "function", "content": "x"}), "messages[0].role", "not supported"),
        (chat(user("x"), max_tokens=0), "max_tokens", "at least 1"),
        (chat(user("x"), temperature="hot"), "temperature", "must be a number"),
        (chat(user("x"), stop=[1]), "stop", "strings"),
        (
            chat(user("x"), tools=[{"type": "function", "function": {"name": "bad name"}}]),
            "tools[0].function.name",
            "letters, digits",
        ),
        (
            chat(
                user("x"),
                tools=[WEATHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "nope"}},
            ),
            "tool_choice",
            "not in 'tools'",
        ),
        (
            chat(user("x"), {"role": "assistant", "tool_calls": [call("c", arguments="{oops")]}),
            "messages[1].tool_calls[0].function.arguments",
            "not valid JSON",
        ),
        (
            chat(user("x"), {"role": "assistant", "tool_calls": [call("c", arguments="[1]")]}),
            "messages[1].tool_calls[0].function.arguments",
            "JSON object",
        ),
        (chat({"role": "tool", "content": "x"}), "messages[0].tool_call_id", "non-empty"),
        (chat({"role": "system", "content": "only a system prompt"}), "messages", "no user"),
    ],
)
def test_requests_converse_cannot_express_are_refused_naming_the_field(
    body: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(TranslationError, match=message) as caught:
        to_converse(body)
    assert caught.value.param == param


def converse_response(content: list[dict[str, Any]], stop: str, **usage: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15, **usage},
        "metrics": {"latencyMs": 30},
    }


def test_a_response_with_text_reasoning_and_tool_calls() -> None:
    response = converse_response(
        [
            {"reasoningContent": {"reasoningText": {"text": "think", "signature": "sig"}}},
            {"text": "Checking."},
            {
                "toolUse": {
                    "toolUseId": "tooluse_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                }
            },
        ],
        "tool_use",
    )
    completion = from_converse(response, model="m", completion_id="chatcmpl-x", created=7)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "Checking.",
        "reasoning_content": "think",
        "tool_calls": [
            {
                "id": "tooluse_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    assert completion["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert (completion["id"], completion["object"], completion["model"]) == (
        "chatcmpl-x",
        "chat.completion",
        "m",
    )


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_model_output", "stop"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop: str, finish: str) -> None:
    completion = from_converse(
        converse_response([{"text": "x"}], stop), model="m", completion_id="c", created=0
    )
    assert completion["choices"][0]["finish_reason"] == finish


def test_cache_tokens_are_part_of_the_prompt_and_counted_apart() -> None:
    response = converse_response(
        [{"text": "x"}], "end_turn", cacheReadInputTokens=1000, cacheWriteInputTokens=200
    )
    usage = from_converse(response, model="m", completion_id="c", created=0)["usage"]
    assert usage == {
        "prompt_tokens": 1210,
        "completion_tokens": 5,
        "total_tokens": 1215,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
    }
    assert Usage.from_openai(usage) == Usage(1210, 5, cache_read=1000, cache_write=200)


def test_a_tool_input_delta_for_a_block_never_started_is_a_protocol_error() -> None:
    writer = ChunkWriter(model="m", completion_id="c", created=0)
    writer.event("messageStart", {"role": "assistant"})
    delta = {"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{"}}}
    with pytest.raises(StreamProtocolError, match="content block 3"):
        writer.event("contentBlockDelta", delta)


def test_stream_chunks_are_openai_chunks() -> None:
    writer = ChunkWriter(model="m", completion_id="chatcmpl-s", created=5)
    role = orjson.loads(writer.event("messageStart", {"role": "assistant"})[6:])
    assert role == {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    assert not writer.content_started
    text = writer.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}})
    assert orjson.loads(text[6:])["choices"][0]["delta"] == {"content": "Hi"}
    assert writer.content_started
    assert writer.event("contentBlockStop", {"contentBlockIndex": 0}) == b""
    usage = writer.event(
        "metadata", {"usage": {"inputTokens": 2, "outputTokens": 1, "totalTokens": 3}}
    )
    assert orjson.loads(usage[6:])["choices"] == []
    assert writer.usage == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
