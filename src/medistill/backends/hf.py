"""Local Hugging Face models: batched generation and letter log-likelihood, CPU or GPU."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from medistill.backends.base import FINISH_LENGTH, FINISH_STOP, Generation, Messages, SamplingParams
from medistill.backends.hf_decode import LoopRule, UnsupportedCache, left_pad, stream_decode
from medistill.errors import MedistillError
from medistill.models import resolve_model
from medistill.prompts import ChoiceRequest, render_chat

log = logging.getLogger(__name__)


def _torch():
    try:
        import torch
        import transformers
    except ImportError as e:  # pragma: no cover - exercised only without the hf extra
        raise MedistillError(
            "the transformers backend needs torch and transformers: pip install 'medistill[hf]'"
        ) from e
    return torch, transformers


class TransformersBackend:
    """Generation with ``transformers``: continuous batching on the model's KV cache (a
    finished sequence leaves, a waiting one takes its slot), ``model.generate`` as fallback.

    Weights load from safetensors only and ``trust_remote_code`` stays off unless asked for.
    On CPU the model runs in float32; on CUDA in bfloat16 where supported.
    """

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        stop_loops: bool = True,
    ) -> None:
        torch, transformers = _torch()
        if not logging.getLogger("medistill").isEnabledFor(logging.DEBUG):
            transformers.utils.logging.disable_progress_bar()  # no per-tensor bars in logs
        self.model_id = model
        path = resolve_model(model)
        self.model = path
        self.batch_size = batch_size
        self.stop_loops = stop_loops
        self._plain_generate = False
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            use_bf16 = self.device.startswith("cuda") and torch.cuda.is_bf16_supported()
            torch_dtype = torch.bfloat16 if use_bf16 else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                path, trust_remote_code=trust_remote_code
            )
            self.lm = transformers.AutoModelForCausalLM.from_pretrained(
                path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
            )
        except OSError as e:
            raise MedistillError(f"could not load model {model!r}: {e}") from e
        self.lm.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        log.info("loaded %s on %s (%s)", model, self.device, torch_dtype)

    def preferred_batch_size(self) -> int:
        """The configured generation batch size."""
        return self.batch_size

    def close(self) -> None:
        """Drop the model and give its GPU memory back (idempotent); the backend is not
        used afterwards."""
        if getattr(self, "lm", None) is None:
            return
        self.lm = None
        import gc

        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def render(self, messages: Messages) -> str:
        """The exact prompt text the model sees (chat template applied)."""
        return render_chat(self.tokenizer, messages)

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate one completion per conversation, in order (see :meth:`generate_each`)."""
        results: list[Generation | None] = [None] * len(batch)

        def keep(i: int, g: Generation) -> None:
            results[i] = g

        self.generate_each(batch, params, keep)
        missing = [i for i, g in enumerate(results) if g is None]
        if missing:  # pragma: no cover - a bug in the decode loop, never a silent gap
            raise RuntimeError(f"no generation for request(s) {missing}")
        return results  # type: ignore[return-value]

    def generate_each(
        self,
        batch: list[Messages],
        params: SamplingParams,
        on_result: Callable[[int, Generation], None],
    ) -> None:
        """Generate for every conversation, calling ``on_result(index, generation)`` as each
        one ends.

        Continuous batching (:mod:`medistill.backends.hf_decode`): ``batch_size`` sequences
        decode together, a finished one leaves at once and a waiting one takes its slot, so
        one runaway answer no longer holds its batch to the token budget. With ``stop_loops``
        a degenerate repetition loop ends early (finish reason ``repetition``). Models whose
        cache cannot be re-batched (sliding-window, hybrid) fall back to ``model.generate``
        in batches of ``batch_size``.
        """
        prompts = [self.render(m) for m in batch]
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if not self._plain_generate:
            try:
                for f in stream_decode(
                    self.lm,
                    ids,
                    slots=self.batch_size,
                    max_new_tokens=params.max_new_tokens,
                    eos_ids=self.eos_ids,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed,
                    top_k=params.top_k,
                    loop_rule=LoopRule() if self.stop_loops else None,
                ):
                    text = self.tokenizer.decode(f.tokens, skip_special_tokens=True)
                    on_result(
                        f.index,
                        Generation(
                            text=text,
                            finish_reason=f.finish_reason,
                            output_tokens=len(f.tokens) + (f.finish_reason == FINISH_STOP),
                            prompt_tokens=f.prompt_tokens,
                            latency_s=f.seconds,
                        ),
                    )
                return
            except UnsupportedCache as e:
                log.info("continuous batching unavailable (%s): using model.generate", e)
                self._plain_generate = True
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            for j, g in enumerate(self.generate_plain(chunk, params)):
                on_result(start + j, g)

    def generate_plain(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """One ``model.generate`` call for the whole batch (the batch runs until its longest
        member stops); finish reason from the stop token."""
        torch, _ = _torch()
        prompts = [self.render(m) for m in batch]
        enc = self.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.eos_ids,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            # unset: no top-k cut (not the model's generation_config default, applied unseen)
            kwargs["top_k"] = params.top_k or 0
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.lm.generate(**enc, **kwargs)
        elapsed = time.perf_counter() - t0
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        results = []
        eos = set(self.eos_ids)
        for row, plen in zip(new, prompt_lens, strict=True):
            stop = next((i for i, t in enumerate(row) if t in eos), None)
            if stop is None:
                tokens = row
                finish = FINISH_LENGTH if len(row) >= params.max_new_tokens else FINISH_STOP
            else:
                tokens, finish = row[:stop], FINISH_STOP
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            results.append(
                Generation(
                    text=text,
                    finish_reason=finish,
                    output_tokens=len(tokens) + (0 if stop is None else 1),
                    prompt_tokens=int(plen),
                    latency_s=elapsed / len(batch),
                )
            )
        return results

    def _encode(self, text: str, add_bos: bool | None) -> list[int]:
        """Token ids of ``text``: BOS forced first (``add_bos``), or the tokenizer's own
        default special tokens (``None``: BOS only where the tokenizer adds one)."""
        tok = self.tokenizer
        if add_bos:
            bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
            return bos + tok(text, add_special_tokens=False)["input_ids"]
        return tok(text)["input_ids"]

    def score_choices(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        """Log-likelihood of each continuation after its context, per request.

        Pairs are tokenised as lm-evaluation-harness does: trailing spaces of the context
        move to the continuation, the whole text is encoded and the continuation is what
        follows the context's own tokens. When every continuation of a question is one
        token (option letters), one forward pass over the context scores them all, reading
        only the last position's logits; longer continuations get one pass each.
        """
        singles: list[tuple[int, list[int], dict[str, int]]] = []
        multis: list[tuple[int, str, list[int], list[int]]] = []
        for r_i, req in enumerate(requests):
            pairs = req.token_pairs(lambda text, r=req: self._encode(text, r.add_bos))
            contexts = {tuple(ctx) for ctx, _ in pairs.values()}
            if len(contexts) == 1 and all(len(cont) == 1 for _, cont in pairs.values()):
                ctx = list(next(iter(contexts)))
                singles.append((r_i, ctx, {k: cont[0] for k, (_, cont) in pairs.items()}))
            else:
                multis.extend((r_i, k, ctx, cont) for k, (ctx, cont) in pairs.items())
        out: list[dict[str, float]] = [{} for _ in requests]
        for r_i, scores in self._score_next_token(singles):
            out[r_i].update(scores)
        for r_i, key, score in self._score_sequences(multis):
            out[r_i][key] = score
        return [{k: o[k] for k in req.continuations} for o, req in zip(out, requests, strict=True)]

    def token_ids(self, text: str) -> list[int]:
        """``text``'s token ids, no special tokens added."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def token_text(self, ids: list[int]) -> str:
        """The text of token ids (special tokens kept as written)."""
        return self.tokenizer.decode(ids)

    def score_branches(
        self, trunk: list[int], branches: list[tuple[int, list[int]]], tokens: dict[str, int]
    ) -> list[dict[str, float]]:
        """Next-token log-probabilities of ``tokens`` after each branch ``trunk[:cut] +
        suffix`` (``branches``: ``(cut, suffix)``). The trunk goes through the model once, in
        pieces up to each cut; each branch computes only its suffix on a copy of the cache at
        its cut: early answering at five cuts of one reasoning costs about one pass over it."""
        import copy

        torch, transformers = _torch()
        out: list[dict[str, float]] = [{} for _ in branches]
        cache = transformers.DynamicCache()
        done = 0
        with torch.inference_mode():
            for i in sorted(range(len(branches)), key=lambda i: branches[i][0]):
                cut, suffix = branches[i]
                if cut > done:
                    piece = torch.tensor([trunk[done:cut]], device=self.device)
                    self.lm(input_ids=piece, past_key_values=cache, logits_to_keep=1)
                    done = cut
                ids = torch.tensor([suffix], device=self.device)
                branch = copy.deepcopy(cache)
                logits = self.lm(input_ids=ids, past_key_values=branch, logits_to_keep=1)
                logits = logits.logits[0, -1]
                logp = torch.log_softmax(logits.float(), dim=-1).cpu()
                out[i] = {k: float(logp[t]) for k, t in tokens.items()}
        return out

    def _batches(self, lengths: list[int], max_tokens: int = 8192):
        """Indices grouped longest first into batches of at most ``max_tokens`` padded
        tokens (and ``4 * batch_size`` rows)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch: list[int] = []
        for i in order:
            width = lengths[batch[0]] if batch else lengths[i]
            if batch and (
                width * (len(batch) + 1) > max_tokens or len(batch) >= 4 * self.batch_size
            ):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _score_next_token(self, jobs):
        """One pass per context (left-padded batch, last position only)."""
        torch, _ = _torch()
        pad = self.tokenizer.pad_token_id
        for batch in self._batches([len(ctx) for _, ctx, _ in jobs]):
            ids, mask, position_ids = left_pad([jobs[i][1] for i in batch], pad or 0)
            with torch.inference_mode():
                logits = self.lm(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=position_ids.to(self.device),
                    logits_to_keep=1,
                ).logits[:, -1, :]
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, i in enumerate(batch):
                r_i, _, tokens = jobs[i]
                yield r_i, {k: float(logp[row, t]) for k, t in tokens.items()}

    def _score_sequences(self, jobs):
        """One pass per (context, continuation) pair (right-padded batch)."""
        torch, _ = _torch()
        pad = self.tokenizer.pad_token_id
        seqs = [ctx + cont for _, _, ctx, cont in jobs]
        for batch in self._batches([len(s) - 1 for s in seqs], max_tokens=4096):
            width = max(len(seqs[i]) - 1 for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                s = seqs[i][:-1]  # the model reads all but the last token
                ids[row, : len(s)] = torch.tensor(s)
                mask[row, : len(s)] = 1
            with torch.inference_mode():
                logits = self.lm(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
            for row, i in enumerate(batch):
                r_i, key, ctx, cont = jobs[i]
                span = logits[row, len(ctx) - 1 : len(ctx) - 1 + len(cont)].float()
                logp = torch.log_softmax(span, dim=-1).cpu()
                yield r_i, key, float(logp.gather(1, torch.tensor(cont)[:, None]).sum())
