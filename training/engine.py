"""The one training loop every model uses.

`fit()` trains a classifier with AdamW, a OneCycle LR schedule, gradient clipping, early
stopping on validation loss, mixed precision where the device supports it, and keeps the
best checkpoint. It writes `history.json` and `history.png` next to the checkpoint.
Batches are `(inputs, targets)`; `inputs` is a tensor or a tuple of tensors passed to the
model positionally (the LSTM takes `(tokens, lengths)`).
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


def fit(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig, out_dir: Path,
        collate_fn=None, param_groups=None) -> History:
    """Train `model` in place; on return it holds the weights of the best validation epoch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    device = pick_device()
    if device.type == "cpu":
        torch.set_num_threads(config.torch_threads or int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
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

    history = History([], [], [], [])
    best_loss, checkpoint = float("inf"), out_dir / "best_checkpoint.pt"
    for epoch in range(config.epochs):
        model.train()
        running, seen = 0.0, 0
        progress = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                        disable=not os.isatty(2))
        for inputs, targets in progress:
            inputs, targets = to_device(inputs, device), targets.to(device, non_blocking=True)
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
            running += loss.item() * len(targets)
            seen += len(targets)
            progress.set_postfix(loss=f"{running / seen:.4f}")

        metrics = evaluate(model, val_loader, device)
        history.train_loss.append(running / max(seen, 1))
        history.val_loss.append(metrics["loss"])
        history.val_accuracy.append(metrics["accuracy"])
        history.lr.append(optimizer.param_groups[0]["lr"])
        print(f"epoch {epoch + 1}: train_loss={history.train_loss[-1]:.4f} "
              f"val_loss={metrics['loss']:.4f} val_acc={metrics['accuracy']:.4f}", flush=True)

        if metrics["loss"] < best_loss:
            best_loss, history.best_epoch = metrics["loss"], epoch + 1
            torch.save(model.state_dict(), checkpoint)
        elif epoch + 1 - history.best_epoch >= config.patience and epoch + 1 < config.epochs:
            history.stopped_early = True
            print(f"early stop: no better val_loss for {config.patience} epochs", flush=True)
            break

    model.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
    history.save(out_dir)
    return history


def plot_history(history: History, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history.train_loss) + 1)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_ax.plot(epochs, history.train_loss, label="train")
    loss_ax.plot(epochs, history.val_loss, label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_ax.legend()
    acc_ax.plot(epochs, history.val_accuracy, color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
