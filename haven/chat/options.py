"""Request → engine sampling: grammar selection, tool-choice planning, limits and the sampling knobs.

:class:`ToolPlan` decides what tools mean for one request: ``tool_choice`` "required" or a named
function constrains sampling to a call's JSON shape (so even a model that would not call a tool does);
"auto" puts the tools in the template and parses calls from the text in the family's format; "none"
leaves them out. :func:`output_constraint` picks the grammar: the forced call's schema, the client's
JSON schema (checked first), any JSON object, or GBNF text. :func:`sampling_params` builds the engine's
:class:`~haven.engine.protocol.SamplingParams`, leaving unset knobs at the engine's defaults
(llama.cpp's: temperature 0.8, top_p 0.95), not OpenAI's 1.0; ``typical_p``, ``mirostat`` (with
``mirostat_tau``/``mirostat_eta``) and ``min_tokens`` reach the engine's sampler under llama.cpp's meaning,
whichever API spelled them (the engine checks the ranges: a 400 naming the field).

It knows nothing about HTTP; grammar *building* lives in :mod:`haven.engine.grammar`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from haven.chat.backend import (
    Grammar,
    JsonObject,
    JsonSchema,
    Limits,
    Mirostat,
    OutputFormat,
    PlainText,
    Sampling,
    Tool,
)
from haven.chat.prompt import template_tools
from haven.engine.grammar import check_json_schema_depth
from haven.engine.protocol import SamplingParams
from haven.errors import InvalidRequestError

_KNOBS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
)


SAMPLING_KNOBS = (*_KNOBS, "typical_p")
"""The knobs both APIs spell alike (OpenAI's extensions and Ollama's ``options``)."""


def sampling_from(source: Any, **overrides: Any) -> Sampling:
    """:class:`Sampling` from a request model carrying the knobs under their common names (plus
    ``mirostat``/``mirostat_tau``/``mirostat_eta``); ``overrides`` win (logit_bias, ignore_eos, aliases)."""
    values = {name: getattr(source, name) for name in SAMPLING_KNOBS}
    mode = source.mirostat
    if mode in (1, 2):
        # ``is None``, not ``or``: tau 0 and eta 0 are values a client may mean.
        tau, eta = source.mirostat_tau, source.mirostat_eta
        values["mirostat"] = Mirostat(mode, 5.0 if tau is None else tau, 0.1 if eta is None else eta)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Sampling(**values)


def check_schema(schema: Mapping[str, Any], param: str) -> None:
    """A 400 naming ``param`` when ``schema`` is not a JSON schema at all.

    The depth and size bounds run first: they refuse a schema nested 150 deep or with thousands of values in
    milliseconds, before the meta-schema check (recursive, and slow on huge inputs) ever sees it."""
    check_json_schema_depth(schema, param=param)
    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(f"{param} is not a valid JSON schema: {exc.message}.", param=param) from None
    except (RecursionError, OverflowError, re.error) as exc:
        raise InvalidRequestError(f"{param} cannot be checked ({type(exc).__name__}).", param=param) from None


@dataclass(frozen=True)
class ToolPlan:
    template_tools: list[dict[str, Any]] | None
    """What the template is shown (None: no tools)."""
    forced: list[dict[str, Any]] | None
    """The output must be a call of one of these (a grammar enforces it)."""

    @property
    def parse_calls(self) -> bool:
        return self.template_tools is not None and self.forced is None


def plan_tools(tools: Sequence[Tool], choice: str) -> ToolPlan:
    for i, tool in enumerate(tools):
        if tool.parameters is not None:
            check_schema(tool.parameters, f"tools[{i}].function.parameters")
    rendered = template_tools(tools)
    if not rendered or choice == "none":
        return ToolPlan(None, None)
    if choice == "required":
        return ToolPlan(rendered, rendered)
    if choice != "auto":
        forced = [t for t in rendered if t["function"]["name"] == choice]
        if not forced:
            raise InvalidRequestError(f"tool_choice names '{choice}', which is not in tools.", param="tool_choice")
        return ToolPlan(rendered, forced)
    return ToolPlan(rendered, None)


def forced_calls_schema(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """JSON schema of a call to one of ``tools``: ``{"name": <const>, "arguments": <its parameters>}``."""
    options = []
    for tool in tools:
        function = tool.get("function", tool)
        options.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": function["name"]},
                    "arguments": dict(function.get("parameters") or {"type": "object"}),
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


@dataclass(frozen=True)
class Constraint:
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None


def output_constraint(
    output: OutputFormat, plan: ToolPlan | None = None, *, param: str = "response_format"
) -> Constraint:
    if plan is not None and plan.forced is not None:
        if not isinstance(output, PlainText):
            raise InvalidRequestError(f"{param} cannot be combined with a forced tool_choice.", param=param)
        return Constraint(json_schema=forced_calls_schema(plan.forced))
    if isinstance(output, JsonObject):
        return Constraint(json_schema={})
    if isinstance(output, JsonSchema):
        check_schema(output.schema, param)
        return Constraint(json_schema=dict(output.schema))
    if isinstance(output, Grammar):
        return Constraint(grammar=output.gbnf)
    return Constraint()


def sampling_params(
    sampling: Sampling,
    limits: Limits,
    constraint: Constraint,
    *,
    seed: int | None,
    logprobs: int | None,
    max_tokens_limit: int,
    extra_stops: Sequence[str] = (),
) -> SamplingParams:
    if limits.max_tokens is not None and limits.max_tokens > max_tokens_limit:
        raise InvalidRequestError(
            f"max_tokens is {limits.max_tokens}; this server allows at most {max_tokens_limit} tokens per request.",
            param="max_tokens",
        )
    if limits.max_tokens == 0 and (constraint.grammar is not None or constraint.json_schema is not None):
        raise InvalidRequestError("max_tokens 0 cannot be combined with a grammar.", param="max_tokens")
    values: dict[str, Any] = {
        "max_tokens": limits.max_tokens,
        "stop": tuple(dict.fromkeys((*limits.stop, *extra_stops))),
        "grammar": constraint.grammar,
        "json_schema": constraint.json_schema,
        "logprobs": logprobs,
        "logit_bias": dict(sampling.logit_bias),
        "ignore_eos": sampling.ignore_eos,
        "cache_prompt": sampling.cache_prompt,
    }
    for name in (*SAMPLING_KNOBS, "speculative", "speculative_draft_max"):
        value = getattr(sampling, name)
        if value is not None:
            values[name] = value
    if sampling.mirostat is not None:
        values.update(
            mirostat=sampling.mirostat.mode, mirostat_tau=sampling.mirostat.tau, mirostat_eta=sampling.mirostat.eta
        )
    if limits.min_tokens:
        values["min_tokens"] = limits.min_tokens
    if seed is not None:
        values["seed"] = seed
    return SamplingParams(**values)
