"""Cross-field checks of a fleet spec: names that must refer to models, duplicates, providers.

They read the raw document (not the validated models) so that they run, and report, even when
field validation failed elsewhere in the file: every error of a file is reported at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import TypeAdapter, ValidationError

from tiergate.errors import SpecIssue
from tiergate.perf.catalog import gpu_named
from tiergate.spec.diagnostics import did_you_mean
from tiergate.spec.yamldoc import Document

# An Anthropic model id ending at its date, without Bedrock's "-v1:0" style version.
_UNVERSIONED_ANTHROPIC = re.compile(r"(?:[a-z]{2,6}\.)?anthropic\.claude-[a-z0-9.-]*-\d{8}")
# How ModelEntry.priority reads a value; a check must not compare what validation would reject.
_PRIORITY: TypeAdapter[int] = TypeAdapter(int)


@dataclass(slots=True)
class CheckResult:
    errors: list[SpecIssue] = field(default_factory=list)
    warnings: list[SpecIssue] = field(default_factory=list)


def check_references(doc: Document) -> CheckResult:
    """Errors and warnings about how the document's parts refer to each other."""
    result = CheckResult()
    data: dict[str, object] = doc.data if isinstance(doc.data, dict) else {}
    raw_models = data.get("models")
    models: list[object] = raw_models if isinstance(raw_models, list) else []
    names = _model_names(doc, models, result)
    raw_routing = data.get("routing")
    routing: dict[str, object] = raw_routing if isinstance(raw_routing, dict) else {}
    cascade = _check_cascade(doc, routing, names, result)
    _check_default(doc, routing, names, cascade, result)
    for index, entry in enumerate(models):
        if isinstance(entry, dict):
            _check_provider_fields(doc, index, entry, result)
    _check_reachability(doc, models, cascade, result)
    _check_scaling_tiers(doc, data.get("scaling"), names, result)
    _check_deployments(doc, data, models, names, result)
    return result


def _check_deployments(
    doc: Document,
    data: dict[str, object],
    models: list[object],
    names: list[str],
    result: CheckResult,
) -> None:
    """Each deployment names a self-hosted tier once, a GPU of the catalog, and node pools
    that exist."""
    deployments = data.get("deployments")
    if not isinstance(deployments, list):
        return
    providers = {
        entry.get("name"): entry.get("provider") for entry in models if isinstance(entry, dict)
    }
    raw_pools = data.get("nodePools")
    pools = [
        pool.get("name")
        for pool in (raw_pools if isinstance(raw_pools, list) else [])
        if isinstance(pool, dict)
    ]
    seen: dict[str, int] = {}
    for index, entry in enumerate(deployments):
        if not isinstance(entry, dict):
            continue
        tier = entry.get("tier")
        if isinstance(tier, str):
            if tier not in names:
                result.errors.append(
                    doc.issue(("deployments", index, "tier"), _unknown_model(tier, names))
                )
            elif providers.get(tier) == "bedrock":
                result.errors.append(
                    doc.issue(
                        ("deployments", index, "tier"),
                        f"'{tier}' is a bedrock tier: a managed API has no GPUs to deploy; "
                        "its simulation settings go under simulation.managed",
                    )
                )
            elif tier in seen:
                result.errors.append(
                    doc.issue(
                        ("deployments", index, "tier"),
                        f"tier '{tier}' already has a deployment (deployments[{seen[tier]}])",
                    )
                )
            else:
                seen[tier] = index
        gpu = entry.get("gpu")
        if isinstance(gpu, str):
            try:
                gpu_named(gpu)
            except KeyError as exc:
                result.errors.append(doc.issue(("deployments", index, "gpu"), str(exc.args[0])))
        used = entry.get("nodePools")
        for position, pool in enumerate(used if isinstance(used, list) else []):
            if isinstance(pool, str) and pool not in pools:
                known = ", ".join(str(p) for p in pools) or "none: the spec has no nodePools"
                result.errors.append(
                    doc.issue(
                        ("deployments", index, "nodePools", position),
                        f"unknown node pool '{pool}'{did_you_mean(pool, [str(p) for p in pools])}; "
                        f"known: {known}",
                    )
                )


def _check_scaling_tiers(
    doc: Document, scaling: object, names: list[str], result: CheckResult
) -> None:
    if not isinstance(scaling, list):
        return
    for index, entry in enumerate(scaling):
        tier = entry.get("tier") if isinstance(entry, dict) else None
        if isinstance(tier, str) and tier not in names:
            result.errors.append(doc.issue(("scaling", index, "tier"), _unknown_model(tier, names)))


def _model_names(doc: Document, models: list[object], result: CheckResult) -> list[str]:
    seen: dict[str, int] = {}
    for index, entry in enumerate(models):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            first = doc.position(("models", seen[name], "name"))
            result.errors.append(
                doc.issue(
                    ("models", index, "name"),
                    f"duplicate model name '{name}' (first used by models[{seen[name]}] at line "
                    f"{first.line}); names must be unique",
                )
            )
        else:
            seen[name] = index
    return list(seen)


def _check_cascade(
    doc: Document, routing: dict[str, object], names: list[str], result: CheckResult
) -> list[str]:
    order = routing.get("cascadeOrder")
    if not isinstance(order, list):
        return []
    valid: list[str] = []
    for index, entry in enumerate(order):
        path = ("routing", "cascadeOrder", index)
        if not isinstance(entry, str):
            continue  # field validation reports the type
        if entry in valid:
            result.errors.append(doc.issue(path, f"'{entry}' appears twice in the cascade"))
        elif entry not in names:
            result.errors.append(doc.issue(path, _unknown_model(entry, names)))
        else:
            valid.append(entry)
    return valid


def _check_default(
    doc: Document,
    routing: dict[str, object],
    names: list[str],
    cascade: list[str],
    result: CheckResult,
) -> None:
    default = routing.get("defaultModel")
    if not isinstance(default, str):
        return
    path = ("routing", "defaultModel")
    if default not in names:
        result.errors.append(doc.issue(path, _unknown_model(default, names)))
    elif cascade and default not in cascade:
        result.errors.append(
            doc.issue(path, f"'{default}' is not in routing.cascadeOrder ({', '.join(cascade)})")
        )


def _check_provider_fields(
    doc: Document, index: int, entry: dict[str, object], result: CheckResult
) -> None:
    provider = entry.get("provider")
    name = entry.get("name", f"models[{index}]")
    if provider == "openai-compatible":
        if "baseUrl" not in entry:
            result.errors.append(
                doc.issue(
                    ("models", index),
                    f"missing required key 'baseUrl' for provider openai-compatible ('{name}'): "
                    "the URL of the engine's OpenAI API, such as http://vllm:8000/v1",
                )
            )
        if "region" in entry:
            result.warnings.append(
                doc.issue(("models", index, "region"), "region is ignored for openai-compatible")
            )
    if provider == "bedrock":
        _check_bedrock(doc, index, entry, result)
    pricing = entry.get("pricing")
    if "costPer1kTokens" not in entry and pricing is None:
        result.warnings.append(
            doc.issue(("models", index), f"'{name}' has no costPer1kTokens: its cost counts as 0")
        )
    elif isinstance(pricing, dict) and "input" in pricing and "costPer1kTokens" in entry:
        result.warnings.append(
            doc.issue(
                ("models", index, "costPer1kTokens"),
                "costPer1kTokens is ignored: the pricing section's token prices apply",
            )
        )


def _check_bedrock(
    doc: Document, index: int, entry: dict[str, object], result: CheckResult
) -> None:
    if isinstance(entry.get("healthCheck"), dict):
        result.warnings.append(
            doc.issue(
                ("models", index, "healthCheck"),
                "Bedrock has no health endpoint; this tier relies on passive signals and the "
                "healthCheck is ignored",
            )
        )
    if "spillover" in entry:
        result.errors.append(
            doc.issue(
                ("models", index, "spillover"),
                "spillover reads a self-hosted engine's vLLM metrics; Bedrock publishes none "
                "(its throttling answers 429: list 429 in fallbackConditions.statusCode instead)",
            )
        )
    if "apiKey" in entry:
        result.warnings.append(
            doc.issue(
                ("models", index, "apiKey"),
                "apiKey is ignored for bedrock: requests are signed (SigV4) with the AWS "
                "credentials of the environment, profile, IRSA or instance role",
            )
        )
    model = entry.get("model")
    if isinstance(model, str) and _UNVERSIONED_ANTHROPIC.fullmatch(model):
        result.warnings.append(
            doc.issue(
                ("models", index, "model"),
                f"'{model}' lacks the version suffix of Bedrock model ids: Bedrock answers "
                "ValidationException (invalid model identifier). Did you mean "
                f"'{model}-v1:0'? Recent Anthropic models are invoked on demand through an "
                f"inference profile such as 'us.{model}-v1:0'",
            )
        )


def _check_reachability(
    doc: Document, models: list[object], cascade: list[str], result: CheckResult
) -> None:
    if not cascade:
        return
    for index, entry in enumerate(models):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        if name not in cascade:
            result.warnings.append(
                doc.issue(
                    ("models", index, "name"),
                    f"'{name}' is not in routing.cascadeOrder: requests naming it are served by "
                    "this tier alone, with no fallback",
                )
            )
    priorities = [
        (_priority(entry.get("priority")), entry["name"])
        for entry in models
        if isinstance(entry, dict) and entry.get("name") in cascade
    ]
    numbered = [(p, name) for p, name in priorities if isinstance(p, int)]
    if len(numbered) < len(priorities):
        return  # field validation reports a priority that is not an integer
    ranked = [name for _, name in sorted(numbered, key=lambda p: p[0])]
    if ranked != [n for n in cascade if n in ranked]:
        result.warnings.append(
            doc.issue(
                ("routing", "cascadeOrder"),
                f"cascadeOrder ({', '.join(cascade)}) disagrees with priority order "
                f"({', '.join(ranked)}); cascadeOrder wins",
            )
        )


def _priority(value: object) -> object:
    """A priority as field validation reads it ("1" is 1, as for ``${ENV}`` values), or as is."""
    try:
        return _PRIORITY.validate_python(value)
    except ValidationError:
        return value


def _unknown_model(name: str, names: list[str]) -> str:
    known = ", ".join(names) if names else "none defined"
    return f"'{name}' names no model{did_you_mean(name, names)}; models: {known}"
