"""The one XMC-GAN trainer. A step is d_steps - 1 `discriminator_step`s (official `train_d`) and
one `joint_step` (official `train_g_d`: one forward, D and G updated together), then the EMA
of G; `fit` is the loop around it. Progress is counted in steps and in images seen."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.runtime import autocast_dtype
from training import build, experiments
from training.checkpoint import (
    CheckpointError,
    load_latest,
    restore_trainer,
    save_checkpoint,
    trainer_state,
)
from training.config import TrainConfig, describe
from training.data.stream import DataStream, derived_seed, device_images
from training.distributed import (
    any_flag,
    average_buffers,
    average_gradients,
    barrier,
    gather_lists,
    init_distributed,
)
from training.faults import (
    NonFiniteError,
    NonFiniteStep,
    RunError,
    StopSignals,
    all_finite,
    one_line,
    warn,
)
from training.logs import TrainLogs
from training.objectives import BatchNormStatsFrozen, LossWeights
from training.run_dir import RunDir
from training.samples import sample_captions, write_samples
from training.state import TrainerProgress, TrainerState
from training.stops import StopHandling

__all__ = ["NonFiniteError", "RunError", "SubBatch", "Trainer"]


@dataclass
class SubBatch:
    """One of the d_steps slices of a step's batch, with its text features and noise."""

    real: torch.Tensor  # (n, 3, R, R) in [0, 1]
    sentence: torch.Tensor  # (n, D_s)
    words: torch.Tensor  # (n, T, D_w)
    mask: torch.Tensor  # (n, T) bool
    z: torch.Tensor  # (n, Z)
    extra: Any = None  # what the objective prepared for it (`Objective.prepare`; None: paper)


class Trainer(StopHandling, TrainerProgress):
    """Handed its text encoder and dataset (or building them from the config); any object with
    `.config` (a TextEncoderConfig) and `.encode(captions, device) -> TextFeatures` will do."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        text_encoder: Any = None,
        dataset: Any = None,
        progress: bool = True,
    ) -> None:
        self.config = c = config
        self.info = init_distributed()
        self.device = self.info.device()
        self.progress = progress and self.info.is_main
        self.batch_size = c.optim.process_batch(self.info.world_size)  # this process's, a step
        self.autocast_dtype = autocast_dtype(c.run.amp, self.device)
        self.channels_last = c.run.channels_last == "on" or (
            c.run.channels_last == "auto" and self.device.type == "cuda"
        )
        self.model_configs = c.model_configs()
        self.described = describe(c)
        self.run = RunDir(run_dir)
        self.run.check_config(self.described)
        self._status(f"building the {c.preset} networks")
        nets = build.networks(c, self.model_configs, self.device, self.channels_last, self.info)
        self.generator, self.discriminator, self.ema = nets.generator, nets.discriminator, nets.ema
        self.opt_g, self.opt_d = nets.opt_g, nets.opt_d
        self.g_forward, self.d_forward = nets.g_forward, nets.d_forward
        self.image_encoder = build.image_encoder(c, self.device)
        self.weights = LossWeights.from_config(c.objective, self.model_configs.discriminator)
        resolution = self.model_configs.generator.resolution
        if dataset is None:
            self._status(f"reading the data index of {c.data.source}")
        self.dataset = dataset if dataset is not None else build.dataset(c, resolution)
        if text_encoder is None:
            self._status(f"loading the text encoder {self.model_configs.text_encoder.name_or_path}")
        encoder = build.text_encoder(text_encoder, self.model_configs, self.device)
        if c.data.text_cache not in ("off", "memory"):
            self._status(f"opening the text feature cache {c.data.text_cache}")
        self.text_encoder = build.cached_text_encoder(c, encoder, self.dataset, self.progress)
        loader = {"num_workers": c.run.num_workers, "pin_memory": self.device.type == "cuda"}
        self.data = DataStream(self.dataset, self.batch_size, c.run.seed, self.info, **loader)
        self.state = TrainerState(
            nets, self.data, self.text_encoder, self.device, self.autocast_dtype
        )
        # the one hook of the project's own experiments: the paper's objective unless one is on
        self.objective = experiments.objective(
            c,
            self.weights,
            rank=self.info.rank,
            text_encoder=self.text_encoder,
            discriminator=self.discriminator,
            device=self.device,
            autocast=self.state.autocast,
        )
        self.resumed_from: Path | None = None
        self._saved_images = -1
        self._open_run_dir()

    # ------------------------------------------------------------------ setup
    def _status(self, doing: str) -> None:
        """One line per loading phase before the progress bar (a start is never silent)."""
        if self.progress:
            print(f"xmc-train: {doing}...", file=sys.stderr, flush=True)

    def _open_run_dir(self) -> None:
        """Write config.json, drop stale temp files, and resume from the newest checkpoint that
        passes its checksum (warning about any newer one that did not)."""
        barrier(self.info)  # every rank has checked the old config before rank 0 rewrites it
        if self.info.is_main:
            for stale in self.run.create(self.described):
                warn(f"removed {stale}, a temporary file left by an interrupted write")
        barrier(self.info)
        self._status(f"looking for checkpoints in {self.run.path}")
        try:
            latest = load_latest(self.run.path, quarantine=self.info.is_main)
        except CheckpointError as error:
            raise RunError(str(error)) from None
        if latest is None:  # a fresh run: from scratch, or G (and D) from saved ones
            self._saved_images = 0
            if self.config.run.init_generator:
                build.initial_generator(self.generator, self.ema, self.config.run.init_generator)
            if self.config.run.init_discriminator:
                build.initial_discriminator(self.discriminator, self.config.run.init_discriminator)
            return
        path, state, warnings = latest
        for warning in warnings:
            warn(warning)
        self.load_state(state, path)
        self.resumed_from, self._saved_images = path, self.images_seen

    # ------------------------------------------------------------------ state
    def state_dict(self, stream_positions: list[list[int]] | None = None) -> dict[str, Any]:
        """Everything a resume needs, as tensors and primitives (see training.checkpoint)."""
        return trainer_state(self.state, self.config, stream_positions)

    def load_state(self, state: dict[str, Any], path: Path) -> None:
        restore_trainer(self.state, state, path)

    def save(self) -> Path | None:
        """Checkpoint (main process), then keep the newest `keep_checkpoints`. Non-finite
        weights are never written: the last good checkpoint stays the newest."""
        path = self.run.checkpoint_path(self.step)
        if self._saved_images == self.images_seen and path.exists():
            return path  # nothing new since the last save
        networks = (self.generator, self.discriminator, self.ema)
        if not all_finite(t for m in networks for t in m.state_dict().values()):
            raise NonFiniteError(
                f"the weights became non-finite at step {self.step}; not saved, the last good "
                f"checkpoint is {self._last_checkpoint()}"
            )
        positions = gather_lists(self.data.stream_positions, self.info)  # every rank's shards
        if self.info.is_main:
            save_checkpoint(path, self.state_dict(positions))
            self.run.prune(self.config.run.keep_checkpoints)
        self._saved_images = self.images_seen
        return path

    def _last_checkpoint(self) -> str:
        found = self.run.checkpoints()
        return str(found[-1]) if found else "none (no checkpoint written yet)"

    # ------------------------------------------------------------------ data
    def batches(self) -> Generator[dict[str, Any], None, None]:
        """This rank's batches, from the saved position on, epoch after epoch."""
        return self.data.batches()

    def _noise(self, n: int, sub: int) -> torch.Tensor:
        seed = derived_seed(self.config.run.seed, self.step, self.info.rank, sub)
        rng = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.model_configs.generator.z_dim, generator=rng).to(self.device)

    def sub_batches(self, batch: dict[str, Any]) -> list[SubBatch]:
        t = self.text_encoder.encode(list(batch["caption"]), self.device)  # TextFeatures (B, ...)
        images = device_images(batch["image"], self.device)  # (B, 3, R, R) float in [0, 1]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        n = images.shape[0] // self.config.optim.d_steps
        parts = [slice(k * n, (k + 1) * n) for k in range(self.config.optim.d_steps)]
        extra = self.objective.prepare(batch["caption"], self.step, parts)
        return [
            SubBatch(images[p], t.sentence[p], t.words[p], t.mask[p], self._noise(n, k), extra[k])
            for k, p in enumerate(parts)
        ]

    # ------------------------------------------------------------------ the two phases
    def _check(self, phase: str, losses: dict[str, torch.Tensor], modules: list[nn.Module]):
        """Raise NonFiniteStep (on every rank alike) if a loss or an averaged gradient is not
        finite; the caller then skips the optimiser steps."""
        grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
        bad = not all_finite(list(losses.values()) + grads)
        if any_flag(bad, self.info, self.device):
            for module in modules:
                module.zero_grad(set_to_none=True)
            raise NonFiniteStep(phase, {k: float(v.detach()) for k, v in losses.items()})

    def discriminator_step(self, sub: SubBatch) -> dict[str, float]:
        """Update D alone on one sub-batch (official `train_d`): G makes the fakes without a
        graph and its BN running statistics are left as they were."""
        with self.state.autocast():
            with torch.no_grad(), BatchNormStatsFrozen(self.generator):
                fake = self.g_forward(sub.z, sub.sentence, sub.words, sub.mask)  # (n, 3, R, R)
            out = self.d_forward(torch.cat([sub.real, fake]), sub.sentence)
        d_loss, d_terms = self.objective.discriminator_loss(out, sub)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        average_gradients(self.discriminator, self.info)
        self._check("discriminator_step", {"d_loss": d_loss}, [self.discriminator])
        self.opt_d.step()
        return {"d_loss": d_loss.item(), **{f"d_{k}": v.item() for k, v in d_terms.items()}}

    def joint_step(self, sub: SubBatch) -> dict[str, float]:
        """Update D and G together from one forward (official `train_g_d`, its two VJPs): each
        network from its own loss, through `backward(inputs=...)`."""
        bn_before = BatchNormStatsFrozen(self.generator).save()  # put back if skipped
        with self.state.autocast():
            fake = self.g_forward(sub.z, sub.sentence, sub.words, sub.mask)  # (n, 3, R, R)
            out = self.d_forward(torch.cat([sub.real, fake]), sub.sentence)
        d_loss, d_terms = self.objective.discriminator_loss(out, sub)
        cnn_real = cnn_fake = None
        if self.image_encoder is not None:
            with self.state.autocast():
                with torch.no_grad():
                    cnn_real = self.image_encoder(sub.real)
                cnn_fake = self.image_encoder(fake)
        g_loss, g_terms = self.objective.generator_loss(out, sub, cnn_real, cnn_fake)
        self.opt_d.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        d_loss.backward(inputs=list(self.discriminator.parameters()), retain_graph=True)
        g_loss.backward(inputs=list(self.generator.parameters()))
        average_gradients(self.discriminator, self.info)
        average_gradients(self.generator, self.info)
        losses = {"d_loss": d_loss, "g_loss": g_loss}
        try:
            self._check("joint_step", losses, [self.discriminator, self.generator])
        except NonFiniteStep:
            bn_before.restore()
            raise
        self.opt_d.step()
        self.opt_g.step()
        stats = {k: v.item() for k, v in losses.items()}
        stats.update({f"d_{k}": v.item() for k, v in d_terms.items()})
        stats.update({f"g_{k}": v.item() for k, v in g_terms.items()})
        return stats

    def train_step(self, batch: dict[str, Any]) -> dict[str, float] | None:
        """d_steps - 1 discriminator steps, one joint step, the EMA. A phase with a non-finite
        loss or gradient skips the rest of the step (no optimiser step, no EMA) and returns
        None; `max_bad_steps` such steps in a row raise NonFiniteError."""
        self.images_seen += len(batch["image"]) * self.info.world_size
        *d_only, last = self.sub_batches(batch)
        self.generator.train()
        self.discriminator.train()
        stats: dict[str, float] = {}
        try:
            for sub in d_only:
                stats.update(self.discriminator_step(sub))
            stats.update(self.joint_step(last))
        except NonFiniteStep as skipped:
            self._skip(skipped)
            return None
        self._update_ema()
        self.step += 1
        self.bad_in_row = 0
        return stats

    def _skip(self, skipped: NonFiniteStep) -> None:
        self.skipped_steps += 1
        self.bad_in_row += 1
        warn(f"step {self.step + 1} skipped: {skipped} ({self.bad_in_row} in a row)")
        if self.bad_in_row >= self.config.run.max_bad_steps:
            raise NonFiniteError(
                f"{self.bad_in_row} steps in a row were non-finite (max_bad_steps), the last "
                f"at step {self.step + 1}: {skipped}; stopped, the last good checkpoint "
                f"{self._last_checkpoint()} is untouched"
            )

    @torch.no_grad()
    def _update_ema(self) -> None:
        # BN statistics are per device (official); average them so every rank, the EMA and
        # the checkpoint hold the same
        average_buffers(self.generator, self.info)
        build.update_ema(self.ema, self.generator, self.config.optim.ema_decay)

    # ------------------------------------------------------------------ samples
    def write_samples(self, captions: list[str]) -> Path:
        return write_samples(self.state, self.run, captions)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train to config.optim.steps. Saves every checkpoint_every steps, at the end, on SIGINT /
        SIGTERM or a DataLoader worker's death (on any rank: a stop, exit 0) and after an
        error between two steps (one process only); never after a failed step."""
        c, world = self.config, self.info.world_size
        self._status("opening the logs (stats.jsonl, TensorBoard)")
        logs = TrainLogs.for_run(self.state, self.run, steps=c.optim.steps, bar=self.progress)
        captions = sample_captions(c, self.dataset) if self.info.is_main else []
        batches = self.batches()
        sums: dict[str, float] = defaultdict(float)
        count, tick = 0, time.perf_counter()
        interrupted = mid_step = False
        self._record("start")
        with StopSignals() as stop:
            try:
                while self.step < c.optim.steps:
                    batch = self._next_batch(batches, stop)
                    if batch is None:
                        interrupted = True
                        break
                    self.bad_images += int(torch.as_tensor(batch.get("skipped", 0)).sum())
                    mid_step = True
                    stats = self.train_step(batch)
                    mid_step = False
                    logs.advance(len(batch["image"]) * world)
                    if stats is None:
                        continue
                    for k, v in stats.items():
                        sums[k] += v
                    count += 1
                    if self.step % c.run.log_every == 0 or self.step == c.optim.steps:
                        logs.write(logs.record(self.state, sums, count, time.perf_counter() - tick))
                        sums.clear()
                        count, tick = 0, time.perf_counter()
                    if self.info.is_main and (
                        self.step % c.run.sample_every == 0 or self.step == c.optim.steps
                    ):
                        self._write_samples(captions)
                    if self.step % c.run.checkpoint_every == 0:
                        self.save()
                path = self.save()
            except BaseException as error:
                self._save_after(error, mid_step)
                self._record("end", how=f"error: {one_line(error)}")
                self._forget_failed_start()
                raise
            finally:
                batches.close()  # shuts the DataLoader workers down now
                logs.close()
        self._record("end", how="interrupted" if interrupted else "done")
        return {
            "step": self.step,
            "images": self.images_seen,
            "interrupted": interrupted,
            "checkpoint": str(path),
            "skipped_steps": self.skipped_steps,
            "bad_records": self.bad_records,
        }

    def _write_samples(self, captions: list[str]) -> None:
        try:
            self.write_samples(captions)
        except OSError as error:  # a full disk: name the file, which PIL's error does not
            where = self.run.sample_path(self.step)
            raise RunError(f"cannot write samples {where}: {error}") from None

    def _record(self, event: str, **fields: Any) -> None:
        if self.info.is_main:
            self.run.record(
                event,
                step=self.step,
                images=self.images_seen,
                batch=self.batch_size * self.info.world_size,
                **fields,
            )
