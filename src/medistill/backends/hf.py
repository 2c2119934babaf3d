"""Local Hugging Face models: batched generation and letter log-likelihood, CPU or GPU."""

from __future__ import annotations

import logging
import time
from typing import Any

from medistill.backends.base import FINISH_LENGTH, FINISH_STOP, Generation, Messages, SamplingParams
from medistill.errors import MedistillError
from medistill.prompts import render_chat

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
    """Generation with ``transformers`` (``model.generate``), batched with left padding.

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
    ) -> None:
        torch, transformers = _torch()
        from medistill.models import resolve_model

        if not logging.getLogger("medistill").isEnabledFor(logging.DEBUG):
            transformers.utils.logging.disable_progress_bar()  # no per-tensor bars in logs
        self.model_id = model
        path = resolve_model(model)
        self.model = path
        self.batch_size = batch_size
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

    def render(self, messages: Messages) -> str:
        """The exact prompt text the model sees (chat template applied)."""
        return render_chat(self.tokenizer, messages)

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate one completion per conversation; finish reason from the stop token."""
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

    def letter_logprobs(
        self, contexts: list[str], letters: list[list[str]]
    ) -> list[dict[str, float]]:
        """Log-probability of each option letter (``" A"``, ``" B"``...) after its context.

        The comparison lm-evaluation-harness makes for multiple-choice tasks: the model
        scores the continuation, no text is generated, so nothing needs extracting.
        """
        torch, _ = _torch()
        pairs = [(c, f" {L}") for c, ls in zip(contexts, letters, strict=True) for L in ls]
        scores: list[float] = []
        tok = self.tokenizer
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        for start in range(0, len(pairs), self.batch_size * 4):
            chunk = pairs[start : start + self.batch_size * 4]
            seqs, spans = [], []
            for ctx, cont in chunk:
                ctx_ids = bos + tok(ctx, add_special_tokens=False)["input_ids"]
                full_ids = bos + tok(ctx + cont, add_special_tokens=False)["input_ids"]
                # The continuation is what tokenising the whole adds after the shared prefix.
                common = 0
                while (
                    common < min(len(ctx_ids), len(full_ids))
                    and ctx_ids[common] == full_ids[common]
                ):
                    common += 1
                common = max(1, min(common, len(full_ids) - 1))
                seqs.append(full_ids)
                spans.append((common, len(full_ids)))
            width = max(len(s) for s in seqs)
            pad = tok.pad_token_id
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, s in enumerate(seqs):  # right padding: positions stay aligned
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            with torch.inference_mode():
                logits = self.lm(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for i, (a, b) in enumerate(spans):
                target = ids[i, a:b]
                scores.append(float(logp[i, a - 1 : b - 1].gather(1, target[:, None]).sum()))
        out, k = [], 0
        for ls in letters:
            out.append({L: scores[k + j] for j, L in enumerate(ls)})
            k += len(ls)
        return out
