"""OpenAI function tools on the embedded engine.

The model sees the tools in its system prompt and answers a call as one JSON object,
``{"name": ..., "arguments": {...}}``. When ``tool_choice`` forces a call, that shape is
also enforced by a grammar built from ``tool_call_schema``; the reply is turned back into
the OpenAI ``tool_calls`` list by ``parse_tool_call``.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from modelway.protocol.errors import BadRequest

_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_CALL_FORMAT = '{"name": "<tool name>", "arguments": {<arguments for that tool>}}'
_FENCE = re.compile(r"^```[A-Za-z]*\s*(.*?)\s*```$", re.DOTALL)
# SmolLM2 and Hermes-style models wrap calls in these tags when left unconstrained.
_TAGS = re.compile(r"^<tool_call>\s*(.*?)\s*</tool_call>$", re.DOTALL)


def functions(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The ``function`` objects of ``tools``, checked, with ``parameters`` filled in."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("`tools` must be a list of function tools.", param="tools")
    found: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        kind = tool.get("type", "function") if isinstance(tool, dict) else None
        if kind != "function" or not isinstance(fn, dict):
            raise BadRequest(
                f'tools[{i}] must be {{"type": "function", "function": {{"name": ..., '
                f'"parameters": {{...}}}}}}; only function tools are supported.',
                param="tools",
            )
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"tools[{i}].function.name must be a non-empty string.", param="tools")
        if any(other["name"] == name for other in found):
            raise BadRequest(
                f"tools[{i}]: the function name '{name}' is used twice; names must be unique.",
                param="tools",
            )
        parameters = fn.get("parameters", _NO_PARAMETERS)
        if not isinstance(parameters, dict):
            raise BadRequest(
                f"tools[{i}].function.parameters must be a JSON schema object.", param="tools"
            )
        found.append({**fn, "parameters": parameters})
    return found


def forced_functions(
    tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any] | None
) -> list[dict[str, Any]] | None:
    """The functions one of which must be called, or None when no call is forced."""
    available = functions(tools)
    if tool_choice is None or tool_choice in ("auto", "none"):
        return None
    if tool_choice == "required":
        if not available:
            raise BadRequest(
                'tool_choice "required" needs at least one function in `tools`.',
                param="tool_choice",
            )
        return available
    name = _named_choice(tool_choice)
    for fn in available:
        if fn["name"] == name:
            return [fn]
    known = ", ".join(f"'{fn['name']}'" for fn in available) or "none"
    raise BadRequest(
        f"tool_choice names the function '{name}', which is not in `tools` (available: {known}).",
        param="tool_choice",
    )


def _named_choice(tool_choice: str | dict[str, Any]) -> str:
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        fn = tool_choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return str(fn["name"])
    raise BadRequest(
        'tool_choice must be "none", "auto", "required" or '
        '{"type": "function", "function": {"name": "<tool name>"}}.',
        param="tool_choice",
    )


def tool_call_schema(forced: list[dict[str, Any]]) -> dict[str, Any]:
    """One JSON schema for exactly one call to any of ``forced``.

    Each tool's parameters are embedded at ``#/anyOf/<i>/properties/arguments``, so their
    local ``$ref``s are rebased there; their ``$defs`` are hoisted to the root under
    per-tool names because the converter names rules after the last segment of a ref.
    """
    alternatives: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for i, fn in enumerate(forced):
        parameters = dict(fn["parameters"])
        for key in ("$defs", "definitions"):
            hoisted = parameters.pop(key, None)
            if isinstance(hoisted, dict):
                defs.update({f"t{i}-{k}": _rebase(v, i) for k, v in hoisted.items()})
        alternatives.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": _rebase(parameters, i)},
                "required": ["name", "arguments"],
            }
        )
    schema: dict[str, Any] = {"anyOf": alternatives}
    if defs:
        schema["$defs"] = defs
    return schema


def _rebase(node: Any, i: int) -> Any:
    if isinstance(node, list):
        return [_rebase(item, i) for item in node]
    if not isinstance(node, dict):
        return node
    rebased = {k: _rebase(v, i) for k, v in node.items()}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        rebased["$ref"] = _rebase_ref(ref[1:], i)
    return rebased


def _rebase_ref(pointer: str, i: int) -> str:
    for defs_key in ("/$defs/", "/definitions/"):
        if pointer.startswith(defs_key):
            return f"#/$defs/t{i}-{pointer[len(defs_key) :]}"
    return f"#/anyOf/{i}/properties/arguments{pointer}"


def tools_system_prompt(
    tools: list[dict[str, Any]], tool_choice: str | dict[str, Any] | None
) -> str | None:
    """Text for the system prompt that announces the tools and the call format."""
    if not tools or tool_choice == "none":
        return None
    forced = forced_functions(tools, tool_choice)
    listed = forced if forced is not None else functions(tools)
    lines = ["You can call these tools:"]
    for fn in listed:
        entry = {"name": fn["name"]}
        if isinstance(fn.get("description"), str) and fn["description"]:
            entry["description"] = fn["description"]
        lines.append(json.dumps({**entry, "parameters": fn["parameters"]}, ensure_ascii=False))
    lines.append("To call a tool, reply with only this JSON object and nothing else:")
    lines.append(_CALL_FORMAT)
    if forced is None:
        lines.append("Call a tool only when it helps; otherwise answer in plain text.")
    elif len(forced) == 1 and tool_choice != "required":
        lines.append(f'You must call the tool "{forced[0]["name"]}".')
    else:
        lines.append("You must call one of these tools.")
    return "\n".join(lines)


def parse_tool_call(text: str, tools: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The OpenAI ``tool_calls`` list when ``text`` is a call to one of ``tools``, else None."""
    names = {
        tool["function"]["name"]
        for tool in tools
        if isinstance(tool, dict)
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    }
    body = text.strip()
    for wrapper in (_FENCE, _TAGS):
        if match := wrapper.match(body):
            body = match.group(1)
    try:
        value = json.loads(body)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    calls = [_call(item, names) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _call(item: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(item, dict) or item.get("name") not in names:
        return None
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {
        "id": f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {
            "name": item["name"],
            "arguments": json.dumps(arguments, ensure_ascii=False, separators=(",", ":")),
        },
    }
