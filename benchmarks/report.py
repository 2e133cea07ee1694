"""The main job (``make benchmark``): the study's tables, model sizes and speed, in one report.

    python tools/benchmark.py                          # everything; embedded data (photos) when none is given
    python tools/benchmark.py --sections speed --full-repeats  # only the speed tables, full timing repeats
    python tools/benchmark.py --sections study --lasot-results ours=R1 other=R2 --lasot-annos DIR \\
        --ade20k-results ours=PREDS --ade20k /data/ADEChallengeData2016 \\
        --imagenet-results ours=work_dirs/ft/metrics.json --backbone ours=backbone.pth

Sections (``--sections`` takes names or groups: speed = pretrain seg track, eval = study, all):
  study     each pre-training recipe of the backbone (benchmarks/study/settings.py: none, supervised,
            MoCo-v3, MAE, D-MAE, D²-MAE, those whose config is in the tree) beside what it gives
            downstream (probe / fine-tune top-1 over seeds, mIoU, tracking AUC, each against its
            trivial baseline) with sizes and speed; without data a toy-scale run of the whole job on
            real photos (see benchmarks/study/), with data given the results of real runs scored by
            the shared evaluators (lasot and ade20k are accepted as older names of this section)
  models    parameters and FLOPs of every backbone (torch's flop counter, fused attention included)
  pretrain  MAE-Tiny / D²-MAE-Tiny training-step throughput vs MAE-Lite's own code, same run
  seg       parameters and FLOPs of every segmentation config at 512x512; CPU latency of our
            ViT-Tiny UperNet vs mmseg's built-in MAE backbone with the same neck and head
  track     tracking speed per runtime, precision and batch vs OSTrack's own network (same run),
            share of the measured matmul peak, end to end over 1280x720 JPEG sequences

The speed sections take their short timing repeats unless --full-repeats is given (the main job's
time goes to the study). bf16 rows are measured only where the CPU computes bf16 natively
(AVX512-BF16 or AMX): elsewhere torch emulates it and the rows would time the emulation; the report
says which applies.
Trained artefacts of the study are cached under $LITEVIT_CACHE/benchmark (default
~/.cache/litevit/benchmark), keyed by content (configs, inputs and the code each stage runs): a
second run re-scores and re-measures only, and a change of code re-runs the stages it affects.
Writes OUT/report.md, OUT/report.json (after every section), the pictures and OUT/logs/.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine import bf16_unsupported_reason, cpu_flags
from fileio import atomic_write_json, atomic_write_text

from .stages import StageProgress, default_cache

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- what the CPU does
def cpu_model(path: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in path.read_text(errors="replace").splitlines():
            if line.split(":", 1)[0].strip() == "model name":
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class CpuSupport:
    """What the CPU computes natively, and what the speed sections therefore measure."""

    capability: str          # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...
    model: str
    avx512_bf16: bool
    amx_bf16: bool
    bf16_emulated: str | None   # engine.bf16_unsupported_reason: why bf16 would be emulated; None if native

    @property
    def native_bf16(self) -> bool:
        return self.bf16_emulated is None

    @property
    def dtypes(self) -> list[str]:
        """Precisions worth timing: fp32 always, bf16 only where it is not emulated."""
        return ["fp32", "bf16"] if self.native_bf16 else ["fp32"]

    def note(self) -> str:
        if self.native_bf16:
            found = [n for n, v in (("avx512_bf16", self.avx512_bf16), ("amx_bf16", self.amx_bf16)) if v]
            return f"native bf16 ({', '.join(found)}): bf16 rows measured"
        return f"bf16 rows left out: {self.bf16_emulated}"

    def to_dict(self) -> dict[str, Any]:
        return {"capability": self.capability, "model": self.model, "avx512_bf16": self.avx512_bf16,
                "amx_bf16": self.amx_bf16, "native_bf16": self.native_bf16, "dtypes": self.dtypes}


def detect_cpu(flags: frozenset[str] | None = None, capability: str | None = None) -> CpuSupport:
    import torch

    flags = cpu_flags() if flags is None else frozenset(flags)
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    return CpuSupport(capability, cpu_model(), "avx512_bf16" in flags, "amx_bf16" in flags,
                      bf16_unsupported_reason("cpu", flags, capability))


# ------------------------------------------------------------------------------------- sections
@dataclass
class Context:
    """What every section gets: options, the CPU's support, the given data."""

    out: Path
    threads: int
    quick: bool
    cpu: CpuSupport
    given: Any                      # benchmarks.study.GivenResults
    study_scale: str = "full"
    cache: Path = field(default_factory=default_cache)
    terminal: Any = None            # stream for progress bars while sections write their logs
    progress: bool = True
    study_jobs: int | None = None   # the study's stages at once (None: benchmarks.study.run.study_jobs)


def section_study(ctx: Context) -> tuple[str, Any]:
    from .study import SMOKE, StudySettings, report_section

    settings = SMOKE if ctx.study_scale == "smoke" else StudySettings()
    return report_section(ctx.out, ctx.threads, ctx.quick, ctx.given, settings, ctx.cache, ctx.progress,
                          ctx.terminal, ctx.study_jobs)


def section_models(ctx: Context) -> tuple[str, Any]:
    import torch

    from backbones import build_backbone
    from benchmarks.seg_speed import count_flops

    rows, data = ["| backbone | params (M) | GFLOPs @224 | params with 1000-class head |",
                  "|---|---:|---:|---:|"], {}
    for name in ("vit_tiny", "vit_tiny_rpe", "hiera_tiny", "vit_small", "vit_base", "hiera_base"):
        with_head = sum(p.numel() for p in build_backbone(name).parameters())
        model = build_backbone(name, num_classes=0).eval()
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            flops, _ = count_flops(lambda: model(torch.zeros(1, 3, 224, 224)))
        data[name] = {"params": params, "params_with_head": with_head, "flops": flops}
        rows.append(f"| {name} | {params / 1e6:.2f} | {flops / 1e9:.2f} | {with_head:,} |")
    return "\n".join(rows), data


def section_pretrain(ctx: Context) -> tuple[str, Any]:
    from benchmarks.pretrain_speed import report_section

    text, data = report_section(ctx.out, ctx.threads, ctx.quick)
    return f"{text}\n\nCPU: {ctx.cpu.note()}.", data


def section_seg(ctx: Context) -> tuple[str, Any]:
    from benchmarks.seg_speed import report_section

    return report_section(ctx.out, ctx.threads, ctx.quick)


def section_track(ctx: Context) -> tuple[str, Any]:
    from benchmarks.track_speed import report_section

    text, data = report_section(ctx.out, ctx.threads, ctx.quick)
    return f"{text}\n\nCPU: {ctx.cpu.note()}.", data


@dataclass(frozen=True)
class Section:
    """One part of the report: ``run(ctx) -> (Markdown, JSON-able data)``.

    ``estimate(ctx)`` is its expected duration in seconds on a quiet 2-core CPU (the progress
    bar's ETA); ``captured`` sections have their output sent to ``OUT/logs/<name>.log``.
    """

    name: str
    title: str
    run: Callable[[Context], tuple[str, Any]]
    estimate: Callable[[Context], float]
    groups: tuple[str, ...] = ()
    captured: bool = True


def _study_estimate(ctx: Context) -> float:
    from .study import SMOKE, StudySettings, pending_estimate

    if ctx.given is not None and ctx.given.any():
        return 10.0
    return pending_estimate(SMOKE if ctx.study_scale == "smoke" else StudySettings(), ctx.cache) + 5


SECTIONS: tuple[Section, ...] = (
    Section("study", "The study: pre-training recipes and what they give downstream", section_study,
            _study_estimate, ("eval",), captured=False),
    Section("models", "Backbones", section_models, lambda ctx: 15),
    Section("pretrain", "Pre-training throughput (batch 64, 224x224, CPU)", section_pretrain,
            lambda ctx: (80 if ctx.quick else 150) * len(ctx.cpu.dtypes), ("speed",)),  # MoCo-v3 ~40 s of it
    Section("seg", "Segmentation models (512x512)", section_seg, lambda ctx: 35 if ctx.quick else 70, ("speed",)),
    Section("track", "Tracking speed", section_track,
            lambda ctx: (50 if ctx.quick else 110) * len(ctx.cpu.dtypes), ("speed",)),
)
ALIASES = {"lasot": "study", "ade20k": "study"}


def select_sections(requested: list[str]) -> list[Section]:
    names = set()
    for item in requested:
        item = ALIASES.get(item, item)
        names |= {s.name for s in SECTIONS if item in ("all", s.name, *s.groups)}
    return [s for s in SECTIONS if s.name in names]


@contextlib.contextmanager
def _captured(log: Path):
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8", buffering=1) as f, contextlib.redirect_stdout(f), \
            contextlib.redirect_stderr(f):
        yield


# ----------------------------------------------------------------------------------------- main
def _named_paths(values: list[str] | None, option: str) -> dict[str, Path]:
    """``NAME=PATH`` items (or a bare PATH, named by its last component) -> {name: path}."""
    out: dict[str, Path] = {}
    for item in values or []:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        path_obj = Path(path)
        name = name or path_obj.name
        if not path or not name:
            raise SystemExit(f"error: {option} {item!r}: expected NAME=PATH or PATH")
        if name in out:
            raise SystemExit(f"error: {option}: the name {name!r} is given twice")
        out[name] = path_obj
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    choices = [s.name for s in SECTIONS] + sorted({g for s in SECTIONS for g in s.groups}) + ["all", *ALIASES]
    parser.add_argument("--sections", nargs="+", default=["all"], choices=choices, help="what to run (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmark")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (study and speed sections)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer timing repeats in the speed sections (the default; kept for older command lines)")
    parser.add_argument("--full-repeats", action="store_true",
                        help="the speed sections' full timing repeats (several minutes more; for published figures)")
    parser.add_argument("--study-scale", choices=("full", "smoke"), default="full",
                        help="smoke: one recipe, a few steps (checks the study's pipeline in about a minute)")
    parser.add_argument("--study-jobs", type=int, default=None,
                        help="the study's stages run at once, in worker processes sharing --threads (default: "
                             "one single-threaded stage per thread, at most 4; 1: one at a time in this process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    given = parser.add_argument_group("data given (the study then tabulates these instead of its embedded run)")
    given.add_argument("--lasot-results", nargs="+", default=None, metavar="[NAME=]DIR",
                       help="tracker result folders (<seq>.txt) to score")
    given.add_argument("--lasot-annos", type=Path, default=os.environ.get("LITEVIT_LASOT_ANNOS"),
                       help="LaSOT root or toolkit annotation folder (env LITEVIT_LASOT_ANNOS)")
    given.add_argument("--ade20k-results", nargs="+", default=None, metavar="[NAME=]DIR",
                       help="prediction folders of tools/seg_test.py --out (PNG, encoded like the annotations)")
    given.add_argument("--ade20k", type=Path, default=None,
                       help="ADEChallengeData2016 folder (or its annotations/validation) to score them against")
    given.add_argument("--imagenet-results", nargs="+", default=None, metavar="[NAME=]FILE",
                       help="metrics.json (or its work dir) of tools/pretrain.py fine-tuning / probing runs")
    given.add_argument("--backbone", nargs="+", default=None, metavar="[NAME=]FILE",
                       help="backbone checkpoints (our exports) for the size table")
    return parser.parse_args(argv)


def given_results(args: argparse.Namespace):
    from .study import GivenResults

    given = GivenResults(imagenet_results=_named_paths(args.imagenet_results, "--imagenet-results"),
                         ade20k_results=_named_paths(args.ade20k_results, "--ade20k-results"),
                         ade20k_annos=args.ade20k,
                         lasot_results=_named_paths(args.lasot_results, "--lasot-results"),
                         lasot_annos=Path(args.lasot_annos) if args.lasot_annos else None,
                         backbones=_named_paths(args.backbone, "--backbone"))
    try:
        given.check()
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    return given


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    given = given_results(args)
    sections = select_sections(args.sections)
    if args.threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {args.threads}")
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    cpu = detect_cpu()
    terminal = sys.stderr
    if args.quick and args.full_repeats:
        raise SystemExit("error: --quick and --full-repeats contradict each other")
    if args.study_jobs is not None and args.study_jobs < 1:
        raise SystemExit(f"error: --study-jobs must be >= 1, got {args.study_jobs}")
    ctx = Context(args.out, args.threads, not args.full_repeats, cpu, given, args.study_scale, terminal=terminal,
                  progress=not args.no_progress, study_jobs=args.study_jobs)
    report: dict[str, Any] = {"machine": {"threads": args.threads, "cpu_count": os.cpu_count(),
                                          "torch": torch.__version__, "cpu": cpu.to_dict()},
                              "timings": {}}
    header = (f"# Benchmark report\n\ntorch {torch.__version__}, {args.threads} threads, {os.cpu_count()} logical "
              f"CPUs ({cpu.model}; torch CPU capability {cpu.capability}; {cpu.note()}), "
              f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    parts = [header]
    estimates = {s.name: s.estimate(ctx) for s in sections}
    bar = StageProgress(sum(estimates.values()), enabled=ctx.progress, stream=terminal)
    failed = []
    try:
        for section in sections:
            start = time.perf_counter()
            log = args.out / "logs" / f"{section.name}.log"
            try:
                with bar.stage(section.title, estimates[section.name]), \
                        (_captured(log) if section.captured else contextlib.nullcontext()):
                    text, data = section.run(ctx)
            except Exception as error:  # the other sections still run; the exit status says it failed
                failed.append(section.name)
                text, data = f"**Failed**: {type(error).__name__}: {error}", {"error": str(error)}
                print(f"section {section.name} failed: {error}", file=terminal)
            seconds = time.perf_counter() - start
            report[section.name] = data
            report["timings"][section.name] = {"wall_s": seconds, "estimate_s": estimates[section.name]}
            parts.append(f"## {section.title}\n\n{text}\n\n_({seconds:.0f} s"
                         + (f"; log `{log.relative_to(args.out)}`" if section.captured else "") + ")_\n")
            atomic_write_text(args.out / "report.md", "\n".join(parts))
            atomic_write_json(args.out / "report.json", report, default=str)
    finally:
        bar.close("benchmark: done")
    print(f"wrote {args.out / 'report.md'} and report.json", file=terminal)
    if failed:
        raise SystemExit(f"error: section(s) failed: {', '.join(failed)} (see {args.out / 'report.md'} and "
                         f"{args.out / 'logs'})")
    return report
