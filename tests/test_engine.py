"""The shared training engine on a tiny regression task: exact resumption, the world-size rule
(2-rank gloo via torchrun), non-finite losses caught before any checkpoint, no host reads of
the losses between log intervals, devices, precisions, RNG state, log and plot.

Run as a script under torchrun, this file is the 2-rank worker of the distributed tests.
"""
from __future__ import annotations

import functools
import json
import math
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # as a torchrun script

from backbones import CheckpointError, read_checkpoint  # noqa: E402
from engine import (CHECKPOINT_NAME, PRECISIONS, DistInfo, Engine, LoopSettings, WorldSizeChangeError,  # noqa: E402
                    bf16_unsupported_reason, capture_rng, close_distributed, cuda_bf16_native, init_distributed, plot_log, rank_seed,
                    read_log, resolve_device, resolve_precision, restore_rng, seed_rank, torch_dtype)
from conftest import torchrun  # noqa: E402

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
W_TRUE = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


class TinyTask(nn.Module):
    """Linear regression through a small MLP with dropout (so the loss draws from the RNG)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Dropout(0.25), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        err = self.net(x).float() - y
        mse, l1 = err.square().mean(), err.abs().mean()
        return {"mse": mse, "l1": l1, "loss": mse + 0.1 * l1}


@functools.cache
def true_weights(device: torch.device) -> torch.Tensor:
    return W_TRUE.to(device)


def tiny_batch(epoch: int, index: int, device: torch.device, poison: bool = False) -> tuple[torch.Tensor, ...]:
    """Batch ``index`` of ``epoch``: the same whatever the run, the rank layout or a resume
    (drawn on the device itself: no host-to-device copies)."""
    g = torch.Generator(device=device).manual_seed(1000 * epoch + index)
    x = torch.randn(8, 4, generator=g, device=device)
    y = x @ true_weights(device) + 0.01 * torch.randn(8, 1, generator=g, device=device)
    if poison:
        x[0, 0] = math.nan
    return x, y


def tiny_engine(work: Path, info: DistInfo = DistInfo(), precision: str = "fp32", **settings) -> Engine:
    torch.manual_seed(0)
    model = TinyTask().to(info.device)
    seed_rank(7, info.rank)  # as the tasks do: each rank its own dropout draws
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loop = {"epochs": 2, "steps_per_epoch": 4, "accum_steps": 1, "clip_grad": 1.0, "log_interval": 1,
            "samples_per_step": 8 * info.world_size, "progress_bar": False, **settings}
    if info.is_main:
        work.mkdir(parents=True, exist_ok=True)
    return Engine(model, optimizer, info, resolve_precision(precision, info.device), LoopSettings(**loop),
                  work / CHECKPOINT_NAME, seed=7, task_state=lambda: {"task": "tiny"})


def tiny_fit(engine: Engine, poison: tuple[int, int] | None = None, **fit_options) -> bool:
    """Run ``engine`` on the tiny data; ``poison``: (epoch, step) of this rank whose batch holds a NaN;
    ``fit_options``: more arguments of :meth:`Engine.fit` (callbacks)."""
    info = engine.info

    # the engine's sampler over batch numbers (batch_size 1): rank r takes batches r, r + W, ...
    keys = engine.sampler(engine.settings.steps_per_epoch * info.world_size, batch_size=1)
    batches = (tiny_batch(epoch, index, info.device, poison == (epoch, index // info.world_size))
               for epoch, index in keys)

    def loss_step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        with engine.precision.autocast():
            return model(*batch)

    return engine.fit(batches, loss_step, **fit_options)


def train_records(work: Path) -> list[dict]:
    return [r for r in read_log(work / "log.jsonl") if r["event"] == "train"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------- resumption
@pytest.mark.parametrize("accum_steps", [1, 2])
def test_resume_mid_epoch_is_bit_identical(tmp_path, accum_steps):
    full = tiny_engine(tmp_path / "full", accum_steps=accum_steps, epochs=3)
    assert tiny_fit(full)
    per_epoch = 4 // accum_steps
    updates = 3 * per_epoch
    assert full.position.update == updates

    stop = per_epoch + 1  # inside the second epoch
    first = tiny_engine(tmp_path / "split", accum_steps=accum_steps, epochs=3, max_updates=stop)
    assert not tiny_fit(first)
    saved = read_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)
    assert saved["position"] == {"epoch": 1, "epoch_step": accum_steps, "update": stop}
    assert saved["task"] == "tiny" and saved["world_size"] == 1 and len(saved["rng"]) == 1
    again = tiny_engine(tmp_path / "split", accum_steps=accum_steps, epochs=3, max_updates=stop)
    again.resume(tmp_path / "split" / CHECKPOINT_NAME)
    assert not tiny_fit(again) and again.position.update == stop  # already at max_updates: no step
    torch.manual_seed(123)  # whatever the process did since: the checkpoint's RNG state is restored
    second = tiny_engine(tmp_path / "split", accum_steps=accum_steps, epochs=3)
    second.resume(tmp_path / "split" / CHECKPOINT_NAME)
    assert tiny_fit(second)

    a, b = read_checkpoint(tmp_path / "full" / CHECKPOINT_NAME), read_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)
    assert_same_weights(a["model"], b["model"])
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert_same_weights(state_a, state_b)
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    losses = {r["update"]: (r["loss"], r["mse"], r["l1"]) for r in train_records(tmp_path / "full")}
    assert sorted(losses) == list(range(1, updates + 1))
    assert losses == {r["update"]: (r["loss"], r["mse"], r["l1"]) for r in train_records(tmp_path / "split")}
    assert losses[updates][0] < losses[1][0]  # it learns
    resume = [r for r in read_log(tmp_path / "split" / "log.jsonl") if r["event"] == "resume"]
    assert len(resume) == 2 and all(r["exact"] is True and r["update"] == stop for r in resume)


def test_a_snapshot_elsewhere_does_not_replace_the_final_checkpoint(tmp_path):
    """A save to another file (an epoch snapshot from on_epoch_end) is not the run's checkpoint:
    fit still writes latest.pth at the end."""
    engine = tiny_engine(tmp_path, epochs=2)
    snapshots = []

    def snapshot(epoch: int) -> None:
        snapshots.append(engine.save(tmp_path / f"epoch_{epoch}.pth"))

    assert tiny_fit(engine, on_epoch_end=snapshot)
    assert [p.name for p in snapshots] == ["epoch_0.pth", "epoch_1.pth"]
    assert read_checkpoint(tmp_path / "epoch_1.pth")["position"]["update"] == 8
    assert read_checkpoint(tmp_path / CHECKPOINT_NAME)["position"] == {"epoch": 2, "epoch_step": 0, "update": 8}


def test_resume_from_a_file_that_is_not_a_training_checkpoint_names_it(tmp_path):
    engine = tiny_engine(tmp_path / "run")
    path = tmp_path / "weights.pth"
    torch.save({"net": engine.module.state_dict(), "meta": {}}, path)
    with pytest.raises(CheckpointError, match="not a training checkpoint of this engine") as error:
        engine.resume(path)
    text = str(error.value)
    assert str(path) in text and "'position'" in text and "'rng'" in text and "'model'" in text
    assert engine.position.update == 0


def test_rng_state_round_trip_loads_with_weights_only(tmp_path):
    seed_rank(3, 1, 5)
    random.gauss(0, 1)  # python's cached second gaussian is part of the state
    np.random.standard_normal()
    state = capture_rng(torch.device("cpu"))
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    torch.save({"rng": [state]}, tmp_path / "rng.pth")
    loaded = torch.load(tmp_path / "rng.pth", weights_only=True)["rng"][0]
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    restore_rng(loaded, torch.device("cpu"))
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], random.gauss(0, 1))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]
    seeds = {rank_seed(3, rank, step) for rank in range(4) for step in (0, 1, 1000)}
    assert len(seeds) == 12 and rank_seed(3, 1, 5) == rank_seed(3, 1, 5)


# ------------------------------------------------------------------------- non-finite losses
def test_nan_loss_raises_at_the_next_checkpoint_and_keeps_the_last_good_one(tmp_path):
    engine = tiny_engine(tmp_path, steps_per_epoch=8, log_interval=100, checkpoint_interval=2)
    with pytest.raises(FloatingPointError, match=r"updates 1-4 \(epoch 0\): .*loss=nan") as error:
        tiny_fit(engine, poison=(0, 2))  # update 3
    assert "l1=nan" in str(error.value) and "mse=nan" in str(error.value)
    assert engine.position.update == 4  # raised at the checkpoint of update 4, not later
    assert not all(torch.isfinite(p).all() for p in engine.module.parameters())  # the guard mattered
    saved = read_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert saved["position"]["update"] == 2
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    assert not list(tmp_path.glob(".*tmp*"))


def test_nan_loss_raises_at_the_next_log_record(tmp_path):
    engine = tiny_engine(tmp_path, log_interval=2, checkpoint_interval=2)
    with pytest.raises(FloatingPointError, match=r"updates 3-4 \(epoch 0\)"):
        tiny_fit(engine, poison=(0, 2))
    assert engine.position.update == 4
    assert [r["update"] for r in train_records(tmp_path)] == [2]
    assert read_checkpoint(tmp_path / CHECKPOINT_NAME)["position"]["update"] == 2


def test_non_finite_weights_are_never_saved(tmp_path):
    engine = tiny_engine(tmp_path)
    tiny_fit(engine)
    with torch.no_grad():
        engine.module.net[3].bias.fill_(math.inf)  # e.g. an overflow the losses did not show yet
    with pytest.raises(FloatingPointError, match=r"non-finite weights after update 8 \(epoch 2\): \['net.3.bias'\]"):
        engine.save(tmp_path / "other.pth")
    assert not (tmp_path / "other.pth").exists()


def test_losses_are_read_on_the_host_only_at_log_intervals_and_checkpoints(tmp_path, monkeypatch):
    """Every tensor -> Python conversion made by engine code is counted: one read per log record
    (the window's sums) and two per checkpoint (window, weights); none in ordinary steps. The
    sampler's index lists (host tensors it draws itself, engine/data.py) are not counted."""
    reads: list[str] = []
    engine_dir, sampler_file = str(REPO / "engine"), str(REPO / "engine" / "data.py")
    for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(engine_dir) and caller.f_code.co_filename != sampler_file:
                reads.append(caller.f_code.co_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    engine = tiny_engine(tmp_path, epochs=2, steps_per_epoch=6, log_interval=3, checkpoint_interval=4)
    tiny_fit(engine)
    monkeypatch.undo()
    assert [r["update"] for r in train_records(tmp_path)] == [3, 6, 9, 12]
    # checkpoints at updates 4, 8 and 12; the one of update 12 follows the log record of that
    # update, so its loss window is empty and needs no read
    log, save = ["totals"], ["totals", "_check_finite_weights"]
    assert reads == log + save + log + save + log + log + ["_check_finite_weights"]


# ------------------------------------------------------------------------- two ranks (gloo)
def _ddp_worker(work: Path) -> None:
    """torchrun worker: (1) 3 updates on 2 ranks, stopped with a checkpoint; (2) a NaN loss on
    rank 1 only, which both ranks must report at the same log record."""
    info = init_distributed("cpu")
    try:
        assert info.world_size == 2 and info.device.type == "cpu"
        tiny_fit(tiny_engine(work / "train", info, max_updates=3))
        engine = tiny_engine(work / "nan", info, log_interval=2)
        try:
            tiny_fit(engine, poison=(0, 1) if info.rank == 1 else None)
            message = "no error"
        except FloatingPointError as error:
            message = str(error)
        (work / "nan" / f"rank{info.rank}.txt").write_text(message)
    finally:
        close_distributed()


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("ddp")
    torchrun(__file__, work)
    return work


def test_two_ranks_report_a_nan_of_one_rank_together(two_rank_run):
    messages = [(two_rank_run / "nan" / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert messages[0] == messages[1]
    assert "updates 1-2 (epoch 0)" in messages[0] and "loss=nan" in messages[0] and "2 rank(s)" in messages[0]
    assert not (two_rank_run / "nan" / CHECKPOINT_NAME).exists()


def test_world_size_change_is_refused_or_reseeded(two_rank_run, tmp_path):
    path = two_rank_run / "train" / CHECKPOINT_NAME
    saved = read_checkpoint(path)
    assert saved["world_size"] == 2 and saved["position"]["update"] == 3
    assert not torch.equal(saved["rng"][0]["torch"], saved["rng"][1]["torch"])
    log = read_log(two_rank_run / "train" / "log.jsonl")
    assert [r["update"] for r in log if r["event"] == "train"] == [1, 2, 3]
    assert all(r["samples_per_s"] > 0 for r in log if r["event"] == "train")

    engine = tiny_engine(tmp_path / "a")
    before = {k: v.clone() for k, v in engine.module.state_dict().items()}
    with pytest.raises(WorldSizeChangeError) as error:
        engine.resume(path, option="tiny.allow_world_size_change=True")
    text = str(error.value)
    assert str(path) in text and "written by 2 process(es), resumed by 1" in text
    assert "tiny.allow_world_size_change=True" in text
    assert_same_weights(before, engine.module.state_dict())  # refused before loading anything
    assert engine.position.update == 0

    seed_rank(7, 0, 3)  # what the override must do: (seed, rank, update)
    expected = capture_rng(torch.device("cpu"))
    torch.manual_seed(99)
    engine.resume(path, allow_world_size_change=True)
    now = capture_rng(torch.device("cpu"))
    assert torch.equal(now["torch"], expected["torch"]) and torch.equal(now["numpy"]["keys"], expected["numpy"]["keys"])
    assert torch.equal(now["python"]["internal"], expected["python"]["internal"])
    assert_same_weights(saved["model"], engine.module.state_dict())
    record = [r for r in read_log(tmp_path / "a" / "log.jsonl") if r["event"] == "resume"][0]
    assert record["exact"] is False and (record["saved_world_size"], record["world_size"]) == (2, 1)
    assert "not bit-identical" in record["note"]
    tiny_fit(engine)

    again = tiny_engine(tmp_path / "b")  # the re-seeded continuation is deterministic
    again.resume(path, allow_world_size_change=True)
    tiny_fit(again)
    assert_same_weights(engine.module.state_dict(), again.module.state_dict())


# ------------------------------------------------------------------------- devices, precision
def test_device_choices_and_errors(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="runtime.device='gpu': expected 'auto', 'cpu', 'cuda' or 'cuda:<index>'"):
        resolve_device("gpu", option="runtime.device")
    with pytest.raises(ValueError, match="device='cuda:x': the GPU index must be a non-negative integer"):
        resolve_device("cuda:x")
    with pytest.raises(ValueError, match="--device 'tpu': expected"):  # a flag is named as on the command line
        resolve_device("tpu", option="--device")
    for bad in ("tpu:0", "mps"):
        with pytest.raises(ValueError, match=r"device=.*: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>'"):
            resolve_device(bad)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="runtime.device='cuda:0' under torchrun with 2 processes"):
        init_distributed("cuda:0", option="runtime.device")
    monkeypatch.delenv("WORLD_SIZE")
    if torch.cuda.is_available():
        assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
        assert resolve_device("cuda") == torch.device("cuda", 0)
        count = torch.cuda.device_count()
        with pytest.raises(ValueError, match=f"GPU {count} does not exist"):
            resolve_device(f"cuda:{count}")
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="runtime.device='cuda' asks for a GPU, but torch sees none"):
            resolve_device("cuda", option="runtime.device")
        with pytest.raises(ValueError, match="device='cuda:3' asks for a GPU, but torch sees none"):
            resolve_device("cuda:3")
        with pytest.raises(ValueError, match="asks for a GPU"):
            init_distributed("cuda:0")


@pytest.mark.filterwarnings("ignore:.*'bf16' on cpu:RuntimeWarning")  # on a CPU that emulates bf16
def test_precision_choices_and_errors():
    cpu = torch.device("cpu")
    assert list(PRECISIONS) == ["fp32", "bf16", "fp16"]
    fp32 = resolve_precision(None, cpu)
    assert fp32.name == "fp32" and fp32.dtype is None and not fp32.grad_scaler().is_enabled()
    bf16 = resolve_precision("bf16", cpu)
    a = torch.randn(4, 4)
    with fp32.autocast():
        assert (a @ a).dtype == torch.float32
    with bf16.autocast():
        assert (a @ a).dtype == torch.bfloat16
    assert not bf16.grad_scaler().is_enabled()
    with pytest.raises(ValueError, match=r"runtime.precision='fp16' needs a GPU .* device is cpu"):
        resolve_precision("fp16", cpu, option="runtime.precision")
    with pytest.raises(ValueError, match=r"runtime.precision must be one of \['fp32', 'bf16', 'fp16'\], got 'fp8'"):
        resolve_precision("fp8", cpu, option="runtime.precision")


def test_bf16_on_a_cpu_that_emulates_it_warns(monkeypatch):
    import engine.precision as precision_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision_module, "cpu_flags", lambda path="/proc/cpuinfo": frozenset({"avx2", "fma"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with pytest.warns(RuntimeWarning, match=r"runtime.precision='bf16' on cpu: .*without avx512_bf16 or amx_bf16"):
        assert resolve_precision("bf16", cpu, option="runtime.precision").name == "bf16"  # a warning, not an error
    monkeypatch.setattr(precision_module, "cpu_flags", lambda path="/proc/cpuinfo": frozenset({"avx512f", "amx_bf16"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", cpu).name == "bf16"
        assert resolve_precision("fp32", cpu).name == "fp32"


def test_cuda_bf16_is_native_from_compute_capability_8():
    """A GPU computes bf16 natively from Ampere (8.0) on; before that torch emulates it (and
    ``torch.cuda.is_bf16_supported()`` still says True), so bf16 there warns like an emulating CPU."""
    cuda = torch.device("cuda", 0)
    for capability, native in [((7, 0), False), ((7, 5), False), ((8, 0), True), ((8, 6), True), ((9, 0), True),
                               ((12, 0), True)]:
        assert cuda_bf16_native(cuda, capability) is native, capability
        reason = bf16_unsupported_reason(cuda, cuda_capability=capability)
        assert (reason is None) is native, capability
    assert "compute capability 7.5: native bf16 needs 8.0 or newer" in bf16_unsupported_reason(
        cuda, cuda_capability=(7, 5))
    with pytest.warns(RuntimeWarning, match=r"runtime.precision='bf16' on cuda:0: .*compute capability 7\.0"):
        assert resolve_precision("bf16", cuda, "runtime.precision", cuda_capability=(7, 0)).name == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", cuda, cuda_capability=(8, 0)).dtype == torch.bfloat16
    assert [torch_dtype(name) for name in PRECISIONS] == [torch.float32, torch.bfloat16, torch.float16]
    with pytest.raises(ValueError, match="precision must be one of"):
        torch_dtype("fp8")


@pytest.mark.filterwarnings("ignore:.*'bf16' on cpu:RuntimeWarning")  # on a CPU that emulates bf16
def test_bf16_run_on_cpu(tmp_path):
    losses = {}
    for precision in ("fp32", "bf16"):
        engine = tiny_engine(tmp_path / precision, precision=precision)
        dtypes = set()
        engine.module.net[0].register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
        assert tiny_fit(engine)
        assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}  # the layers ran in it
        records = train_records(tmp_path / precision)
        assert len(records) == 8 and all(math.isfinite(r["loss"]) for r in records)
        losses[precision] = [r["loss"] for r in records]
    assert losses["bf16"] != losses["fp32"] and np.allclose(losses["bf16"], losses["fp32"], rtol=0.05)
    assert read_checkpoint(tmp_path / "bf16" / CHECKPOINT_NAME)["scaler"] == {}  # no scaler outside fp16


# ------------------------------------------------------------------------- log and plot
def test_read_log_names_file_and_line_of_a_broken_record(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"event": "train", "update": 1}) + "\n\n" + '{"event": "train", "upd\n')
    with pytest.raises(ValueError, match=rf"{path}:3: not a JSON record"):
        read_log(path)
    path.write_text('{"event": "start"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=rf"{path}:2: a record must be a JSON object"):
        read_log(path)


def test_loss_plot_is_a_png_written_atomically(tmp_path):
    engine = tiny_engine(tmp_path)
    tiny_fit(engine)
    png = plot_log(tmp_path / "log.jsonl", tmp_path / "loss.png", twin="epoch")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME, "log.jsonl", "loss.png"]


# ------------------------------------------------------------------------- CUDA (skipped without a GPU)
@needs_cuda
def test_cuda_fp16_with_grad_scaler_resumes_exactly(tmp_path):
    info = DistInfo(device=torch.device("cuda", 0))
    precision = resolve_precision("fp16", info.device)
    assert precision.grad_scaler().is_enabled()
    with precision.autocast():
        assert (torch.randn(4, 4, device="cuda") @ torch.randn(4, 4, device="cuda")).dtype == torch.float16
    full = tiny_engine(tmp_path / "full", info, "fp16")
    assert tiny_fit(full)
    first = tiny_engine(tmp_path / "split", info, "fp16", max_updates=5)
    tiny_fit(first)
    saved = read_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)
    assert saved["scaler"]["scale"] > 0 and "cuda" in saved["rng"][0]
    second = tiny_engine(tmp_path / "split", info, "fp16")
    second.resume(tmp_path / "split" / CHECKPOINT_NAME)
    assert second.scaler.get_scale() == first.scaler.get_scale()
    tiny_fit(second)
    assert_same_weights(read_checkpoint(tmp_path / "full" / CHECKPOINT_NAME)["model"],
                        read_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)["model"])


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_steps_do_not_synchronize(tmp_path, precision):
    """CUDA's sync debug mode reports every host-device synchronisation: all of them must happen
    while a log record or a checkpoint is written, none in the steps between."""
    info = DistInfo(device=torch.device("cuda", 0))
    tiny_fit(tiny_engine(tmp_path / "warm", info, precision, epochs=1))  # first-use syncs (allocator, cuBLAS)
    engine = tiny_engine(tmp_path / "run", info, precision, epochs=1, steps_per_epoch=8, log_interval=4,
                         checkpoint_interval=8)
    reporting, stray, reported = [False], [], []

    def while_reporting(method):
        def wrapper(*args, **kwargs):
            reporting[0] = True
            try:
                return method(*args, **kwargs)
            finally:
                reporting[0] = False
        return wrapper

    engine._write_log, engine.save = while_reporting(engine._write_log), while_reporting(engine.save)

    def on_warning(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            (reported if reporting[0] else stray).append(f"{filename}:{lineno}")

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = on_warning
            tiny_fit(engine)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert reported, "sync debug mode reported nothing: the check itself is broken"
    assert not stray, stray


if __name__ == "__main__":
    _ddp_worker(Path(sys.argv[1]))
