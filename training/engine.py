"""The one training loop every model uses (`train_epochs`), and its two kinds of step.

`fit()` trains a classifier with AdamW, a OneCycle LR schedule, gradient clipping, early
stopping on validation loss, mixed precision where the device supports it, and keeps the
best checkpoint. It writes `history.json` and `history.png` next to the checkpoint.
Batches are `(inputs, targets)`; `inputs` is a tensor or a tuple of tensors passed to the
model positionally (the LSTM takes `(tokens, lengths)`).

`fit_gan()` trains a conditional GAN, two players per step, as the DCGAN paper and PyTorch's
DCGAN tutorial do: Adam with beta1 = 0.5, the non-saturating generator loss, one-sided label
smoothing for real images. It keeps an exponential moving average of the generator's weights
(the generator it returns and checkpoints each epoch: EMA samples are steadier than the last
step's) and writes the loss curves as `history.json` and `history.png`. Batches are `(images,
labels)`; the generator is called as `generator(noise, labels)`, the discriminator as
`discriminator(images, labels)` -> one logit per image.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 3  # epochs without a better validation loss before stopping
    grad_clip: float | None = 1.0
    amp: bool = True  # fp16 + GradScaler on CUDA; bf16 autocast is opt-in on CPU (slower on most CPUs)
    cpu_bf16: bool = False
    num_workers: int = 0  # >0 forks loader processes; on 2 cores in-process loading is faster
    seed: int = 0
    label_smoothing: float = 0.0
    torch_threads: int | None = None  # CPU threads; None: $OMP_NUM_THREADS, else torch's default


@dataclass
class GanConfig(TrainConfig):
    lr: float = 2e-4
    adam_beta1: float = 0.5      # DCGAN: 0.9 oscillates
    noise_dim: int = 64
    real_target: float = 0.9     # one-sided label smoothing: the discriminator's target for real images
    ema_decay: float = 0.999     # per step, for the generator the run returns


@dataclass
class History:
    train_loss: list[float]
    val_loss: list[float]
    val_accuracy: list[float]
    lr: list[float]
    best_epoch: int = 0
    stopped_early: bool = False

    def save(self, out_dir: Path) -> None:
        (out_dir / "history.json").write_text(json.dumps(asdict(self), indent=2))
        plot_history(self, out_dir / "history.png")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_device(inputs, device: torch.device):
    if isinstance(inputs, (tuple, list)):
        return tuple(to_device(x, device) for x in inputs)
    return inputs.to(device, non_blocking=True)


def call_model(model: nn.Module, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def autocast_for(device: torch.device, config: TrainConfig):
    if device.type == "cuda" and config.amp:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and config.amp and config.cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def make_loader(dataset: Dataset, config: TrainConfig, device: torch.device, shuffle: bool,
                collate_fn=None) -> DataLoader:
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_fn,
        generator=generator,
        persistent_workers=config.num_workers > 0,
    )


@torch.inference_mode()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets over a whole loader, on the CPU."""
    model.eval()
    logits, targets = [], []
    for inputs, target in loader:
        logits.append(call_model(model, to_device(inputs, device)).float().cpu())
        targets.append(target)
    return torch.cat(logits), torch.cat(targets)


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
    logits, targets = predict(model, loader, device)
    return {
        "loss": nn.functional.cross_entropy(logits, targets).item(),
        "accuracy": (logits.argmax(1) == targets).float().mean().item(),
    }


def prepare_device(config: TrainConfig) -> torch.device:
    """Seed everything and size torch's CPU threads: the start of every training run."""
    seed_everything(config.seed)
    device = pick_device()
    if device.type == "cpu":
        torch.set_num_threads(config.torch_threads or int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    return device


def train_epochs(loader: DataLoader, epochs: int, step, end_epoch) -> None:
    """The loop every kind of training shares. Per epoch, each batch goes through `step(batch)`,
    which updates the model(s) and answers ({metric: value}, examples in the batch), under a
    progress bar of the running means; then `end_epoch(epoch, means)` evaluates, checkpoints and
    answers True to stop early."""
    for epoch in range(1, epochs + 1):
        sums: dict[str, float] = {}
        seen = 0
        progress = tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not os.isatty(2))
        for batch in progress:
            metrics, examples = step(batch)
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + value * examples
            seen += examples
            progress.set_postfix({name: f"{total / seen:.4f}" for name, total in sums.items()})
        if end_epoch(epoch, {name: total / max(seen, 1) for name, total in sums.items()}):
            break


def fit(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig, out_dir: Path,
        collate_fn=None, param_groups=None) -> History:
    """Train `model` in place; on return it holds the weights of the best validation epoch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = prepare_device(config)
    model.to(device)

    train_loader = make_loader(train_set, config, device, shuffle=True, collate_fn=collate_fn)
    val_loader = make_loader(val_set, config, device, shuffle=False, collate_fn=collate_fn)
    params = param_groups if param_groups is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
        epochs=config.epochs, steps_per_epoch=len(train_loader))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and config.amp)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def step(batch):
        inputs, targets = batch
        inputs, targets = to_device(inputs, device), targets.to(device, non_blocking=True)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device, config):
            loss = loss_fn(call_model(model, inputs).float(), targets)
        scaler.scale(loss).backward()
        if config.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        return {"loss": loss.item()}, len(targets)

    history = History([], [], [], [])
    checkpoint = out_dir / "best_checkpoint.pt"

    def end_epoch(epoch: int, means: dict) -> bool:
        metrics = evaluate(model, val_loader, device)
        history.train_loss.append(means.get("loss", 0.0))
        history.val_loss.append(metrics["loss"])
        history.val_accuracy.append(metrics["accuracy"])
        history.lr.append(optimizer.param_groups[0]["lr"])
        print(f"epoch {epoch}: train_loss={history.train_loss[-1]:.4f} "
              f"val_loss={metrics['loss']:.4f} val_acc={metrics['accuracy']:.4f}", flush=True)
        if metrics["loss"] < min(history.val_loss[:-1], default=float("inf")):
            history.best_epoch = epoch
            torch.save(model.state_dict(), checkpoint)
        elif epoch - history.best_epoch >= config.patience and epoch < config.epochs:
            history.stopped_early = True
            print(f"early stop: no better val_loss for {config.patience} epochs", flush=True)
            return True
        return False

    train_epochs(train_loader, config.epochs, step, end_epoch)
    model.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
    history.save(out_dir)
    return history


@dataclass
class GanHistory:
    discriminator_loss: list[float]
    generator_loss: list[float]
    real_score: list[float]  # mean D(real) probability per epoch
    fake_score: list[float]  # mean D(G(z)) probability per epoch, before the generator's step

    def save(self, out_dir: Path) -> None:
        (out_dir / "history.json").write_text(json.dumps(asdict(self), indent=2))
        plot_gan_history(self, out_dir / "history.png")


def fit_gan(generator: nn.Module, discriminator: nn.Module, train_set: Dataset, config: GanConfig, out_dir: Path,
            after_epoch=None) -> tuple[nn.Module, GanHistory]:
    """Train both players for `config.epochs`; answer the EMA generator (eval mode, on the CPU)
    and the loss history. `after_epoch(epoch, generator)` runs after each epoch (sample grids)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = prepare_device(config)
    generator.to(device)
    discriminator.to(device)

    def moving_average(average: torch.Tensor, current: torch.Tensor, steps) -> torch.Tensor:
        decay = min(config.ema_decay, (1 + steps) / (10 + steps))  # short runs: early weights fade fast
        return average + (current - average) * (1 - decay)

    averaged = torch.optim.swa_utils.AveragedModel(generator, avg_fn=moving_average, use_buffers=True)
    loader = make_loader(train_set, config, device, shuffle=True)
    betas = (config.adam_beta1, 0.999)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=betas)
    scalers = [torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and config.amp) for _ in range(2)]
    bce = nn.functional.binary_cross_entropy_with_logits

    def update(loss: torch.Tensor, optimizer, scaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def step(batch):
        images, labels = to_device(batch, device)
        noise = torch.randn(len(labels), config.noise_dim, device=device)
        generator.train()
        discriminator.train()
        with autocast_for(device, config):
            fake = generator(noise, labels)
            real_logits = discriminator(images, labels).float()
            fake_logits = discriminator(fake.detach(), labels).float()
            d_loss = (bce(real_logits, torch.full_like(real_logits, config.real_target))
                      + bce(fake_logits, torch.zeros_like(fake_logits)))
        update(d_loss, d_optimizer, scalers[0])
        with autocast_for(device, config):
            g_logits = discriminator(fake, labels).float()
            g_loss = bce(g_logits, torch.ones_like(g_logits))
        update(g_loss, g_optimizer, scalers[1])
        averaged.update_parameters(generator)
        return {"discriminator_loss": d_loss.item(), "generator_loss": g_loss.item(),
                "real_score": real_logits.sigmoid().mean().item(),
                "fake_score": fake_logits.sigmoid().mean().item()}, len(labels)

    history = GanHistory([], [], [], [])
    ema_generator = averaged.module

    def end_epoch(epoch: int, means: dict) -> bool:
        for name, value in means.items():
            getattr(history, name).append(value)
        print(f"epoch {epoch}: " + " ".join(f"{name}={value:.4f}" for name, value in means.items()), flush=True)
        torch.save({"epoch": epoch, "generator": ema_generator.state_dict(),
                    "discriminator": discriminator.state_dict()}, out_dir / "checkpoint.pt")
        if after_epoch is not None:
            after_epoch(epoch, ema_generator.eval())
        return False

    train_epochs(loader, config.epochs, step, end_epoch)
    history.save(out_dir)
    return ema_generator.cpu().eval(), history


def plot_history(history: History, path: Path) -> None:
    plot_panels(path, [("loss", "loss", {"train": history.train_loss, "validation": history.val_loss}, None),
                       ("validation accuracy", "accuracy", {"validation": history.val_accuracy}, None)])


def plot_gan_history(history: GanHistory, path: Path) -> None:
    plot_panels(path, [("losses", "loss", {"discriminator": history.discriminator_loss,
                                           "generator": history.generator_loss}, None),
                       ("discriminator's scores", "probability", {"D(real)": history.real_score,
                                                                   "D(G(z))": history.fake_score}, (0, 1))])


def plot_panels(path: Path, panels: list[tuple[str, str, dict[str, list[float]], tuple | None]]) -> None:
    """Per-epoch curves side by side: each panel is (title, y label, {curve label: values}, y limits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(9, 3.5))
    for axis, (title, ylabel, curves, ylim) in zip(axes, panels):
        for label, values in curves.items():
            axis.plot(range(1, len(values) + 1), values, label=label)
        axis.set(xlabel="epoch", ylabel=ylabel, title=title, ylim=ylim)
        if len(curves) > 1:
            axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
