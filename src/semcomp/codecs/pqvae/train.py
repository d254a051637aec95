"""Training PQVAE-shared (and the baselines) on CLIP embeddings.

Two schedules (``TrainConfig.schedule``):

- ``semcomp`` (the default): the paper's hyper-parameters as DESIGN.md lists
  them (the paper itself, Sec. 3.3 and 4.1, gives the loss and the 800/200
  ImageNet class split but no optimiser settings): α = 10 on the cosine term,
  β = 0.25 on commitment, ONE Adam (lr 1e-5, weight decay 5e-4) for the whole
  run with the learning rate ×0.1 every 20 epochs, batch 64, 60 epochs; keeps
  the checkpoint with the best validation cosine and stops early when it stops
  improving.
- ``reference``: what the authors' public code does. It builds Adam and StepLR
  anew at the start of every epoch, so the step decay never fires (the rate stays
  1e-5) and Adam's moments restart each epoch; it trains 100 epochs with no
  early stopping and keeps the checkpoint with the best zero-shot top-1 on the
  held-out classes (validation cosine when no class text embeddings are given).
  Its model differs too (``model.REFERENCE_MODEL``: codebook U(−1, 1), no
  convolution biases, transposed convolutions in the residual blocks).

Each epoch reports the training loss, validation cosine, zero-shot top-1/top-5
on the held-out classes (when class text embeddings are given), codebook
utilisation and the entropy of the indices. Training is seeded and
deterministic on CPU and resumes from its last epoch.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from semcomp.codecs.pqvae.checkpoint import Checkpoint
from semcomp.codecs.pqvae.data import EmbeddingSet, split
from semcomp.codecs.pqvae.model import EmbeddingCodecModel, PQVAEConfig
from semcomp.errors import ConfigError
from semcomp.metrics.zeroshot import mean_cosine, zero_shot
from semcomp.train_state import load_last, save_last

BEST = "best.safetensors"


SCHEDULES = ("semcomp", "reference")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``semcomp`` or ``reference`` (the authors' code; see the module docstring)
    schedule: Literal["semcomp", "reference"] = "semcomp"
    epochs: int = Field(default=60, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-5, gt=0)
    weight_decay: float = Field(default=5e-4, ge=0)
    lr_step: int = Field(default=20, ge=1)
    lr_gamma: float = Field(default=0.1, gt=0)
    alpha: float = Field(default=10.0, ge=0)
    beta: float = Field(default=0.25, ge=0)
    split: Literal["class", "random"] = "class"
    #: fraction of classes (class split) or rows (random split) held out
    validation: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    #: epochs without a better validation cosine before stopping
    patience: int = Field(default=10, ge=1)
    #: initialise codebooks by k-means on the first encoder outputs
    kmeans_init: bool = False
    #: move codewords no training batch used to random encoder outputs, each epoch
    reinit_dead: bool = False
    device: str = "cpu"
    #: validation classes given by the user (a published split) instead of drawn at random
    val_classes: tuple[int, ...] | None = None

    @classmethod
    def for_schedule(cls, schedule: str = "semcomp", **settings: Any) -> TrainConfig:
        """A schedule's defaults (``reference``: 100 epochs), with ``settings`` that are not
        None on top."""
        if schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {schedule!r} (schedules: {', '.join(SCHEDULES)})")
        defaults: dict[str, Any] = {"epochs": 100} if schedule == "reference" else {}
        given = {key: value for key, value in settings.items() if value is not None}
        return cls(schedule=schedule, **(defaults | given))

    @property
    def reference(self) -> bool:
        return self.schedule == "reference"


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    val_cosine: float
    val_top1: float | None
    val_top5: float | None
    utilisation: float
    index_entropy_bits: float
    lr: float
    seconds: float


def index_counts(indices: np.ndarray, alphabet: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each index value: overall (K,) and per position (symbols, K)."""
    overall = np.bincount(indices.ravel(), minlength=alphabet).astype(np.float64)
    positional = np.stack([np.bincount(column, minlength=alphabet) for column in indices.T]).astype(
        np.float64
    )
    return overall, positional


def entropy_bits(counts: np.ndarray) -> float:
    p = counts / max(counts.sum(), 1)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def kmeans(points: Any, k: int, iterations: int, generator: Any) -> Any:
    """Plain Lloyd's k-means (torch), seeded; empty clusters keep their centre."""
    import torch

    centres = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    for _ in range(iterations):
        assignment = torch.cdist(points, centres).argmin(1)
        for cluster in range(k):
            members = points[assignment == cluster]
            if len(members):
                centres[cluster] = members.mean(0)
    return centres


#: settings added after runs were first saved: at their defaults they are left out of a run's
#: fingerprint, so that such a run still resumes
LATER_SETTINGS = ("codebook_init", "conv_bias", "residual_transpose", "schedule", "val_classes")


def _without_later_defaults(settings: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in settings.items()
        if not (key in LATER_SETTINGS and value == defaults.get(key))
    }


class Trainer:
    def __init__(
        self,
        model_config: PQVAEConfig,
        train_config: TrainConfig,
        data: EmbeddingSet,
        text_embeddings: np.ndarray | None,
        out_dir: Path,
        *,
        clip: dict[str, str] | None = None,
        log: Callable[[str], None] = print,
        progress: bool = True,
    ):
        import torch

        if data.dim != model_config.input_dim:
            raise ConfigError(
                f"embeddings are {data.dim}-d but the model expects input_dim="
                f"{model_config.input_dim}"
            )
        self.model_config, self.config = model_config, train_config
        self.data, self.text = data, text_embeddings
        self.out_dir = Path(out_dir)
        self.clip = clip if clip is not None else data.clip
        self.log, self.progress = log, progress
        if train_config.val_classes is not None:
            is_val = np.isin(data.labels, train_config.val_classes)
            self.train_rows, self.val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
            if not len(self.val_rows) or not len(self.train_rows):
                raise ConfigError(
                    "the given validation classes leave no training or no validation rows"
                )
        else:
            self.train_rows, self.val_rows = split(
                data, train_config.split, train_config.validation, train_config.seed
            )
        self.val_classes = np.unique(data.labels[self.val_rows])
        torch.manual_seed(train_config.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.device = train_config.device
        self.model = EmbeddingCodecModel(model_config).to(self.device)
        self._new_optimiser()
        self.history: list[EpochReport] = []
        self.start_epoch = 1
        #: the best validation score so far (top-1 or cosine: see ``selected_by``)
        self.best_score = -math.inf
        self.best_cosine = -math.inf
        self.stale_epochs = 0

    def _new_optimiser(self) -> None:
        """Adam and its StepLR schedule (the reference schedule calls this every epoch)."""
        import torch

        config = self.config
        parameters = list(self.model.parameters())
        self.optimizer = torch.optim.Adam(
            parameters or [torch.nn.Parameter(torch.zeros(1))],
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.lr_step, gamma=config.lr_gamma
        )

    @property
    def selected_by(self) -> str:
        """What picks the best checkpoint: zero-shot top-1 (reference, with class texts) or
        validation cosine."""
        return "val_top1" if self.config.reference and self.text is not None else "val_cosine"

    # ---- state on disk -------------------------------------------------------------------

    def _fingerprint(self) -> dict[str, Any]:
        model = self.model_config.model_dump(mode="json")
        train = self.config.model_dump(mode="json", exclude={"epochs", "patience", "device"})
        return {
            "model": _without_later_defaults(model, PQVAEConfig().model_dump(mode="json")),
            "train": _without_later_defaults(train, TrainConfig().model_dump(mode="json")),
            "rows": len(self.data.labels),
        }

    def resume(self) -> bool:
        """Continue from ``last.safetensors`` if it belongs to the same configuration."""
        last = load_last(
            self.out_dir,
            self._fingerprint(),
            self.optimizer,
            "a training run of another configuration",
        )
        if last is None:
            return False
        model_state, state = last
        self.model.load_state_dict(model_state)
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = [EpochReport(**row) for row in state["history"]]
        self.start_epoch = state["epoch"] + 1
        self.best_cosine = state["best_cosine"]
        self.best_score = state.get("best_score", self.best_cosine)
        self.stale_epochs = state["stale_epochs"]
        self.log(f"resuming {self.out_dir} after epoch {state['epoch']}")
        return True

    def _save_last(self, epoch: int) -> None:
        state = {
            "fingerprint": self._fingerprint(),
            "epoch": epoch,
            "scheduler": self.scheduler.state_dict(),
            "history": [asdict(r) for r in self.history],
            "best_cosine": self.best_cosine,
            "best_score": self.best_score,
            "stale_epochs": self.stale_epochs,
        }
        save_last(self.out_dir, self.model.state_dict(), self.optimizer, state)

    def _write_history(self) -> None:
        with (self.out_dir / "history.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(self.history[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in self.history)

    # ---- helpers ---------------------------------------------------------------------------

    def _batches(self, rows: np.ndarray, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(rows)
        size = self.config.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def _tensor(self, rows: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(self.data.embeddings[rows]).to(self.device)

    def _indices(self, rows: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(rows), 4096):
            out.append(self.model.indices(self._tensor(rows[start : start + 4096])).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model_config.symbols), np.int64)

    def _decoded(self, rows: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(rows), 4096):
                x = self._tensor(rows[start : start + 4096])
                if self.model.quantised:
                    out.append(self.model.decode(self.model.indices(x)).cpu().numpy())
                else:
                    out.append(torch.nn.functional.normalize(x, dim=-1).cpu().numpy())
        return np.concatenate(out)

    def _subvectors(self, rows: np.ndarray) -> Any:
        import torch

        with torch.no_grad():
            latent = self.model.latent(torch.nn.functional.normalize(self._tensor(rows), dim=-1))
            return self.model.quantizer.subvectors(latent)  # (B, P, d, s)

    def kmeans_initialise(self) -> None:
        """Codebook(s) from k-means on encoder outputs of up to 20,000 training rows."""
        import torch

        generator = torch.Generator().manual_seed(self.config.seed)
        rows = self.train_rows[:20_000]
        vectors = self._subvectors(rows)
        quantizer = self.model.quantizer
        with torch.no_grad():
            if quantizer.codebook.shape[0] == 1:
                points = vectors.reshape(-1, vectors.shape[-1])
                quantizer.codebook[0] = kmeans(points, quantizer.k, 20, generator)
            else:
                for subspace in range(quantizer.d):
                    points = vectors[:, :, subspace].reshape(-1, vectors.shape[-1])
                    quantizer.codebook[subspace] = kmeans(points, quantizer.k, 20, generator)

    def reinit_dead_codewords(self, used: np.ndarray) -> int:
        """Move unused codewords onto random encoder outputs; returns how many moved."""
        import torch

        quantizer = self.model.quantizer
        dead = np.flatnonzero(used == 0)
        if not len(dead):
            return 0
        rng = np.random.default_rng([self.config.seed, len(self.history)])
        vectors = self._subvectors(rng.choice(self.train_rows, size=min(512, len(self.train_rows))))
        pool = vectors.reshape(-1, vectors.shape[-1])
        with torch.no_grad():
            for flat in dead:
                book, word = divmod(int(flat), quantizer.k)
                quantizer.codebook[book, word] = pool[int(rng.integers(len(pool)))]
        return len(dead)

    # ---- the loop ------------------------------------------------------------------------------

    def evaluate(self, rows: np.ndarray) -> dict[str, Any]:
        decoded = self._decoded(rows)
        result: dict[str, Any] = {"cosine": mean_cosine(decoded, self.data.embeddings[rows])}
        if self.text is not None:
            shot = zero_shot(decoded, self.data.labels[rows], self.text, self.val_classes)
            result |= {"top1": shot.top1, "top5": shot.top5}
        return result

    def codebook_health(self, rows: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(utilisation, index entropy in bits, usage per codeword (books × K))."""
        if not self.model.quantised:
            return 1.0, 0.0, np.ones(1)
        indices = self._indices(rows)
        overall, _ = index_counts(indices, self.model_config.alphabet)
        if self.model_config.architecture == "vqvae-kmeans":
            d = self.model_config.subspaces
            per_book = indices.reshape(len(indices), -1, d)
            usage = np.stack(
                [
                    np.bincount(per_book[:, :, s].ravel(), minlength=self.model_config.alphabet)
                    for s in range(d)
                ]
            ).ravel()
        else:
            usage = overall
        return float(np.mean(usage > 0)), entropy_bits(overall), usage

    def train(self) -> Checkpoint:
        import torch
        from tqdm.auto import tqdm

        config = self.config
        resumed = self.resume()
        has_codebook = hasattr(self.model.quantizer, "codebook")
        wants_kmeans = config.kmeans_init or self.model_config.architecture == "vqvae-kmeans"
        if has_codebook and wants_kmeans and not resumed:
            self.kmeans_initialise()
        trainable = self.model_config.architecture not in ("float32", "float16")
        last_epoch = self.start_epoch - 1
        for epoch in range(self.start_epoch, config.epochs + 1 if trainable else 1):
            started = time.perf_counter()
            if config.reference:
                self._new_optimiser()  # as the reference code: fresh Adam and StepLR each epoch
            self.model.train()
            losses = []
            batches = self._batches(self.train_rows, epoch)
            for rows in tqdm(
                batches, desc=f"epoch {epoch}", disable=not self.progress, leave=False
            ):
                x = torch.nn.functional.normalize(self._tensor(rows), dim=-1)
                decoded, codebook, commitment = self.model(x)
                cosine_loss = (1 - (decoded * x).sum(-1)).mean()
                loss = config.alpha * cosine_loss + codebook + config.beta * commitment
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
            self.scheduler.step()
            self.model.eval()
            utilisation, entropy, usage = self.codebook_health(self.train_rows[:20_000])
            if config.reinit_dead and has_codebook:
                moved = self.reinit_dead_codewords(usage)
                if moved:
                    self.log(f"  re-initialised {moved} dead codeword(s)")
            metrics = self.evaluate(self.val_rows)
            report = EpochReport(
                epoch=epoch,
                train_loss=float(np.mean(losses)) if losses else 0.0,
                val_cosine=metrics["cosine"],
                val_top1=metrics.get("top1"),
                val_top5=metrics.get("top5"),
                utilisation=utilisation,
                index_entropy_bits=entropy,
                lr=float(self.optimizer.param_groups[0]["lr"]),
                seconds=time.perf_counter() - started,
            )
            self.history.append(report)
            top = f" top1 {report.val_top1:.3f}" if report.val_top1 is not None else ""
            self.log(
                f"epoch {epoch}: loss {report.train_loss:.4f} val cos {report.val_cosine:.4f}{top} "
                f"codebook use {utilisation:.2f} index entropy {entropy:.3f} bits"
            )
            last_epoch = epoch
            score = report.val_top1 if self.selected_by == "val_top1" else report.val_cosine
            if score is not None and score > self.best_score + 1e-6:
                self.best_score, self.stale_epochs = score, 0
                self.best_cosine = report.val_cosine
                self.checkpoint().save(self.out_dir / BEST)
            else:
                self.stale_epochs += 1
            self._save_last(epoch)
            self._write_history()
            if not config.reference and self.stale_epochs >= config.patience:
                self.log(
                    f"stopping early: no better validation cosine for {config.patience} epochs"
                )
                break
        if not trainable or not (self.out_dir / BEST).exists():
            self.checkpoint().save(self.out_dir / BEST)
        from semcomp.codecs.pqvae.checkpoint import load_checkpoint

        best = load_checkpoint(self.out_dir / BEST)
        self.log(f"best checkpoint: {self.out_dir / BEST} (after epoch {last_epoch})")
        return best

    def checkpoint(self) -> Checkpoint:
        """The current model with index priors counted on the training split."""
        if self.model.quantised:
            indices = self._indices(self.train_rows)
            prior, positional = index_counts(indices, self.model_config.alphabet)
        else:
            prior = np.ones(2)
            positional = np.ones((1, 2))
        import copy

        model = copy.deepcopy(self.model).cpu().eval()
        return Checkpoint(
            config=self.model_config,
            model=model,
            prior=prior,
            positional_prior=positional,
            clip=self.clip,
            training={
                "train": self.config.model_dump(mode="json"),
                "epochs_run": len(self.history),
                "best_val_cosine": self.best_cosine,
                "selected_by": self.selected_by,
                "best_score": self.best_score,
                "train_rows": len(self.train_rows),
                "val_rows": len(self.val_rows),
                "val_classes": [int(c) for c in self.val_classes],
                # what it was trained on, so that evaluating another dataset is recognised
                "class_names": list(self.data.class_names),
                "dataset": {k: v for k, v in self.data.dataset.items() if k != "class_ids"},
            },
        )
