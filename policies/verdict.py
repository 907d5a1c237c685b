"""Train a generative judge's verdict directly: P("Yes") of the next token, fitted to labelled cases (RewardDance).

The judge at inference is :class:`agentenv.rewards.PointwiseJudge`: it renders its template, runs the model once and
reads ``P(yes) = sigmoid(logsumexp(log p[yes ids]) - logsumexp(log p[no ids]))`` at the next token. This trainer
optimises exactly that quantity — binary cross-entropy of the same logit on the case's label, over the same
rendered chat — so the folder it writes is the judge: ``PointwiseJudge(LocalLM("runs/…/final"))``, or
``agentenv judge-audit --judge model:runs/…/final``.

Training fine-tunes the top blocks of the causal LM (``train_layers``; the default 135M model fits a CPU), in
batches of similar length (little padding), bf16 matmuls where the hardware has them, AdamW with linear warm-up and
a decay that ends with the epochs or the budget in minutes (whichever is first), an evaluation on the validation
cases after each epoch or every ``eval_every`` steps (AUROC, accuracy), and the best evaluation's weights kept.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentenv.errors import ConfigError, check_range
from agentenv.rewards.antihack import auroc


@dataclass
class VerdictConfig:
    """Knobs of :func:`train_verdict`. ``max_minutes`` stops training early (the last full evaluation decides)."""

    lr: float = 3e-5
    epochs: int = 2
    batch_size: int = 16
    warmup: float = 0.05
    weight_decay: float = 0.0
    max_minutes: float | None = None
    max_prompt_tokens: int = 384
    eval_every: int = 0  # steps between validation passes; 0: once per epoch
    seed: int = 0
    balance: bool = True  # weight the classes so positives and negatives count equally
    #: Train only the top N transformer blocks (and the final norm); the rest and the embeddings stay frozen, which
    #: cuts the backward pass and the optimizer state. ``None`` trains everything.
    train_layers: int | None = 8
    #: Matmuls in bfloat16 during training (the weights, the optimizer and the evaluation stay float32): ``"auto"``
    #: uses it where the hardware computes bf16 natively (a CUDA GPU, a CPU with AVX512-BF16 or AMX; ~1.7x faster
    #: steps on this project's CPU), ``"bf16"`` always, ``"off"`` never.
    autocast: str = "auto"

    def __post_init__(self) -> None:
        if self.autocast not in ("auto", "bf16", "off"):
            raise ConfigError(f"autocast={self.autocast!r} must be 'auto', 'bf16' or 'off'")
        check_range("lr", self.lr, 1e-9, 1.0)
        check_range("epochs", self.epochs, 1, 1000, integer=True)
        check_range("batch_size", self.batch_size, 1, 4096, integer=True)
        check_range("warmup", self.warmup, 0.0, 1.0)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        if self.max_minutes is not None:
            check_range("max_minutes", self.max_minutes, 0.01, 1e6)
        check_range("max_prompt_tokens", self.max_prompt_tokens, 16, 1_000_000, integer=True)
        check_range("eval_every", self.eval_every, 0, integer=True)
        if self.train_layers is not None:
            check_range("train_layers", self.train_layers, 1, 10_000, integer=True)
        for name in ("lr", "warmup", "weight_decay"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be finite")


@dataclass
class VerdictResult:
    """What :func:`train_verdict` did: per-evaluation metrics, the best one, the folder the judge is in."""

    model_dir: str | None
    steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    trainable_parameters: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_fields(pair: Any) -> tuple[dict[str, str], int]:
    """The :class:`PairwiseJudge` template fields of a pair (``question``, ``reference``, ``a``, ``b``, ``label``
    "A"/"B", as :func:`agentenv.envs.judge.data.pairwise_cases` writes them) and its label: 1 when A is better."""
    get = pair.get if isinstance(pair, dict) else lambda k, d=None: getattr(pair, k, d)
    label = str(get("label", ""))
    if label not in ("A", "B"):
        raise ConfigError(f"pair {get('id', '?')!r}: label must be 'A' or 'B', got {label!r}")
    fields = {"prompt": str(get("question", "")), "response_a": str(get("a", "")), "response_b": str(get("b", "")),
              "reference": str(get("reference", "") or "")}  # fmt: skip
    return fields, int(label == "A")


class VerdictData:
    """Cases rendered by the judge's own template and tokenised once: ``ids[i]``, ``labels[i]``.

    Pointwise (a :class:`PointwiseJudge`): cases with ``question``, ``reference``, ``response``, ``label`` 1/0; those
    with an empty response are left out (the judge scores them 0 itself). Pairwise (a :class:`PairwiseJudge`): pairs
    from :func:`pair_fields`, in the order given (give both orders to teach position consistency); pairs of two
    equal responses are left out (the judge gives them 0.5 itself)."""

    def __init__(self, judge: Any, cases: Sequence[Any]):
        from agentenv.rewards.base import Sample
        from agentenv.rewards.judges import PairwiseJudge

        self.cases: list[Any] = []
        self.ids: list[list[int]] = []
        self.labels: list[int] = []
        backend = judge.backend
        pairwise = isinstance(judge, PairwiseJudge)
        for case in cases:
            if pairwise:
                fields, label = pair_fields(case)
                if fields["response_a"] == fields["response_b"]:
                    continue
                render = lambda f: judge.template.render(principles=judge.principles_text(), **f)  # noqa: E731
            else:
                sample = case.sample() if hasattr(case, "sample") else Sample(**case)
                if not sample.response.strip():  # the judge scores an empty response 0 without asking the model
                    continue
                fields, label, render = judge._fields(sample), int(case.label), judge._render(judge.template)
            self.cases.append(case)
            self.ids.append(backend.encode(judge.fit(render, fields).chat)[-judge.budget() :])
            self.labels.append(label)

    def __len__(self) -> int:
        return len(self.ids)


def _batches(lengths: Sequence[int], size: int, rng: random.Random | None) -> list[list[int]]:
    """Indices in batches of similar length; shuffled (rows into buckets, then batch order) when ``rng`` is given."""
    order = list(range(len(lengths)))
    if rng is not None:
        rng.shuffle(order)
        chunks = [order[k : k + size * 20] for k in range(0, len(order), size * 20)]  # bucket locally
        order = [i for chunk in chunks for i in sorted(chunk, key=lambda i: lengths[i])]
    else:
        order.sort(key=lambda i: lengths[i])
    batches = [order[k : k + size] for k in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def autocast_of(setting: str, device: str = "cpu") -> Any:
    """The autocast context for ``setting`` (see :attr:`VerdictConfig.autocast`); a null context for float32."""
    import contextlib

    import torch

    native = device == "cuda" or (
        hasattr(torch.cpu, "_is_avx512_bf16_supported")
        and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    )
    if setting == "bf16" or (setting == "auto" and native):
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def class_weights(labels: Sequence[int], balance: bool = True) -> dict[int, float]:
    """Loss weights that make both labels count equally (all 1 when ``balance`` is off or one label is missing)."""
    positives, n = sum(labels), len(labels)
    if balance and 0 < positives < n:
        return {1: n / (2 * positives), 0: n / (2 * (n - positives))}
    return {1: 1.0, 0: 1.0}


def train_step(model: Any, data: VerdictData, batch: Sequence[int], weights: dict[int, float], yes: Any, no: Any,
               pad_id: int, cast: Any, optimizer: Any, params: Sequence[Any], where: str) -> float:  # fmt: skip
    """One optimizer step of the class-weighted BCE of the verdict logit on ``batch``; the loss. A non-finite
    loss raises :class:`FloatingPointError` naming ``where``."""
    import torch

    with cast:
        logit = verdict_logits(model, [data.ids[i] for i in batch], yes, no, pad_id).float()
    labels = torch.tensor([float(data.labels[i]) for i in batch])
    w = torch.tensor([weights[data.labels[i]] for i in batch])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, labels, weight=w)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{where}: the loss is {loss.item()}; lower lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return loss.item()


def blocks_of(model: Any) -> Any:
    """The stack of transformer blocks of a causal LM (the longest ``ModuleList`` in it)."""
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ConfigError(f"{type(model).__name__} has no stack of transformer blocks to train the top of")
    return max(lists, key=len)


def freeze_below(model: Any, train_layers: int | None) -> int:
    """Leave only the top ``train_layers`` blocks and the modules after them trainable; returns the number of
    trainable parameters. ``None`` leaves everything trainable."""
    if train_layers is None:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    blocks = blocks_of(model)
    keep = {id(p) for block in list(blocks)[-train_layers:] for p in block.parameters()}
    base = getattr(model, "base_model", model)
    inner = getattr(base, "model", None)
    norm = getattr(inner, "norm", None)  # Llama-style final norm, after the blocks
    if norm is not None:
        keep |= {id(p) for p in norm.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def verdict_logits(model: Any, rows: Sequence[Sequence[int]], yes: Any, no: Any, pad_id: int) -> Any:
    """``logsumexp(log p[yes]) - logsumexp(log p[no])`` at the next token of each row (left-padded batch)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1, :]
    logp = logits.float().log_softmax(-1)
    return logp[:, yes].logsumexp(-1) - logp[:, no].logsumexp(-1)


def evaluate(model: Any, data: VerdictData, yes: Any, no: Any, pad_id: int, batch_size: int = 32) -> dict[str, float]:
    """P(yes) on every case: AUROC, accuracy at 0.5, and the mean P(yes) of each label."""
    import torch

    scores = [0.0] * len(data)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in _batches([len(r) for r in data.ids], batch_size, None):
            logit = verdict_logits(model, [data.ids[i] for i in batch], yes, no, pad_id)
            for i, p in zip(batch, torch.sigmoid(logit).tolist(), strict=True):
                scores[i] = p
    model.train(was_training)
    labels = data.labels
    correct = sum((s >= 0.5) == bool(y) for s, y in zip(scores, labels, strict=True))
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    return {
        "auroc": auroc(scores, labels),
        "accuracy": correct / max(1, len(labels)),
        "mean_p_yes_correct": sum(pos) / max(1, len(pos)),
        "mean_p_yes_wrong": sum(neg) / max(1, len(neg)),
        "cases": len(labels),
    }


def train_verdict(
    train_cases: Sequence[Any],
    validation_cases: Sequence[Any] = (),
    *,
    model: str = "default",
    output_dir: str | Path | None = None,
    config: VerdictConfig | None = None,
    mode: str = "pointwise",
    template: str | None = None,
    num_threads: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> VerdictResult:
    """Fine-tune ``model`` so that its P(yes) under the ``template`` judge prompt fits the cases' labels.

    ``mode="pointwise"``: cases are :class:`~agentenv.rewards.antihack.AuditCase`-like (``question``,
    ``reference``, ``response``, ``label``) and the folder is a :class:`PointwiseJudge`'s model.
    ``mode="pairwise"``: cases are pairs (:func:`agentenv.envs.judge.data.pairwise_cases`; label "A"/"B") and the
    folder is a :class:`PairwiseJudge`'s: P(yes) that Response A is better. ``template`` defaults to the mode's.
    Writes the best epoch's model and tokenizer to ``output_dir/final`` (plus ``verdict.json`` with the
    history) when ``output_dir`` is given; returns the history either way.
    """
    from agentenv.models import load_model

    config = config or VerdictConfig()
    if not train_cases:
        raise ConfigError("train_verdict: no training cases")
    if mode not in ("pointwise", "pairwise"):
        raise ConfigError(f"mode={mode!r} must be 'pointwise' or 'pairwise'")
    run = _VerdictRun(load_model(model, num_threads=num_threads), config, mode, template, progress)
    run.fit(train_cases, validation_cases, keep_best=output_dir is not None)
    model_dir = run.save(Path(output_dir) / "final") if output_dir is not None else None
    result = VerdictResult(model_dir, run.step, round(run.seconds, 1), run.history, run.best, run.trainable)
    if output_dir is not None:
        (Path(output_dir) / "verdict.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


class _VerdictRun:
    """One :func:`train_verdict` run: the judge around the model, the optimizer and its schedule, the validation
    checks and the best checkpoint."""

    def __init__(self, loaded: tuple[Any, Any], config: VerdictConfig, mode: str, template: str | None,
                 progress: Callable[[dict[str, Any]], None] | None):  # fmt: skip
        import torch

        from agentenv.rewards.judges import LocalLM, PairwiseJudge, PointwiseJudge

        self.model, self.tokenizer = loaded
        self.config, self.progress = config, progress
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.backend = LocalLM((self.model, self.tokenizer))
        kind = PointwiseJudge if mode == "pointwise" else PairwiseJudge
        self.judge = kind(self.backend, template=template or mode, max_prompt_tokens=config.max_prompt_tokens)
        self.yes, self.no = (torch.tensor(x) for x in self.backend.answer_ids())
        self.pad_id = self.backend._pad_id()
        self.trainable = freeze_below(self.model, config.train_layers)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.budget = None if config.max_minutes is None else config.max_minutes * 60
        self.cast = autocast_of(config.autocast, self.model.device.type)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        self.best_state: dict[str, Any] | None = None
        self.step, self.total, self.warmup, self.seconds = 0, 1, 1, 0.0
        self.start = time.monotonic()

    def lr_at(self, step: int, elapsed: float) -> float:
        """Linear warm-up over the first ``warmup`` steps, then linear decay to 0 at the end of the run — the end
        of the epochs or of the time budget, whichever comes first (a budget that stops the run early would
        otherwise leave the learning rate at its peak)."""
        c = self.config
        done = step / self.total if self.budget is None else max(step / self.total, elapsed / self.budget)
        decay = (1 - done) / max(1e-9, 1 - c.warmup)
        return c.lr * max(0.0, min((step + 1) / self.warmup, decay, 1.0))

    def check(self, validation: VerdictData, epoch: float, keep_best: bool) -> None:
        """A validation pass; the best AUROC's weights are kept (NaN never wins)."""
        metrics = evaluate(self.model, validation, self.yes, self.no, self.pad_id) if len(validation) else {}
        row = {"step": self.step, "epoch": round(epoch, 3), "seconds": round(time.monotonic() - self.start, 1),
               **metrics}  # fmt: skip
        self.history.append(row)
        if self.progress:
            self.progress(row)
        key = metrics.get("auroc", -self.step)
        if not self.best or (key == key and key >= self.best.get("auroc", -math.inf)):
            self.best = row
            if keep_best and len(validation):
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def fit(self, train_cases: Sequence[Any], validation_cases: Sequence[Any], keep_best: bool) -> None:
        c = self.config
        train, validation = VerdictData(self.judge, train_cases), VerdictData(self.judge, validation_cases)
        weights = class_weights(train.labels, c.balance)
        steps_per_epoch = math.ceil(len(train) / c.batch_size)
        self.total = steps_per_epoch * c.epochs
        self.warmup = max(1, int(c.warmup * self.total))
        self.model.train()
        self.start = time.monotonic()
        for _ in range(c.epochs):
            out_of_time = self._epoch(train, validation, weights, steps_per_epoch, keep_best)
            if not c.eval_every or self.step % c.eval_every:
                self.check(validation, self.step / steps_per_epoch, keep_best)
            if out_of_time:
                break
        self.seconds = time.monotonic() - self.start
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def _epoch(self, train: VerdictData, validation: VerdictData, weights: Any, steps_per_epoch: int,
               keep_best: bool) -> bool:  # fmt: skip
        """One pass over the training batches; True when the time budget ran out."""
        c = self.config
        for batch in _batches([len(r) for r in train.ids], c.batch_size, self.rng):
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.step, time.monotonic() - self.start)
            loss = train_step(self.model, train, batch, weights, self.yes, self.no, self.pad_id, self.cast,
                              self.optimizer, self.params, f"train_verdict step {self.step + 1}")  # fmt: skip
            self.step += 1
            if self.progress and self.step % 10 == 0:
                lr = float(f"{self.optimizer.param_groups[0]['lr']:.3g}")
                self.progress({"step": self.step, "of": self.total, "loss": round(loss, 4), "lr": lr,
                               "seconds": round(time.monotonic() - self.start, 1)})  # fmt: skip
            if c.eval_every and self.step % c.eval_every == 0:
                self.check(validation, self.step / steps_per_epoch, keep_best)
            if self.budget is not None and time.monotonic() - self.start > self.budget:
                return True
        return False

    def save(self, final: Path) -> str:
        """The model and tokenizer to ``final``, written beside it and renamed into place."""
        tmp = final.with_name("final.tmp")
        self.model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        if final.exists():
            import shutil

            shutil.rmtree(final)
        tmp.rename(final)
        return str(final)


def mixed_batch(rng: random.Random, older: Sequence[int], newest: Sequence[int], size: int,
                newest_share: float) -> list[int]:  # fmt: skip
    """A batch of ``size`` indices without repeats: ``round(newest_share * size)`` from ``newest``, the rest from
    ``older``; either side fills in for the other when it runs short (the batch shrinks only when both do)."""
    size = min(size, len(older) + len(newest))
    take_new = min(len(newest), max(round(newest_share * size), size - len(older)))
    return rng.sample(list(newest), take_new) + rng.sample(list(older), size - take_new)


class OnlineVerdict:
    """A pointwise P(yes) judge that keeps learning while it is used (policy–judge co-training): :attr:`judge`
    scores responses, :meth:`fit` takes a few training steps on labelled cases, with the loss, the top-layer
    freezing and the bf16 matmuls of :func:`train_verdict`. One model serves both (scoring runs without grad)."""

    def __init__(
        self, model: str = "default", *, lr: float = 5e-5, batch_size: int = 16, train_layers: int | None = 8,
        max_prompt_tokens: int = 384, autocast: str = "auto", num_threads: int | None = None, seed: int = 0,
    ):  # fmt: skip
        import torch

        from agentenv.models import load_model
        from agentenv.rewards.judges import LocalLM, PointwiseJudge

        self.config = VerdictConfig(lr=lr, batch_size=batch_size, train_layers=train_layers, autocast=autocast,
                                    max_prompt_tokens=max_prompt_tokens, seed=seed)  # fmt: skip
        self.model, self.tokenizer = load_model(model, num_threads=num_threads)
        self.backend = LocalLM((self.model, self.tokenizer), batch_size=batch_size)
        self.judge = PointwiseJudge(self.backend, max_prompt_tokens=max_prompt_tokens)
        self.trainable = freeze_below(self.model, train_layers)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr)
        self.yes, self.no = (torch.tensor(x) for x in self.backend.answer_ids())
        self.pad_id = self.backend._pad_id()
        self.cast = autocast_of(autocast, self.model.device.type)
        self.rng = random.Random(seed)
        self.steps = 0

    def p_yes(self, cases: Sequence[Any]) -> list[float]:
        """The judge's P(yes) of each case (``question``, ``reference``, ``response``)."""
        return [float(s.value) for s in self.judge.batch([c.sample() for c in cases])]

    def fit(self, cases: Sequence[Any], steps: int, *, newest: Sequence[Any] = (),
            newest_share: float = 0.5) -> dict[str, float]:  # fmt: skip
        """``steps`` optimizer steps on batches drawn from ``cases`` and ``newest`` (class-balanced loss); the mean
        loss. ``newest_share`` of each batch comes from ``newest`` (the latest samples, e.g. a policy's newest
        answers, so the judge keeps up with what it is asked now), the rest from ``cases``."""
        check_range("newest_share", newest_share, 0.0, 1.0)
        data = VerdictData(self.judge, [*cases, *newest])
        if not len(data) or steps <= 0:
            return {"judge_loss": math.nan, "judge_steps": 0}
        latest = {id(c) for c in newest}
        new = [i for i, c in enumerate(data.cases) if id(c) in latest]
        old = [i for i, c in enumerate(data.cases) if id(c) not in latest]
        weights = class_weights(data.labels)
        self.model.train()
        losses = []
        for _ in range(steps):
            batch = mixed_batch(self.rng, old, new, self.config.batch_size, newest_share)
            losses.append(train_step(self.model, data, batch, weights, self.yes, self.no, self.pad_id, self.cast,
                                     self.optimizer, self.params, f"OnlineVerdict step {self.steps + 1}"))  # fmt: skip
            self.steps += 1
        return {"judge_loss": sum(losses) / len(losses), "judge_steps": len(losses)}

    def save(self, path: str | Path) -> str:
        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return str(path)
