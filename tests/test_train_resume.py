"""A fit killed at any step and continued from last.pt ends exactly like a fit that was never killed.

The kills here are exceptions raised inside a training step (the process itself
survives, but the Trainer is thrown away and a new one is built, as after a
real kill); tests/test_cli_resume.py kills real processes with SIGKILL.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from flowlib import Compose, Flow, StandardNormal
from flowlib.bijections import ElementwiseAffine, Linear
from flowlib.train import Trainer
from flowlib.train.checkpoint import remove_stale_temporaries


class Killed(Exception):
    """Stands for SIGKILL: raised inside the training step after ``step`` steps."""


class NoisyGaussianFlow(nn.Module):
    """A linear flow whose training-mode log_prob adds noise from torch's *global* generator (like dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.flow = Flow(
            StandardNormal(2),
            Compose(Linear(2, generator=torch.Generator().manual_seed(0)), ElementwiseAffine(torch.ones(2))),
        )
        self.event_shape = torch.Size([2])
        self.kill_after: int | None = None
        self.trainer: Trainer | None = None

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.trainer is not None and self.trainer.step == self.kill_after:
            raise Killed
        if self.training:
            x = x + 0.01 * torch.randn_like(x)
        return self.flow.log_prob(x)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([[2.0, 0.0], [1.2, 0.5]])
    x = torch.randn(700, 2, generator=g) @ a.T + torch.tensor([3.0, -1.0])
    return x[:500], x[500:]


def jitter(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return batch + 0.05 * torch.randn(batch.shape, generator=generator, dtype=batch.dtype)


FIT = {"steps": 60, "train_transform": jitter}


def make_trainer(folder: Path, kill_after: int | None = None, **options) -> Trainer:
    torch.manual_seed(1)
    model = NoisyGaussianFlow()
    settings = {"lr": 0.2, "batch_size": 64, "eval_every": 5, "patience": 2, "device": "cpu", "seed": 5,
                "checkpoint_dir": folder, "checkpoint_every": 3, **options}
    trainer = Trainer(model, **settings)
    model.trainer, model.kill_after = trainer, kill_after
    return trainer


def outcome(trainer: Trainer) -> tuple[list[dict], dict[str, torch.Tensor], tuple]:
    history = [{k: v for k, v in entry.items() if k != "elapsed"} for entry in trainer.history]
    weights = {k: v.clone() for k, v in trainer.flow.state_dict().items()}
    return history, weights, (trainer.step, trainer.best_val_loss, trainer.best_step)


def assert_same(a: tuple, b: tuple) -> None:
    assert a[0] == b[0] and a[2] == b[2]
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    train, val = data()
    trainer = make_trainer(tmp_path_factory.mktemp("reference"), checkpoint_every=None, checkpoint_dir=None)
    trainer.fit(train, val, **FIT)
    result = outcome(trainer)
    # the run stops early (patience 2) at step 55, its best at step 45: kills land before, between and after
    assert result[2][0] == 55 and result[2][2] == 45
    return result


@pytest.mark.parametrize("kill_after", range(0, 61, 4))
def test_a_fit_killed_after_any_step_resumes_bit_for_bit(tmp_path: Path, reference: tuple, kill_after: int) -> None:
    train, val = data()
    trainer = make_trainer(tmp_path, kill_after=kill_after)
    last_step = reference[2][0]
    if kill_after >= last_step:  # the fit ends (early stopping) before the kill
        trainer.fit(train, val, **FIT)
    else:
        with pytest.raises(Killed):
            trainer.fit(train, val, **FIT)
    if not (tmp_path / "last.pt").exists():
        assert kill_after < 3  # killed before the first checkpoint: nothing to resume, start again
        trainer = make_trainer(tmp_path)
        trainer.fit(train, val, **FIT)
    else:
        saved = torch.load(tmp_path / "last.pt", weights_only=True)
        assert saved["step"] <= kill_after or saved["fit"]["finished"]
        torch.manual_seed(12345)  # a new process: torch's global random state is whatever it is
        trainer = make_trainer(tmp_path)
        trainer.load_checkpoint(tmp_path / "last.pt")
        trainer.fit(train, val, **FIT, resume=True)
    assert_same(outcome(trainer), reference)


def test_resume_needs_a_loaded_fit_with_the_same_settings(tmp_path: Path) -> None:
    train, val = data()
    with pytest.raises(Killed):
        make_trainer(tmp_path, kill_after=30).fit(train, val, **FIT)
    trainer = make_trainer(tmp_path)
    with pytest.raises(ValueError, match="no fit to resume; first load a checkpoint"):
        trainer.fit(train, val, **FIT, resume=True)
    trainer.load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(ValueError, match="total_steps=60, this call has 90; .*num_samples=500, this call has 499"):
        trainer.fit(train[:-1], val, steps=90, train_transform=jitter, resume=True)
    other = make_trainer(tmp_path, patience=4)
    other.load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(ValueError, match="patience=2, this call has 4"):
        other.fit(train, val, **FIT, resume=True)
    with pytest.raises(TypeError, match="resume must be True or False"):
        other.fit(train, val, **FIT, resume="yes")


def test_a_finished_fit_resumes_to_its_best_weights(tmp_path: Path, reference: tuple) -> None:
    train, val = data()
    make_trainer(tmp_path).fit(train, val, **FIT)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["fit"]["finished"] and saved["fit"]["stopping"]["best_weights"] is not None
    trainer = make_trainer(tmp_path)
    trainer.load_checkpoint(tmp_path / "last.pt")
    assert trainer.step == reference[2][0]
    trainer.fit(train, val, **FIT, resume=True)  # nothing left to train
    assert_same(outcome(trainer), reference)


def test_a_plain_fit_after_load_starts_a_new_fit(tmp_path: Path) -> None:
    train, val = data()
    with pytest.raises(Killed):
        make_trainer(tmp_path, kill_after=30).fit(train, val, **FIT)
    trainer = make_trainer(tmp_path)
    trainer.load_checkpoint(tmp_path / "last.pt")
    step = trainer.step
    trainer.fit(train, val, steps=10, train_transform=jitter)
    assert trainer.step == step + 10 or trainer.best_step is not None


def test_checkpoint_options(tmp_path: Path) -> None:
    train, val = data()
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint_dir"):
        Trainer(NoisyGaussianFlow(), checkpoint_every=5)
    with pytest.raises(ValueError, match="checkpoint_every must be a positive int"):
        Trainer(NoisyGaussianFlow(), checkpoint_dir=tmp_path, checkpoint_every=0)
    with pytest.raises(TypeError, match="metadata must be a dict"):
        Trainer(NoisyGaussianFlow(), metadata=[1])
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    trainer = make_trainer(tmp_path, save_best=False, metadata={"run": "a", "n": 3})
    trainer.fit(train, val, steps=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the stale file is gone, no best.pt
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["metadata"] == {"run": "a", "n": 3}
    assert remove_stale_temporaries(tmp_path / "last.pt") == []


def test_old_checkpoints_still_load(tmp_path: Path) -> None:
    """A checkpoint of the earlier format (no schedule, fit or metadata) restores what it has."""
    train, val = data()
    trainer = make_trainer(tmp_path)
    trainer.fit(train, val, steps=12, train_transform=jitter)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("schedule", "fit", "metadata"):
        del saved[key]
    torch.save(saved, tmp_path / "old.pt")
    other = make_trainer(tmp_path)
    other.load_checkpoint(tmp_path / "old.pt")
    assert other.step == 12 and other.best_val_loss == trainer.best_val_loss
    assert math.isfinite(other.evaluate(val))
    with pytest.raises(ValueError, match="no fit to resume"):
        other.fit(train, val, steps=12, train_transform=jitter, resume=True)
