"""How the app builds the admission stage: prices per deployment, each model group's
token counter and dearest price, and the stores under limits and budgets."""

from __future__ import annotations

from collections.abc import Callable

from modelway.access.principal import BudgetRule
from modelway.accounting.metering import GroupMeter
from modelway.accounting.pricing import Price, PriceTable
from modelway.accounting.tokens import (
    CallableCounter,
    EstimateCounter,
    TokenCounter,
    openai_counter,
)
from modelway.config import Config
from modelway.observability.request_metrics import RequestMetrics
from modelway.pipeline.admission import Admission, BudgetListener
from modelway.providers.local import LocalProvider
from modelway.providers.local_embedding import LocalEmbeddingProvider
from modelway.providers.openai_compat import OpenAIProvider
from modelway.routing.router import ModelGroupRuntime, Router
from modelway.services import Services


def admission_stage(
    config: Config,
    services: Services,
    router: Router,
    metrics: RequestMetrics,
    budget_listener: BudgetListener | None,
    clock: Callable[[], float],
) -> Admission:
    table = PriceTable(
        {k: Price(p.input, p.output, p.cached_input) for k, p in config.accounting.prices.items()}
    )
    prices: dict[str, Price | None] = {}
    for group in router.groups.values():
        for dep in group.deployments:
            prices[dep.id] = table.lookup(dep.provider.name, dep.upstream_model) or table.lookup(
                dep.provider.name, group.name
            )
    meters = {
        name: GroupMeter(_counter(group), _dearest(router, name, prices))
        for name, group in router.groups.items()
    }
    return Admission(
        counters=services.counters,
        ledger=services.writer,
        meters=meters,
        prices=prices,
        global_budgets=[
            BudgetRule.of("global", "global", b.model_dump()) for b in config.budgets.global_
        ],
        limits=config.limits,
        budgets=config.budgets,
        spend_since=services.spend_since,
        metrics=metrics,
        budget_listener=budget_listener,
        clock=clock,
    )


def _counter(group: ModelGroupRuntime) -> TokenCounter:
    """The group's own tokenizer when it is served by the embedded engine; an offline BPE
    for OpenAI-compatible upstreams; an estimate otherwise."""
    provider = group.deployments[0].provider
    if isinstance(provider, LocalProvider | LocalEmbeddingProvider):
        estimate = EstimateCounter()
        return CallableCounter(lambda text: provider.count_tokens(text) or estimate.count(text))
    if isinstance(provider, OpenAIProvider):
        return openai_counter()
    return EstimateCounter()


def _dearest(router: Router, name: str, prices: dict[str, Price | None]) -> Price | None:
    """The highest price a request to this group can meet, fallbacks included."""
    routing = router.groups[name].routing
    names = [name, *routing.fallbacks, *routing.context_fallbacks, *routing.content_fallbacks]
    found = [
        price
        for group in names
        for dep in router.groups[group].deployments
        if (price := prices.get(dep.id)) is not None
    ]
    return max(found, key=lambda p: p.input + p.output, default=None)
