"""The pieces of flowlib.train: batch schedule, early stopping, checkpoint files, devices, and the argument policy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from flowlib import Flow, StandardNormal
from flowlib.bijections import ElementwiseAffine
from flowlib.train import BatchSchedule, EarlyStopping, Trainer
from flowlib.train.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, write_checkpoint
from flowlib.train.devices import resolve_mixed_precision


def test_batch_schedule_draws_one_permutation_per_epoch() -> None:
    schedule = BatchSchedule(seed=3)
    schedule.start(num_samples=10, batch_size=3)  # 3 batches per epoch, 1 row skipped per epoch
    epoch = [schedule.next_indices() for _ in range(3)]
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(torch.cat(epoch), expected[:9])
    assert len(set(torch.cat(epoch).tolist())) == 9
    again = schedule.next_indices()  # a new epoch, a new permutation
    assert again.shape == (3,) and schedule.position == 1


def test_batch_schedule_state_dict_continues_the_same_batches() -> None:
    schedule = BatchSchedule(seed=0)
    schedule.start(num_samples=50, batch_size=8)
    schedule.transform_generator(torch.device("cpu"))
    for _ in range(9):  # into the second epoch
        schedule.next_indices()
    state = schedule.state_dict()
    noise_state = schedule.transform_generator(torch.device("cpu")).get_state()
    expected = [schedule.next_indices() for _ in range(10)]
    expected_noise = torch.rand(4, generator=schedule.transform_generator(torch.device("cpu")))

    restored = BatchSchedule(seed=99)
    restored.load_state_dict(state)
    assert torch.equal(restored.transform_generator(torch.device("cpu")).get_state(), noise_state)
    for index in expected:
        assert torch.equal(restored.next_indices(), index)
    assert torch.equal(torch.rand(4, generator=restored.transform_generator(torch.device("cpu"))), expected_noise)


def test_early_stopping_counts_evaluations_without_improvement_and_restores_the_best() -> None:
    model = nn.Linear(1, 1)
    stopping = EarlyStopping(patience=2)
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert stopping.update(5.0, 1, model)
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert not stopping.update(5.0, 2, model)  # equal is not better
    assert not stopping.should_stop
    state = stopping.state_dict()
    assert not stopping.update(6.0, 3, model) and stopping.should_stop
    stopping.restore(model)
    assert model.weight.item() == 1.0 and stopping.best_step == 1

    other = EarlyStopping(patience=2)
    other.load_state_dict(state)
    assert (other.best_loss, other.best_step, other.bad_evaluations) == (5.0, 1, 1)
    assert not EarlyStopping(patience=None).should_stop


def test_checkpoint_files(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.pt"
    write_checkpoint(path, {"step": 4, "weights": torch.arange(3.0)})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and not (tmp_path / "a" / "b.pt.tmp").exists()
    assert read_checkpoint(path, torch.device("cpu"))["step"] == 4
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="is not a checkpoint written by Trainer.save_checkpoint"):
        read_checkpoint(tmp_path / "list.pt", torch.device("cpu"))


def test_mixed_precision_choices() -> None:
    assert resolve_mixed_precision("auto", torch.device("cpu")) is False
    assert resolve_mixed_precision(False, torch.device("cpu")) is False
    with pytest.raises(ValueError, match="mixed_precision must be 'auto', True or False"):
        resolve_mixed_precision("on", torch.device("cpu"))


def small_flow() -> Flow:
    return Flow(StandardNormal(1), ElementwiseAffine(1.0))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lr": "0.1"}, "Trainer: lr must be a real number, got str"),
        ({"batch_size": 2.5}, "Trainer: batch_size must be a positive int, got float 2.5"),
        ({"batch_size": True}, "Trainer: batch_size must be a positive int, got bool"),
        ({"eval_every": 10.0}, "Trainer: eval_every must be a positive int or None, got float"),
        ({"grad_clip": "1"}, "Trainer: grad_clip must be a real number or None, got str"),
        ({"seed": 1.5}, "Trainer: seed must be an int, got float"),
    ],
)
def test_trainer_arguments_of_the_wrong_type_are_type_errors(options: dict, message: str) -> None:
    """One exception policy with flowlib.data: TypeError for a wrong type, ValueError for a wrong value."""
    with pytest.raises(TypeError, match=message):
        Trainer(small_flow(), device="cpu", **options)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lr": float("inf")}, "Trainer: lr must be a finite number, got inf"),
        ({"weight_decay": -1.0}, "Trainer: weight_decay must be >= 0, got -1.0"),
        ({"patience": 0}, "Trainer: patience must be a positive int or None, got 0"),
    ],
)
def test_trainer_arguments_of_the_wrong_value_are_value_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trainer(small_flow(), device="cpu", **options)


def test_fit_budget_and_context_follow_the_policy() -> None:
    trainer = Trainer(small_flow(), device="cpu")
    x = torch.randn(20, 1)
    with pytest.raises(TypeError, match="Trainer: steps must be a positive int or None, got float"):
        trainer.fit(x, steps=2.0)
    with pytest.raises(ValueError, match="Trainer: epochs must be a positive int or None, got 0"):
        trainer.fit(x, epochs=0)
    with pytest.raises(TypeError, match="Trainer: train_context must be a torch.Tensor or None, got list"):
        trainer.fit(x, train_context=[1.0] * 20, steps=1)
    with pytest.raises(ValueError, match=r"Trainer: context must have one row per sample \(20\), the same batch size"):
        trainer.evaluate(x, torch.zeros(3, 1))
