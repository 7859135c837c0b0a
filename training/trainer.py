"""The one XMC-GAN trainer: a step is d_steps - 1 D-only updates, then one forward that updates
D and G together (official `train_step`: `train_d` on the first sub-batches, `train_g_d` on the
last), followed by the EMA of G."""

from __future__ import annotations

import copy
import json
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.artifacts import write_json_atomic
from models.discriminator import Discriminator
from models.generator import Generator
from models.images import image_grid
from models.runtime import autocast, autocast_dtype, sample_z
from models.text_encoder import TextEncoder
from training.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.config import TrainConfig, describe
from training.distributed import (
    DistInfo,
    any_flag,
    average_buffers,
    average_gradients,
    barrier,
    broadcast_module,
    init_distributed,
)
from training.objectives import (
    BatchNormStatsFrozen,
    LossWeights,
    discriminator_loss,
    generator_loss,
)


class RunError(RuntimeError):
    """A run directory that cannot be started or resumed; the message says why."""


def derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch, this rank's share, starting at a saved batch position."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int, start_batch: int, info: DistInfo):
        self.n, self.batch, self.seed, self.epoch, self.start, self.info = (
            n,
            batch,
            seed,
            epoch,
            start_batch,
            info,
        )

    def batches_per_epoch(self) -> int:
        return self.n // self.info.world_size // self.batch

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(
            self.n, generator=torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        )
        mine = order[self.info.rank :: self.info.world_size][
            : self.batches_per_epoch() * self.batch
        ]
        return iter(mine[self.start * self.batch :].tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start) * self.batch


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which saves and stops
    (a Ctrl-C or `kill` of the process group would otherwise kill them mid-batch)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path, progress: bool = True) -> None:
        self.config = c = config
        self.run_dir = Path(run_dir)
        self.info = init_distributed()
        self.device = (
            torch.device(f"cuda:{self.info.local_rank}")
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        self.progress = progress and self.info.is_main
        self.autocast_dtype = autocast_dtype(c.amp, self.device)
        self.channels_last = c.channels_last == "on" or (
            c.channels_last == "auto" and self.device.type == "cuda"
        )
        models = c.model_configs()
        self.model_configs = models
        torch.manual_seed(c.seed)
        self.generator = Generator(models.generator).to(self.device)
        self.discriminator = Discriminator(models.discriminator).to(self.device)
        if self.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        broadcast_module(self.generator, self.info)
        broadcast_module(self.discriminator, self.info)
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.text_encoder = TextEncoder.from_config(models.text_encoder).to(self.device)
        self.image_encoder = None
        if c.image_encoder and "img" in c.losses:
            from models.image_encoder import PretrainedImageEncoder

            self.image_encoder = PretrainedImageEncoder.from_pretrained(c.image_encoder).to(
                self.device
            )
        self.opt_g = torch.optim.Adam(self.generator.parameters(), c.lr_g, (c.beta1, c.beta2))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), c.lr_d, (c.beta1, c.beta2))
        self.weights = LossWeights(
            sent=c.w_sent if "sent" in c.losses else 0.0,
            word=c.w_word if "word" in c.losses else 0.0,
            img=c.w_img if "img" in c.losses else 0.0,
            adversarial=c.adversarial,
            infomax_d=c.infomax_beta if c.infomax else 0.0,
            infomax_g=c.infomax_alpha if c.infomax else 0.0,
        )
        self.g_forward: nn.Module = self.generator
        self.d_forward: nn.Module = self.discriminator
        if c.compile:
            self.g_forward = torch.compile(self.generator)
            self.d_forward = torch.compile(self.discriminator)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.stop_requested = False
        self.dataset = self._dataset()
        self._prepare_run_dir()

    # ------------------------------------------------------------------ setup
    def _dataset(self):
        from training.data.coco import CocoCaptions

        c = self.config
        if not c.data:
            raise RunError(
                "no training data: pass --data ROOT (a COCO-captions layout; "
                "`xmc-shapes make ROOT` writes the shapes benchmark)"
            )
        return CocoCaptions(
            c.data,
            c.train_split,
            self.model_configs.generator.resolution,
            center_crop=c.center_crop,
            random_flip=c.random_flip,
            seed=c.seed,
        )

    def _prepare_run_dir(self) -> None:
        """A new run writes config.json; an existing one must match it and is resumed."""
        described = json.loads(json.dumps(describe(self.config)))  # tuples as JSON lists
        config_path = self.run_dir / "config.json"
        if config_path.exists():
            saved = json.loads(config_path.read_text())
            changed = {
                k
                for k in ("generator", "discriminator", "text_encoder")
                if saved.get(k) != described[k]
            }
            if changed:
                raise RunError(
                    f"{self.run_dir} holds a run with a different "
                    f"{', '.join(sorted(changed))}; pick another --run-dir"
                )
        barrier(self.info)  # every rank has read the old config before rank 0 rewrites it
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "samples").mkdir(exist_ok=True)
            write_json_atomic(config_path, described)
        ckpt = self.run_dir / CHECKPOINT_NAME
        if ckpt.exists():
            self.load(ckpt)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": rng_state(),
            "world_size": self.info.world_size,
            "train": describe(self.config)["train"],
        }

    def save(self) -> Path:
        path = self.run_dir / CHECKPOINT_NAME
        if self.info.is_main:
            save_checkpoint(path, self.state_dict())
        return path

    def load(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state["world_size"] != self.info.world_size:
            raise RunError(
                f"{path} was written by {state['world_size']} processes; resume it "
                f"with the same number (got {self.info.world_size}) so the data "
                "order stays the same"
            )
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        set_rng_state(state["rng"])

    # ------------------------------------------------------------------ data
    def batches(self) -> Iterator[dict[str, Any]]:
        """This rank's batches, from the saved position on, epoch after epoch."""
        c = self.config
        while True:
            self.dataset.set_epoch(self.epoch)
            sampler = EpochSampler(
                len(self.dataset), c.batch_size, c.seed, self.epoch, self.batch_in_epoch, self.info
            )
            if sampler.batches_per_epoch() == 0:
                raise RunError(
                    f"{len(self.dataset)} images cannot fill one batch of "
                    f"{c.batch_size} per process"
                )
            loader = torch.utils.data.DataLoader(
                self.dataset,
                batch_size=c.batch_size,
                sampler=sampler,
                drop_last=True,
                num_workers=c.num_workers,
                persistent_workers=False,
                worker_init_fn=_ignore_stop_signals if c.num_workers else None,
                pin_memory=self.device.type == "cuda",
            )
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _noise(self, n: int, sub: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(
            derived_seed(self.config.seed, self.step, self.info.rank, sub)
        )
        return torch.randn(n, self.model_configs.generator.z_dim, generator=g).to(self.device)

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        return autocast(self.device, self.autocast_dtype)

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return (
            images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
        )

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        c, w, gather = self.config, self.weights, self.config.gather_negatives
        text = self.text_encoder.encode(batch["caption"], self.device)
        images = self._images(batch["image"])
        n = images.shape[0] // c.d_steps
        stats: dict[str, float] = {}
        self.generator.train()
        self.discriminator.train()
        for sub in range(c.d_steps):
            part = slice(sub * n, (sub + 1) * n)
            real, words, mask = images[part], text.words[part], text.mask[part]
            sentence = text.sentence[part]
            z = self._noise(n, sub)
            last = sub == c.d_steps - 1
            with self._autocast():
                if last:
                    fake = self.g_forward(z, sentence, words, mask)
                else:  # D-only update: G's batch statistics are not kept (official train_d)
                    with torch.no_grad(), BatchNormStatsFrozen(self.generator):
                        fake = self.g_forward(z, sentence, words, mask)
                out = self.d_forward(torch.cat([real, fake]), sentence)
            d_loss, d_terms = discriminator_loss(out, words, mask, w, gather)
            self.opt_d.zero_grad(set_to_none=True)
            if not last:
                d_loss.backward()
            else:
                cnn_real = cnn_fake = None
                if self.image_encoder is not None:
                    with self._autocast():
                        with torch.no_grad():
                            cnn_real = self.image_encoder(real)
                        cnn_fake = self.image_encoder(fake)
                g_loss, g_terms = generator_loss(out, words, mask, w, gather, cnn_real, cnn_fake)
                self.opt_g.zero_grad(set_to_none=True)
                # the official simultaneous update: both gradients from this one forward
                d_loss.backward(inputs=list(self.discriminator.parameters()), retain_graph=True)
                g_loss.backward(inputs=list(self.generator.parameters()))
                average_gradients(self.generator, self.info)
                stats["g_loss"] = g_loss.item()
                stats.update({f"g_{k}": v.item() for k, v in g_terms.items()})
            average_gradients(self.discriminator, self.info)
            self.opt_d.step()
            stats["d_loss"] = d_loss.item()
            stats.update({f"d_{k}": v.item() for k, v in d_terms.items()})
        self.opt_g.step()
        self._update_ema()
        self.step += 1
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        # BN statistics are per device (official); average them so every rank, the EMA and
        # the checkpoint hold the same
        average_buffers(self.generator, self.info)
        decay = self.config.ema_decay
        for ema_p, p in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self.ema.buffers(), self.generator.buffers(), strict=True):
            ema_b.copy_(b)

    # ------------------------------------------------------------------ samples and logs
    def sample_captions(self, count: int = 16) -> list[str]:
        from training.data.coco import load_captions_file

        c = self.config
        split = c.sample_split or c.train_split
        root = Path(c.data)
        try:
            records = load_captions_file(
                root / "annotations" / f"captions_{split}.json", root / split
            )
        except ValueError:
            records = self.dataset.records
        return [r.captions[0] for r in records[:count]]

    @torch.no_grad()
    def write_samples(self, captions: list[str]) -> Path:
        text = self.text_encoder.encode(captions, self.device)
        z = sample_z(list(range(len(captions))), self.model_configs.generator.z_dim).to(self.device)
        with self._autocast():
            images = self.ema(z, text.sentence, text.words, text.mask).float().cpu()
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        image_grid(images, columns=min(8, len(captions))).save(path)
        (self.run_dir / "samples" / "captions.txt").write_text("\n".join(captions) + "\n")
        return path

    def _handle_signal(self, signum, frame) -> None:
        self.stop_requested = True

    def fit(self) -> dict[str, Any]:
        """Train to config.steps; save on SIGINT/SIGTERM and at the end. Returns a summary."""
        c = self.config
        previous = {
            s: signal.signal(s, self._handle_signal) for s in (signal.SIGINT, signal.SIGTERM)
        }
        writer = bar = None
        if self.info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step)
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=c.steps, initial=self.step, unit="step", dynamic_ncols=True)
        captions = self.sample_captions() if self.info.is_main else []
        sums: dict[str, float] = defaultdict(float)
        count, tick = 0, time.perf_counter()
        images_per_step = c.batch_size * self.info.world_size
        interrupted, mid_step = False, False
        try:
            batches = self.batches()
            while self.step < c.steps:
                if any_flag(self.stop_requested, self.info, self.device):
                    interrupted = True
                    break
                try:
                    batch = next(batches)
                except RuntimeError:
                    if not self.stop_requested:
                        raise
                    interrupted = True  # a worker stopped by the same signal: stop cleanly
                    break
                mid_step = True
                for k, v in self.train_step(batch).items():
                    sums[k] += v
                mid_step = False
                count += 1
                if bar is not None:
                    bar.update(1)
                if self.step % c.log_every == 0 or self.step == c.steps:
                    elapsed = time.perf_counter() - tick
                    record = {k: v / count for k, v in sums.items()}
                    record.update(
                        step=self.step,
                        images=self.step * images_per_step,
                        epoch=self.epoch,
                        img_per_s=count * images_per_step / elapsed,
                    )
                    self._log(record, writer, bar)
                    sums.clear()
                    count, tick = 0, time.perf_counter()
                if self.info.is_main and (self.step % c.sample_every == 0 or self.step == c.steps):
                    self.write_samples(captions)
                if self.step % c.checkpoint_every == 0:
                    self.save()
        finally:
            if not mid_step:  # a step that failed half-way leaves the last checkpoint as is
                self.save()
            for s, handler in previous.items():
                signal.signal(s, handler)
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        return {
            "step": self.step,
            "interrupted": interrupted,
            "checkpoint": str(self.run_dir / CHECKPOINT_NAME),
        }

    def _log(self, record: dict[str, float], writer, bar) -> None:
        if not self.info.is_main:
            return
        with open(self.run_dir / "stats.jsonl", "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        for k, v in record.items():
            if k not in ("step",):
                writer.add_scalar(f"train/{k}", v, self.step)
        if bar is not None:
            bar.set_postfix(
                img_s=f"{record['img_per_s']:.1f}",
                d=f"{record.get('d_loss', 0):.3f}",
                g=f"{record.get('g_loss', 0):.3f}",
            )
