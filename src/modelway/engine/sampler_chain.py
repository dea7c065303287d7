"""A llama.cpp sampler chain per sequence, from the request's sampling parameters."""

from __future__ import annotations

import random
from typing import Any

import llama_cpp as llama

from modelway.engine.sampling import SamplingParams
from modelway.protocol.errors import BadRequest

PENALTY_WINDOW = 64


def build_sampler(params: SamplingParams, vocab: Any, n_vocab: int, eog: list[int]) -> Any:
    """The chain: logit bias, penalties, grammar, then greedy or top-k/top-p/min-p/temp/dist.

    The caller owns the returned chain and frees it with ``llama_sampler_free``.
    """
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    try:
        bias = dict(params.logit_bias)
        if params.ignore_eos:
            bias.update({t: float("-inf") for t in eog})
        if bias:
            _add(chain, _logit_bias(bias, n_vocab))
        penalties = (params.repeat_penalty, params.frequency_penalty, params.presence_penalty)
        if penalties != (1.0, 0.0, 0.0):
            # This llama.cpp build takes the vocabulary size first (include/llama.h).
            _add(
                chain,
                llama.llama_sampler_init_penalties(
                    n_vocab,
                    PENALTY_WINDOW,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )
        if params.grammar is not None:
            grammar = llama.llama_sampler_init_grammar(vocab, params.grammar.encode(), b"root")
            if not grammar:
                raise BadRequest("the output grammar could not be compiled", param="grammar")
            _add(chain, grammar)
        if params.temperature <= 0:
            _add(chain, llama.llama_sampler_init_greedy())
            return chain
        if params.top_k > 0:
            _add(chain, llama.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            _add(chain, llama.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            _add(chain, llama.llama_sampler_init_min_p(params.min_p, 1))
        _add(chain, llama.llama_sampler_init_temp(params.temperature))
        seed = params.seed if params.seed is not None else random.getrandbits(32)
        _add(chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain
    except BaseException:
        llama.llama_sampler_free(chain)
        raise


def _add(chain: Any, sampler: Any) -> None:
    llama.llama_sampler_chain_add(chain, sampler)


def _logit_bias(bias: dict[int, float], n_vocab: int) -> Any:
    for token in bias:
        if not 0 <= token < n_vocab:
            raise BadRequest(
                f"logit_bias names token {token}; this model's tokens are 0..{n_vocab - 1}",
                param="logit_bias",
            )
    entries = (llama.llama_logit_bias * len(bias))()
    for i, (token, value) in enumerate(bias.items()):
        entries[i] = llama.llama_logit_bias(token=token, bias=value)
    return llama.llama_sampler_init_logit_bias(n_vocab, len(bias), entries)
