"""Prove flowlib's GPU path on a machine that has one: one command, one screen of summary, non-zero on any problem.

    bash scripts/gpu_check.sh                 # everything, about 5 minutes on one GPU
    bash scripts/gpu_check.sh --steps 100     # shorter CLI runs
    bash scripts/gpu_check.sh --dry-run       # print the plan, run nothing (works without a GPU)
    bash scripts/gpu_check.sh --only checkpoint torchrun

The checks, in order (each is timed; a failure does not stop the others):

1. ``environment``: CUDA is available; the GPU, torch, CUDA and bf16 support.
2. ``cuda-tests``: the test suite's CUDA-only tests (``pytest -m cuda``).
3. ``models``: every command-line model (``python -m flowlib list``) trains
   ``--steps`` steps on CUDA twice, in float32 and under bf16 autocast; the two
   test NLLs must agree within ``0.05 + 0.02 |NLL|`` nats (bf16 conditioners
   move the optimization a little, not the likelihood). Before training, the
   model is moved to CUDA and one ``log_prob`` and one ``sample`` under bf16
   autocast must leave every parameter, buffer and output on the GPU, with
   float32 log-densities.
4. ``checkpoint``: the float32 run's ``model.pt``, written on the GPU, loads on
   the CPU (``flowlib.cli.load_model``, ``weights_only=True``) and gives the
   same test NLL there (within 1e-3 nats).
5. ``torchrun``: ``torchrun --nproc_per_node=1`` trains through
   DistributedDataParallel with the NCCL backend.
6. ``full-chapter``: chapter 4 executes with ``FLOWLIB_FULL=1`` (its large
   configuration, ``device="auto"``) into the output folder; the committed
   notebook is not touched.

Results go to ``--out`` (default ``gpu-check/``): ``summary.txt``,
``results.json`` and each step's log. Record the summary in
``benchmarks/README.md`` ("GPU check").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("environment", "cuda-tests", "models", "checkpoint", "torchrun", "full-chapter")
FULL_CHAPTER = "04_coupling_flows"


@dataclass
class Result:
    """The outcome of one check."""

    check: str
    ok: bool
    seconds: float
    detail: str
    data: dict = field(default_factory=dict)


def bf16_tolerance(nll: float) -> float:
    """How far the bf16-autocast test NLL may be from the float32 one, in nats."""
    return 0.05 + 0.02 * abs(nll)


def summarize(results: list[Result], header: str = "") -> str:
    """One screen: a line per check (PASS/FAIL, seconds, detail) and the verdict."""
    lines = [header] if header else []
    width = max((len(r.check) for r in results), default=5)
    for r in results:
        lines.append(f"{'PASS' if r.ok else 'FAIL'}  {r.check:<{width}}  {r.seconds:7.1f} s  {r.detail}")
    failed = [r.check for r in results if not r.ok]
    total = sum(r.seconds for r in results)
    verdict = f"GPU check FAILED: {', '.join(failed)}" if failed else "GPU check passed"
    lines.append(f"{verdict} ({len(results)} checks, {total:.0f} s)")
    return "\n".join(lines)


def _run(command: list[str], log: Path, env: dict[str, str] | None = None, timeout: int = 900) -> tuple[int, str]:
    """Run a command, write its output to ``log``, return ``(exit status, last lines)``."""
    merged = dict(os.environ, **(env or {}))
    try:
        done = subprocess.run(command, cwd=ROOT, env=merged, capture_output=True, text=True, timeout=timeout)
        output, status = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as error:
        output, status = f"timed out after {timeout} s\n{error.stdout or ''}{error.stderr or ''}", 124
    log.write_text(" ".join(command) + "\n\n" + output)
    tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:])
    return status, tail


def check_environment(args: argparse.Namespace) -> Result:
    import torch

    if not torch.cuda.is_available():
        return Result("environment", False, 0.0, f"no CUDA device visible (torch {torch.__version__}, CUDA {torch.version.cuda})")
    name = torch.cuda.get_device_name(0)
    data = {
        "gpu": name,
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": torch.cuda.is_bf16_supported(),
    }
    return Result("environment", True, 0.0, f"{name} x{data['gpus']}, torch {data['torch']}, CUDA {data['cuda']}, "
                  f"bf16 {'yes' if data['bf16'] else 'no'}", data)


def check_cuda_tests(args: argparse.Namespace) -> Result:
    status, tail = _run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests"], args.out / "cuda-tests.log")
    return Result("cuda-tests", status == 0, 0.0, tail)


def _device_audit(model_name: str, data: str) -> str | None:
    """Move a fresh model to CUDA, run log_prob and sample under bf16 autocast; return a problem or None."""
    import torch

    from flowlib.cli import build_model

    torch.manual_seed(0)
    flow = build_model(model_name, None, 64, data).to("cuda")
    shape = (4, *flow.event_shape)
    x = torch.rand(shape, device="cuda") if data == "digits" else torch.randn(shape, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        log_p = flow.log_prob(x)
        samples = flow.sample(4)
    off = [name for name, t in [*flow.named_parameters(), *flow.named_buffers()] if t.device.type != "cuda"]
    if off:
        return f"{model_name}: on the CPU after .to('cuda'): {off[:3]}"
    if log_p.device.type != "cuda" or samples.device.type != "cuda":
        return f"{model_name}: outputs on {log_p.device} / {samples.device}"
    if log_p.dtype != torch.float32:
        return f"{model_name}: log_prob under bf16 autocast is {log_p.dtype}, not float32"
    if not bool(torch.isfinite(log_p).all()):
        return f"{model_name}: non-finite log_prob under bf16 autocast"
    return None


def _models() -> list[tuple[str, str]]:
    from flowlib.cli import IMAGE_MODELS, MODELS

    return [(name, "digits" if name in IMAGE_MODELS else "moons") for name in MODELS]


def check_models(args: argparse.Namespace) -> Result:
    rows, problems = {}, []
    for name, data in _models():
        problem = _device_audit(name, data)
        if problem:
            problems.append(problem)
        nll = {}
        for precision in ("off", "on"):
            out = args.out / f"{name}-{'fp32' if precision == 'off' else 'bf16'}"
            command = [
                sys.executable, "-m", "flowlib", "train", name, "--data", data, "--steps", str(args.steps),
                "--eval-every", str(max(1, args.steps // 5)), "--device", "cuda", "--mixed-precision", precision,
                "--batch-size", "256", "--out", str(out),
            ]  # fmt: skip
            status, tail = _run(command, args.out / f"{out.name}.log")
            if status != 0:
                problems.append(f"{name} ({precision}): exit {status}: {tail}")
                continue
            nll[precision] = json.loads((out / "metrics.json").read_text())["test_nll"]
        if len(nll) == 2:
            gap = abs(nll["on"] - nll["off"])
            rows[name] = {"fp32": nll["off"], "bf16": nll["on"], "gap": gap}
            if not math.isfinite(gap) or gap > bf16_tolerance(nll["off"]):
                problems.append(f"{name}: bf16 NLL {nll['on']:.4f} vs float32 {nll['off']:.4f}")
    detail = "; ".join(f"{n} {r['fp32']:.3f}/{r['bf16']:.3f}" for n, r in rows.items()) + " (test NLL fp32/bf16)"
    return Result("models", not problems, 0.0, "; ".join(problems) or detail, rows)


def check_checkpoint(args: argparse.Namespace) -> Result:
    import torch

    from flowlib.cli import load_model

    name, data = _models()[0]
    run = args.out / f"{name}-fp32"
    if not (run / "model.pt").is_file():
        return Result("checkpoint", False, 0.0, f"{run}/model.pt missing: the models check did not write it")
    flow = load_model(run / "model.pt")
    devices = {t.device.type for t in flow.state_dict().values()}
    from flowlib import data as datasets

    scaler = datasets.Standardizer().fit(datasets.toy_dataset(data, 20000, seed=0))
    test = scaler.transform(datasets.toy_dataset(data, 5000, seed=2))
    with torch.no_grad():
        nll = -flow.log_prob(test).double().mean().item()
    on_gpu = json.loads((run / "metrics.json").read_text())["test_nll"]
    ok = devices == {"cpu"} and abs(nll - on_gpu) < 1e-3
    return Result("checkpoint", ok, 0.0, f"{name} saved on CUDA, loaded on {sorted(devices)}: NLL {nll:.5f} vs {on_gpu:.5f} on GPU")


def check_torchrun(args: argparse.Namespace) -> Result:
    out = args.out / "torchrun"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    command = [
        torchrun, "--nproc_per_node=1", "--standalone", "-m", "flowlib", "train", "realnvp", "--data", "moons",
        "--steps", "100", "--eval-every", "50", "--device", "cuda", "--out", str(out),
    ]  # fmt: skip
    status, tail = _run(command, args.out / "torchrun.log")
    if status != 0:
        return Result("torchrun", False, 0.0, f"exit {status}: {tail}")
    metrics = json.loads((out / "metrics.json").read_text())
    ok = metrics.get("processes") == 1 and str(metrics.get("device", "")).startswith("cuda")
    return Result("torchrun", ok, 0.0, f"NCCL, {metrics.get('processes')} process, test NLL {metrics['test_nll']:.3f}")


def check_full_chapter(args: argparse.Namespace) -> Result:
    source = ROOT / "book" / f"{FULL_CHAPTER}.ipynb"
    target = args.out / f"{FULL_CHAPTER}-full.ipynb"
    code = (
        "import nbformat, sys; from nbclient import NotebookClient; "
        f"nb = nbformat.read({str(source)!r}, as_version=4); "
        f"NotebookClient(nb, timeout=1200, kernel_name='python3', resources={{'metadata': {{'path': {str(source.parent)!r}}}}}).execute(); "
        f"nbformat.write(nb, {str(target)!r})"
    )
    status, tail = _run([sys.executable, "-c", code], args.out / "full-chapter.log", env={"FLOWLIB_FULL": "1"}, timeout=1500)
    return Result("full-chapter", status == 0, 0.0, f"{FULL_CHAPTER} with FLOWLIB_FULL=1" + ("" if status == 0 else f": {tail}"))


RUNNERS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "environment": check_environment,
    "cuda-tests": check_cuda_tests,
    "models": check_models,
    "checkpoint": check_checkpoint,
    "torchrun": check_torchrun,
    "full-chapter": check_full_chapter,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-check", help="results folder (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per model and precision")
    parser.add_argument("--only", nargs="+", choices=CHECKS, help="run only these checks")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit (no GPU needed)")
    args = parser.parse_args(argv)
    if args.steps < 10:
        parser.error(f"--steps must be at least 10, got {args.steps}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = list(args.only or CHECKS)
    if args.dry_run:
        print(f"would run, writing to {args.out}: " + ", ".join(checks))
        print("models: " + ", ".join(f"{n} on {d}" for n, d in _models()) + f"; {args.steps} steps, fp32 and bf16")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    for check in checks:
        start = time.perf_counter()
        if check != "environment" and results and results[0].check == "environment" and not results[0].ok:
            results.append(Result(check, False, 0.0, "skipped: no CUDA device"))
            continue
        try:
            result = RUNNERS[check](args)
        except Exception as error:  # report every problem in the summary, keep going
            result = Result(check, False, 0.0, f"{type(error).__name__}: {error}")
        result.seconds = time.perf_counter() - start
        results.append(result)
        print(summarize([result]).splitlines()[0], flush=True)
    summary = summarize(results, header=f"flowlib GPU check, {time.strftime('%Y-%m-%d %H:%M')}")
    (args.out / "summary.txt").write_text(summary + "\n")
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    print()
    print(summary)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
