"""Continuous batching for local generation: per-sequence exit and refill on a KV cache.

``model.generate`` holds a whole batch until its longest member stops, so one runaway answer
costs a 1024-token budget for every row beside it. :func:`stream_decode` runs the decode loop
itself: a sequence that ends leaves the batch at once (its cache rows are dropped), a waiting
prompt is prefilled into the free slot, and finished sequences are handed back as they end.
Each row keeps its own positions and attention mask (left padding, as ``generate`` uses), so
greedy decoding gives the same tokens as ``generate`` up to float rounding.

A degenerate repetition loop (the last tokens repeating one short period over and over) can
end early with finish reason ``repetition``: it would otherwise run to the budget, and its
answer is cut off either way.

The loop needs a cache made of plain full-attention layers (``DynamicCache`` of
``DynamicLayer``: Llama, Qwen2/3, Mistral without sliding window, SmolLM...). For other
caches (sliding window, hybrid, state-space) :class:`UnsupportedCache` is raised before any
token is produced, and the caller falls back to ``model.generate``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from medistill.backends.base import FINISH_REPETITION
from medistill.backends.loops import LoopRule

log = logging.getLogger(__name__)


class UnsupportedCache(Exception):
    """The model's KV cache cannot be re-batched: use ``model.generate`` instead."""


@dataclass
class Finished:
    """One finished sequence from :func:`stream_decode`."""

    index: int
    tokens: list[int]
    finish_reason: str  # stop | length | repetition
    prompt_tokens: int
    seconds: float  # from its prefill to its last token (its own latency)


@dataclass
class _Row:
    index: int
    prompt_len: int
    started: float
    tokens: list[int]


def stream_decode(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    slots: int,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = 0,
    top_k: int | None = None,
    loop_rule: LoopRule | None = LoopRule(),
    prefill_tokens: int = 4096,
) -> Iterator[Finished]:
    """Generate a completion for each tokenised prompt, yielding each as it ends.

    At most ``slots`` sequences decode together; a free slot is refilled from the waiting
    prompts (in the order given, so sort them by length for less padding). Stopping on an
    ``eos_ids`` token gives ``stop`` (the token is counted, not returned), the budget
    ``length``, a loop under ``loop_rule`` ``repetition``. Greedy when ``temperature`` is 0,
    else temperature, top-k (when set) and top-p sampling from a generator seeded with
    ``seed``.
    """
    import torch

    device = next(model.parameters()).device
    eos_set = set(eos_ids)
    cache_arg = _cache_arg(model)
    gen = torch.Generator(device=device)
    if seed is not None:
        gen.manual_seed(seed)
    waiting = list(range(len(prompts)))[::-1]  # pop() takes the next in order
    rows: list[_Row] = []
    cache = mask = pos = nxt = None  # cache, [B, W] mask, [B] next position, [B] next input

    def pick(logits):
        logits = logits.float()
        if temperature <= 0:
            return logits.argmax(-1)
        if top_k is not None and 0 < top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1)

    def record(batch_rows: list[_Row], chosen) -> tuple[list[int], list[Finished]]:
        """Append each row's new token; return the rows that stay and those that ended."""
        keep, done = [], []
        for b, (row, tok) in enumerate(zip(batch_rows, chosen.tolist(), strict=True)):
            reason = None
            if tok in eos_set:
                reason = "stop"
            else:
                row.tokens.append(tok)
                if len(row.tokens) >= max_new_tokens:
                    reason = "length"
                elif (
                    loop_rule is not None
                    and len(row.tokens) % loop_rule.check_every == 0
                    and loop_rule.period(row.tokens) is not None
                ):
                    reason = FINISH_REPETITION
            if reason is None:
                keep.append(b)
            else:
                seconds = time.perf_counter() - row.started
                done.append(Finished(row.index, row.tokens, reason, row.prompt_len, seconds))
        return keep, done

    with torch.inference_mode():
        while waiting or rows:
            # Refill free slots: prefill waiting prompts together (within a token budget).
            take: list[int] = []
            while waiting and len(rows) + len(take) < slots:
                width = max(len(prompts[i]) for i in [*take, waiting[-1]])
                if take and width * (len(take) + 1) > prefill_tokens:
                    break
                take.append(waiting.pop())
            if take:
                started = time.perf_counter()
                batch = [prompts[i] for i in take]
                new_cache, new_mask, new_logits = _prefill(model, batch, device)
                _check_cache(new_cache)
                first = pick(new_logits)
                new_rows = [_Row(i, len(prompts[i]), started, []) for i in take]
                keep, done = record(new_rows, first)
                yield from done
                if keep:
                    new_cache, new_mask, new_pos, first = _select(
                        new_cache, new_mask, new_mask.sum(-1), first, keep, device
                    )
                    if cache is None:
                        cache, mask, pos, nxt = new_cache, new_mask, new_pos, first
                    else:
                        cache, mask = _merge(cache, mask, new_cache, new_mask)
                        pos, nxt = torch.cat([pos, new_pos]), torch.cat([nxt, first])
                    rows.extend(new_rows[b] for b in keep)
                continue  # more free slots may remain
            if not rows:
                continue
            # One decode step for every row in the batch.
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=pos[:, None],
                use_cache=True,
                logits_to_keep=1,
                **{cache_arg: cache},
            )
            cache, pos = _cache_of(out), pos + 1
            chosen = pick(out.logits[:, -1, :])
            keep, done = record(rows, chosen)
            yield from done
            if len(keep) == len(rows):
                nxt = chosen
                continue
            rows = [rows[b] for b in keep]
            if not rows:
                cache = mask = pos = nxt = None
                continue
            cache, mask, pos, nxt = _select(cache, mask, pos, chosen, keep, device)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int = 0):
    """Token lists as one left-padded batch: ids, attention mask, and each row's positions
    counted from its own first token (as ``generate`` builds them), so a padded row computes
    what it would alone."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _prefill(model, prompts: list[Sequence[int]], device):
    """Run the prompts (left-padded together); return their cache, mask and last logits."""
    ids, mask, position_ids = left_pad(prompts)
    mask = mask.to(device)
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask,
        position_ids=position_ids.to(device),
        use_cache=True,
        logits_to_keep=1,
    )
    return _cache_of(out), mask, out.logits[:, -1, :]


def _cache_arg(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` (transformers >= 5.2x) or
    ``past_key_values`` (earlier)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out):
    """The KV cache a forward pass returned, under either attribute name."""
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def _layers(cache):
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers is None or not all(type(layer) is DynamicLayer for layer in layers):
        raise UnsupportedCache(f"{type(cache).__name__} with non-plain layers")
    return layers


def _check_cache(cache) -> None:
    """Raise :class:`UnsupportedCache` unless every layer is a plain full-attention one."""
    _layers(cache)


def _merge(cache, mask, new_cache, new_mask):
    """Stack two batches' caches and masks, left-padding the narrower to the same width."""
    import torch

    width = max(mask.shape[1], new_mask.shape[1])

    def widen(t, dim, w):
        extra = w - t.shape[dim]
        if extra == 0:
            return t
        shape = list(t.shape)
        shape[dim] = extra
        return torch.cat([t.new_zeros(shape), t], dim=dim)

    for old, add in zip(_layers(cache), _layers(new_cache), strict=True):
        old.keys = torch.cat([widen(old.keys, 2, width), widen(add.keys, 2, width)])
        old.values = torch.cat([widen(old.values, 2, width), widen(add.values, 2, width)])
    merged_mask = torch.cat([widen(mask, 1, width), widen(new_mask, 1, width)])
    return cache, merged_mask


def _select(cache, mask, pos, nxt, keep: list[int], device):
    """Keep only rows ``keep`` and drop the leading columns no remaining row attends to."""
    import torch

    idx = torch.tensor(keep, device=device)
    mask = mask.index_select(0, idx)
    used = mask.any(0).nonzero()
    start = int(used[0]) if len(used) else 0
    mask = mask[:, start:]
    for layer in _layers(cache):
        layer.keys = layer.keys.index_select(0, idx)[:, :, start:, :]
        layer.values = layer.values.index_select(0, idx)[:, :, start:, :]
    return cache, mask, pos.index_select(0, idx), nxt.index_select(0, idx)
