"""flowlib.train: the Trainer (optimum, early stopping, NaN, checkpoints, determinism, errors) and devices."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import flowlib.train
from flowlib import Compose, Flow, StandardNormal
from flowlib.bijections import ElementwiseAffine, Linear
from flowlib.data import dequantize
from flowlib.train import Trainer, resolve_device


def gaussian_data(n: int = 2000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.tensor([[2.0, 0.0], [1.2, 0.5]])
    return torch.randn(n, 2, generator=g) @ a.T + torch.tensor([3.0, -1.0])


def linear_flow(seed: int = 0) -> Flow:
    linear = Linear(2, generator=torch.Generator().manual_seed(seed))
    return Flow(StandardNormal(2), Compose(linear, ElementwiseAffine(torch.ones(2))))


def without_elapsed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "elapsed"} for entry in history]


def test_docstring_examples() -> None:
    result = doctest.testmod(flowlib.train, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 3


def test_a_linear_flow_reaches_the_gaussian_maximum_likelihood() -> None:
    x = gaussian_data(1000)
    # The best Gaussian fit has the sample mean and covariance (ddof=0); its NLL is 0.5 log det(2 pi e Sigma).
    sigma = torch.cov(x.double().T, correction=0)
    optimum = 0.5 * torch.logdet(2 * math.pi * math.e * sigma).item()
    trainer = Trainer(linear_flow(), lr=0.1, batch_size=len(x), eval_every=50, device="cpu")
    initial = trainer.evaluate(x)
    trainer.fit(x, steps=250)
    final = trainer.evaluate(x)
    assert initial > optimum + 1.0
    assert final == pytest.approx(optimum, abs=1e-4)
    assert final > optimum - 1e-4  # nothing beats the maximum-likelihood Gaussian


def test_default_history_has_one_entry_per_epoch() -> None:
    x = gaussian_data(100)
    trainer = Trainer(linear_flow(), batch_size=25, device="cpu").fit(x, x[:30], epochs=3)
    assert [e["step"] for e in trainer.history] == [4, 8, 12]
    assert [e["epoch"] for e in trainer.history] == [1.0, 2.0, 3.0]
    assert all(e["val_loss"] is not None and e["elapsed"] >= 0 for e in trainer.history)
    trainer.fit(x, steps=5)  # a second call continues; without val the history has no val_loss
    assert [e["step"] for e in trainer.history[3:]] == [16, 17] and trainer.history[-1]["val_loss"] is None
    assert trainer.step == 17 and repr(trainer).startswith("Trainer(step=17, device=cpu")


def make_drifting_case(**options) -> tuple[Trainer, torch.Tensor, torch.Tensor]:
    """The model starts at the validation distribution N(3, 0.5^2) and is trained on N(0, 1): val gets worse."""
    g = torch.Generator().manual_seed(1)
    train = torch.randn(200, 1, generator=g)
    val = 3.0 + 0.5 * torch.randn(100, 1, generator=g)
    flow = Flow(StandardNormal(1), ElementwiseAffine(2.0, -6.0))  # z = 2 x - 6
    trainer = Trainer(flow, lr=0.05, batch_size=50, eval_every=5, device="cpu", **options)
    return trainer, train, val


def test_early_stopping_restores_the_best_weights(tmp_path: Path) -> None:
    trainer, train, val = make_drifting_case(patience=3, checkpoint_dir=tmp_path)
    trainer.fit(train, val, steps=1000)
    losses = [e["val_loss"] for e in trainer.history]
    assert len(losses) == 4 and trainer.step == 20  # best at the first evaluation, then 3 worse ones
    assert losses == sorted(losses)
    assert trainer.best_step == 5 and trainer.best_val_loss == losses[0]
    assert trainer.evaluate(val) == trainer.best_val_loss  # the weights of step 5 are back
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert best["step"] == 5 and last["step"] == 20
    torch.testing.assert_close(best["model"]["bijection.scale"], trainer.flow.bijection.scale.detach())

    trainer, train, val = make_drifting_case(patience=3, restore_best=False)
    trainer.fit(train, val, steps=1000)
    assert trainer.evaluate(val) == trainer.history[-1]["val_loss"] > trainer.best_val_loss


class PoisonedGaussian(nn.Module):
    """A unit Gaussian with a learnable mean whose log_prob turns NaN from its ``poison_at``-th call on."""

    def __init__(self, poison_at: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1))
        self.poison_at, self.calls = poison_at, 0

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        log_p = -0.5 * (x - self.loc).pow(2).sum(1)
        return log_p * float("nan") if self.calls >= self.poison_at else log_p


def test_nan_loss_stops_training_and_names_the_step() -> None:
    model = PoisonedGaussian(poison_at=14)
    trainer = Trainer(model, batch_size=10, device="cpu")
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step 14 \(epoch 2\)") as info:
        trainer.fit(torch.randn(100, 1), steps=50)
    message = str(info.value)
    assert "lr=0.001" in message and "grad_clip" in message and "check the data" in message
    assert trainer.step == 13 and torch.isfinite(model.loc).all()  # the NaN step was not taken


def test_overflowing_data_is_caught_at_the_first_step() -> None:
    x = torch.randn(64, 1)
    x[17] = 1e30  # z^2 overflows float32: log_prob = -inf
    trainer = Trainer(Flow(StandardNormal(1), ElementwiseAffine(1.0)), batch_size=64, device="cpu")
    with pytest.raises(FloatingPointError, match=r"training loss is inf at step 1 \(epoch 1\)"):
        trainer.fit(x, steps=3)


class SqrtAtZero(nn.Module):
    """A finite loss with a NaN gradient: d sqrt|w| / dw at w = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return -(x.pow(2).sum(1) + self.w.abs().sqrt())


def test_nan_gradient_is_caught() -> None:
    with pytest.raises(FloatingPointError, match=r"gradient norm is nan .* at step 1 \(epoch 1\)"):
        Trainer(SqrtAtZero(), batch_size=8, device="cpu").fit(torch.randn(8, 1), steps=2)
    with pytest.raises(FloatingPointError, match="a smaller grad_clip"):
        Trainer(SqrtAtZero(), batch_size=8, grad_clip=1.0, device="cpu").fit(torch.randn(8, 1), steps=2)


def test_checkpoint_round_trip_and_resume(tmp_path: Path) -> None:
    x = gaussian_data(500)
    trainer = Trainer(linear_flow(0), lr=0.01, batch_size=64, device="cpu", seed=3)
    trainer.fit(x, x[:100], steps=30)
    path = tmp_path / "run" / "checkpoint.pt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert {"model", "optimizer", "step", "history", "best_val_loss"} <= set(raw) and raw["step"] == 30

    other = Trainer(linear_flow(1), lr=0.01, batch_size=64, device="cpu", seed=99)
    probe = torch.randn(20, 2)
    assert not torch.equal(other.flow.log_prob(probe), trainer.flow.log_prob(probe))
    other.load_checkpoint(path)
    assert torch.equal(other.flow.log_prob(probe), trainer.flow.log_prob(probe))
    assert other.step == 30 and other.history == trainer.history and other.best_val_loss == trainer.best_val_loss
    # optimizer state and batch order came back too: both continue identically
    trainer.fit(x, steps=10)
    other.fit(x, steps=10)
    assert without_elapsed(other.history) == without_elapsed(trainer.history)
    assert torch.equal(other.flow.log_prob(probe), trainer.flow.log_prob(probe))

    (tmp_path / "junk.pt").write_bytes(b"")
    torch.save({"a": 1}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not a checkpoint written by Trainer.save_checkpoint"):
        other.load_checkpoint(tmp_path / "junk.pt")


def test_same_seed_same_history() -> None:
    x = gaussian_data(300)

    def run(seed: int) -> tuple[list[dict], torch.Tensor]:
        trainer = Trainer(linear_flow(), lr=0.01, batch_size=32, eval_every=7, seed=seed, device="cpu")
        trainer.fit(x, x[:50], steps=40, train_transform=lambda b, g: b + 0.1 * torch.randn(b.shape, generator=g))
        return without_elapsed(trainer.history), trainer.flow.bijection[0].weight.detach().clone()

    history_a, weight_a = run(5)
    history_b, weight_b = run(5)
    assert history_a == history_b and torch.equal(weight_a, weight_b)
    assert run(6)[0] != history_a


class ConditionalGaussian(nn.Module):
    """p(x | c) = N(x; w c, 1): a model that needs its context."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        assert context is not None and context.shape[0] == x.shape[0]
        return -0.5 * (x - self.w * context).pow(2).sum(1) - 0.5 * math.log(2 * math.pi)


def test_context_rows_follow_their_samples() -> None:
    g = torch.Generator().manual_seed(0)
    c = torch.rand(400, 1, generator=g) * 2 - 1
    x = 2.0 * c + 0.1 * torch.randn(400, 1, generator=g)
    trainer = Trainer(ConditionalGaussian(), lr=0.1, batch_size=40, device="cpu")
    trainer.fit(x[:300], x[300:], train_context=c[:300], val_context=c[300:], steps=300)
    assert trainer.flow.w.item() == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="give a context for both train and val or for neither"):
        trainer.fit(x[:300], x[300:], train_context=c[:300], steps=1)
    with pytest.raises(ValueError, match="train_context must have one row per sample \\(300\\)"):
        trainer.fit(x[:300], train_context=c, steps=1)


def test_train_transform_dequantizes_each_batch() -> None:
    levels = torch.randint(0, 17, (256, 1), generator=torch.Generator().manual_seed(0)).float()
    seen = []

    def transform(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        v = dequantize(batch, levels=17, generator=generator)
        seen.append(v)
        return v

    trainer = Trainer(Flow(StandardNormal(1), ElementwiseAffine(1.0)), lr=0.05, batch_size=64, device="cpu")
    trainer.fit(levels, steps=8, train_transform=transform)
    assert len(seen) == 8 and all(((v >= 0) & (v < 1)).all() for v in seen)
    assert not torch.equal(seen[0], seen[4])  # same epoch position, fresh noise
    with pytest.raises(ValueError, match="the output of train_transform has shape \\(64, 2\\)"):
        trainer.fit(levels, steps=1, train_transform=lambda b, g: b.repeat(1, 2))


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    x = gaussian_data(200)
    Trainer(linear_flow(), batch_size=50, progress=True, device="cpu").fit(x, x[:40], steps=8)
    assert "training" in capsys.readouterr().err


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected == resolve_device().type
    with pytest.raises(ValueError, match="unknown device 'banana'; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        resolve_device("banana")
    with pytest.raises(TypeError, match="device must be a string"):
        resolve_device(0)
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:1"):
            with pytest.raises(ValueError, match=f"device '{name}' was requested but CUDA is not available"):
                resolve_device(name)
    elif torch.cuda.device_count() < 8:
        with pytest.raises(ValueError, match="CUDA device\\(s\\) are visible"):
            resolve_device("cuda:7")


def test_bad_input_is_named() -> None:
    flow = linear_flow()
    x = gaussian_data(100)
    with pytest.raises(ValueError, match="lr must be > 0, got -0.1"):
        Trainer(flow, lr=-0.1)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        Trainer(flow, batch_size=0)
    with pytest.raises(ValueError, match="grad_clip must be > 0"):
        Trainer(flow, grad_clip=0.0)
    with pytest.raises(ValueError, match="mixed_precision must be 'auto', True or False"):
        Trainer(flow, mixed_precision="yes")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="mixed_precision=True needs a CUDA device"):
            Trainer(flow, mixed_precision=True)
    with pytest.raises(TypeError, match="nn.Module with log_prob"):
        Trainer(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(Flow(StandardNormal(2), ElementwiseAffine(torch.ones(2), learnable=False)))

    trainer = Trainer(flow, device="cpu", patience=2)
    with pytest.raises(ValueError, match=r"train has shape \(100, 3\) but the flow expects \(n, 2\)"):
        trainer.fit(torch.zeros(100, 3), x, steps=1)
    with pytest.raises(ValueError, match=r"val has shape \(2,\) but the flow expects \(n, 2\)"):
        trainer.fit(x, torch.zeros(2), steps=1)
    with pytest.raises(ValueError, match="train is empty"):
        trainer.fit(torch.zeros(0, 2), x, steps=1)
    with pytest.raises(ValueError, match="no training data .* validation data alone cannot train"):
        trainer.fit(None, x, steps=1)
    with pytest.raises(ValueError, match="give a budget"):
        trainer.fit(x, x)
    with pytest.raises(ValueError, match="patience .* needs validation data"):
        trainer.fit(x, steps=1)
    with pytest.raises(TypeError, match="train must be a torch.Tensor"):
        trainer.fit(x.numpy(), x, steps=1)
    with pytest.raises(TypeError, match="dtype torch.float64 but the model's parameters are torch.float32"):
        trainer.fit(x.double(), x, steps=1)
    with pytest.raises(TypeError, match="floating point"):
        trainer.fit(x.long(), x, steps=1)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="train contains NaN or Inf \\(1 of 200 values\\)"):
        trainer.fit(bad, x, steps=1)
    assert trainer.step == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_autocast_keeps_log_dets_in_float32() -> None:
    flow = linear_flow()
    seen = []
    flow.bijection.register_forward_hook(
        lambda module, args, output: seen.append((torch.is_autocast_enabled("cuda"), output[1].dtype))
    )
    x = gaussian_data(512)
    trainer = Trainer(flow, lr=0.02, batch_size=128, device="auto")
    assert trainer.device.type == "cuda" and trainer.mixed_precision == torch.cuda.is_bf16_supported()
    trainer.fit(x, x[:128], steps=40)
    assert next(flow.parameters()).device.type == "cuda"
    assert trainer.mixed_precision and seen and all(enabled and dtype == torch.float32 for enabled, dtype in seen)
    losses = [e["train_loss"] for e in trainer.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    plain = Trainer(linear_flow(), lr=0.02, batch_size=128, device="cuda", mixed_precision=False).fit(x, steps=40)
    assert not plain.mixed_precision
    assert trainer.evaluate(x) == pytest.approx(plain.evaluate(x), rel=0.05)
