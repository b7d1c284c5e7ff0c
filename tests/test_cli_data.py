"""Your own data: property tests of the errors for bad data, and of reading good data back unchanged.

Every bad input is a ValueError (a wrong value: shape, NaN/Inf, range, an
empty or unreadable file) or a TypeError (a wrong kind of data), whose message
says what was expected; through ``python -m flowlib train`` it becomes
``error: ...`` with exit status 2.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flowlib.cli import main
from flowlib.data import images_from_array, read_array, split_indices, vectors_from_array

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

small = st.integers(min_value=1, max_value=6)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


def vectors(min_rows: int = 1) -> st.SearchStrategy[np.ndarray]:
    shape = st.tuples(st.integers(min_rows, 12), st.integers(2, 5))
    return hnp.arrays(np.float64, shape, elements=finite)


# ----------------------------------------------------------------------------------------- shapes


@SETTINGS
@given(shape=st.lists(small, min_size=0, max_size=5).filter(lambda s: len(s) != 2))
def test_vectors_of_the_wrong_rank_name_the_expected_shape(shape: list[int]) -> None:
    message = re.escape("needs a table of shape (N, D)") + ".*" + re.escape(str(tuple(shape)))
    with pytest.raises(ValueError, match=message):
        vectors_from_array(np.zeros(shape), source="x.npy")


@SETTINGS
@given(rows=small)
def test_vectors_need_two_features(rows: int) -> None:
    with pytest.raises(ValueError, match=r"at least 2 features \(columns\)"):
        vectors_from_array(np.zeros((rows, 1)), source="x.npy")


@SETTINGS
@given(shape=st.lists(small, min_size=0, max_size=5).filter(lambda s: len(s) != 4))
def test_images_of_the_wrong_rank_name_the_expected_shape(shape: list[int]) -> None:
    message = re.escape(f"an image model needs an array of shape (N, C, H, W), got {tuple(shape)}")
    if len(shape) == 3:
        message += ".*add a channel axis"
    with pytest.raises(ValueError, match=message):
        images_from_array(np.zeros(shape, np.float32), source="x.npy")


@SETTINGS
@given(shape=st.lists(st.integers(0, 4), min_size=2, max_size=4).filter(lambda s: 0 in s and len(s) in (2, 4)))
def test_empty_arrays_are_refused(shape: list[int]) -> None:
    check = vectors_from_array if len(shape) == 2 else images_from_array
    with pytest.raises(ValueError, match=r"the data is empty|at least 2 features"):
        check(np.zeros(shape, np.float32), source="x.npy")


# ----------------------------------------------------------------------------------------- values


@SETTINGS
@given(x=vectors(), data=st.data(), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_nan_and_inf_are_counted_and_located(x: np.ndarray, data: st.DataObject, bad: float) -> None:
    positions = data.draw(st.sets(st.tuples(st.integers(0, x.shape[0] - 1), st.integers(0, x.shape[1] - 1)),
                                  min_size=1, max_size=x.size))
    for row, column in positions:
        x[row, column] = bad
    first = min(positions)
    message = re.escape(f"NaN or Inf ({len(positions)} of {x.size} values; the first at index {first})")
    with pytest.raises(ValueError, match=message):
        vectors_from_array(x, source="x.npy")


@SETTINGS
@given(dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.int64]), n=small, c=st.integers(1, 3))
def test_integer_pixels_need_levels(dtype: type, n: int, c: int) -> None:
    x = np.random.default_rng(n).integers(0, 100, (n, c, 4, 4)).astype(dtype)
    with pytest.raises(ValueError, match=r"the pixels are integers .*pass --levels L"):
        images_from_array(x, source="x.npy")
    levels = int(x.max()) + 1
    out = images_from_array(x, source="x.npy", levels=max(levels, 2))
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(x.astype(np.float32)))
    if levels > 2:
        message = rf"with --levels {levels - 1} the pixels must be integers in 0..{levels - 2}"
        with pytest.raises(ValueError, match=message):
            images_from_array(x, source="x.npy", levels=levels - 1)


@SETTINGS
@given(x=hnp.arrays(np.float32, st.tuples(small, small, st.just(4), st.just(4)),
                    elements=st.floats(-3, 3, allow_nan=False, width=32)))
def test_float_pixels_must_lie_in_the_unit_interval(x: np.ndarray) -> None:
    if x.min() >= 0 and x.max() < 1:
        assert torch.equal(images_from_array(x, source="x.npy"), torch.from_numpy(x))
    else:
        with pytest.raises(ValueError, match=r"floating-point pixels must lie in \[0, 1\)"):
            images_from_array(x, source="x.npy")


def test_integer_valued_floats_suggest_levels() -> None:
    x = np.arange(2 * 16, dtype=np.float32).reshape(2, 1, 4, 4) * 8  # 0..248
    with pytest.raises(ValueError, match=r"look like integer levels 0..248: pass --levels 256"):
        images_from_array(x, source="x.npy")


@pytest.mark.parametrize(
    "array, error, message",
    [
        (np.zeros((3, 2), bool), TypeError, "boolean"),
        (np.zeros((3, 2), np.complex64), TypeError, "complex"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "expected numbers"),
        (np.array([[1, None]], dtype=object), TypeError, "expected numbers"),
        (np.full((3, 2), 1e300), ValueError, "too large for float32"),
    ],
)
def test_wrong_kinds_of_data(array: np.ndarray, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        vectors_from_array(array, source="x.npy")


# ----------------------------------------------------------------------------------------- files


@SETTINGS
@given(x=vectors(), suffix=st.sampled_from([".npy", ".npz", ".csv"]))
def test_good_files_read_back_unchanged(x: np.ndarray, suffix: str) -> None:
    x = x.astype(np.float32).astype(np.float64)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        if suffix == ".npy":
            np.save(path, x)
        elif suffix == ".npz":
            np.savez(path, x=x, labels=np.arange(len(x)))
        else:
            np.savetxt(path, x, delimiter=",", header="# comment\n" + ",".join("abcde"[: x.shape[1]]), comments="")
        assert np.array_equal(read_array(path), x)


@SETTINGS
@given(suffix=st.sampled_from([".npy", ".npz", ".csv"]), content=st.sampled_from([b"", b"  \n\n"]))
def test_empty_files_are_refused(suffix: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="the file is empty"):
            read_array(path)


@SETTINGS
@given(suffix=st.sampled_from([".npy", ".npz"]), content=st.binary(min_size=1, max_size=200), header=st.booleans())
def test_unreadable_files_are_refused(suffix: str, content: bytes, header: bool) -> None:
    """Random bytes, with or without the right first bytes (numpy's header, a zip header)."""
    if header:
        content = (b"\x93NUMPY" if suffix == ".npy" else b"PK\x03\x04") + content
    assume(content.strip())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"cannot read the file as a {suffix} "):
            read_array(path)


@SETTINGS
@given(x=vectors(min_rows=2), data=st.data(), cell=st.sampled_from(["abc", "", "1,2", "3.4.5", "--", "x1"]))
def test_csv_cells_that_are_not_numbers_are_located(x: np.ndarray, data: st.DataObject, cell: str) -> None:
    rows = [[repr(float(v)) for v in row] for row in x]
    r = data.draw(st.integers(1, len(rows) - 1))  # not the first row, which could be read as a header
    c = data.draw(st.integers(0, x.shape[1] - 1))
    rows[r][c] = f'"{cell}"' if "," in cell else cell
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        path.write_text("\n".join(",".join(row) for row in rows) + "\n")
        shown = "an empty cell" if cell == "" else repr(cell)
        with pytest.raises(ValueError, match=re.escape(f"line {r + 1}, column {c + 1}: {shown} is not a number")):
            read_array(path)


def test_other_file_problems(tmp_path: Path) -> None:
    (tmp_path / "ragged.csv").write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="line 2 has 3 values but the first data row has 2"):
        read_array(tmp_path / "ragged.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"no rows of numbers \(only a header\)"):
        read_array(tmp_path / "header.csv")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(TypeError, match="holds Python objects"):
        read_array(tmp_path / "objects.npy")
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.zeros(2))
    with pytest.raises(ValueError, match=r"holds 2 arrays \['a', 'b'\]; keep only the data, or name it 'x'"):
        read_array(tmp_path / "two.npz")
    (tmp_path / "data.txt").write_text("1 2\n")
    with pytest.raises(ValueError, match="unknown kind of data file '.txt'"):
        read_array(tmp_path / "data.txt")
    with pytest.raises(ValueError, match="no such file or folder"):
        read_array(tmp_path / "missing.npy")
    (tmp_path / "latin1.csv").write_bytes("caf\xe9,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"cannot read the file as text \(UTF-8\)"):
        read_array(tmp_path / "latin1.csv")


def test_png_folders(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "gray").mkdir()
    images = rng.integers(0, 256, (5, 8, 12), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "gray" / f"{i}.png")
    (tmp_path / "gray" / "notes.txt").write_text("ignored")
    assert np.array_equal(read_array(tmp_path / "gray"), images[:, None])
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "gray" / "9.png")
    with pytest.raises(ValueError, match=r"9.png: image of shape \(C, H, W\) = \(3, 8, 8\), but 0.png has \(1, 8, 12"):
        read_array(tmp_path / "gray")
    (tmp_path / "alpha").mkdir()
    Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8), mode="RGBA").save(tmp_path / "alpha" / "a.png")
    with pytest.raises(ValueError, match="PNG mode 'RGBA' is not supported"):
        read_array(tmp_path / "alpha")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read the image"):
        read_array(tmp_path / "broken")
    (tmp_path / "jpegs").mkdir()
    (tmp_path / "jpegs" / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no .png images in the folder \(found .jpg files\)"):
        read_array(tmp_path / "jpegs")


@SETTINGS
@given(n=st.integers(0, 500), val=st.floats(0, 0.45), test=st.floats(0, 0.45), seed=st.integers(0, 2**32 - 1))
def test_split_indices_partition_the_rows(n: int, val: float, test: float, seed: int) -> None:
    train_rows, val_rows, test_rows = split_indices(n, val, test, seed)
    assert sorted(np.concatenate([train_rows, val_rows, test_rows]).tolist()) == list(range(n))
    assert (len(val_rows), len(test_rows)) == (round(n * val), round(n * test))
    again = split_indices(n, val, test, seed)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train_rows, val_rows, test_rows)))


def test_split_fractions_must_leave_training_data() -> None:
    with pytest.raises(ValueError, match=r"--val-fraction \+ --test-fraction must be < 1"):
        split_indices(10, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"--val-fraction must be in \[0, 1\)"):
        split_indices(10, -0.1, 0.5)


# ----------------------------------------------------------------------------------------- through the CLI


def train(tmp_path: Path, model: str, data: Path, *extra: str) -> list[str]:
    return ["train", model, "--data", str(data), "--steps", "2", "--batch-size", "8", "--hidden", "8", "--layers",
            "2", "--device", "cpu", "--out", str(tmp_path / "run"), *extra]  # fmt: skip


@pytest.mark.parametrize(
    "model, array, extra, message",
    [
        ("realnvp", np.zeros((50, 1)), [], "at least 2 features"),
        ("realnvp", np.full((50, 2), np.nan), [], "NaN or Inf"),
        ("multiscale", np.zeros((50, 8, 8), np.uint8), [], "add a channel axis"),
        ("multiscale", np.zeros((50, 1, 8, 8), np.uint8), [], "pass --levels L"),
        ("glow", np.zeros((50, 1, 6, 8), np.uint8), ["--levels", "2"], "divisible by 4 .* got H=6, W=8"),
        ("multiscale", np.full((50, 1, 8, 8), 0.5, np.float32), ["--levels", "2"], "must be integers in 0..1"),
        ("realnvp", np.zeros((50, 2)), ["--levels", "4"], "--levels is for integer pixels of images"),
        ("realnvp", np.ones((50, 2)), [], r"column\(s\) \[1, 2\] \(1-based\) are constant"),
        ("realnvp", np.random.default_rng(0).normal(size=(50, 2)), ["--batch-size", "64"],
         "fewer than one batch .* 40 of them for training.* --batch-size of at most 40"),
        ("realnvp", np.random.default_rng(0).normal(size=(50, 2)), ["--val-fraction", "0.001"],
         "the validation split is empty"),
        ("realnvp", np.random.default_rng(0).normal(size=(50, 2)), ["--test-fraction", "0"], "the test split is empty"),
        ("realnvp", np.random.default_rng(0).normal(size=(50, 2)), ["--n-train", "10"], "--n-train is for the"),
        ("multiscale", np.random.default_rng(0).normal(size=(50, 2)), [], "an image model needs .* use a vector model"),
    ],
)
def test_bad_data_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str,
                                           array: np.ndarray, extra: list[str], message: str) -> None:
    np.save(tmp_path / "data.npy", array)
    assert main(train(tmp_path, model, tmp_path / "data.npy", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err


def test_unknown_data_names_list_the_built_in_sets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "realnvp", "--data", "moonz"]) == 2
    err = capsys.readouterr().err
    assert "--data moonz: no such file or folder, and not a built-in set (checkerboard, circles" in err
