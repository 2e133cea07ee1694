"""Analyse pre-trained backbones: layer CKA, attention distance and entropy, attention maps.

    python tools/analyze.py cka --models vit_tiny=mae_tiny_400e.pth.tar vit_tiny=d2mae_tiny.pth \\
        --images data/imagenet/val --max-images 2048 --out outputs/analysis/cka
    python tools/analyze.py attention --models vit_tiny=mae_tiny.pth vit_base=mae_pretrain_vit_base.pth \\
        'vit_tiny=random' --names MAE-Tiny MAE-Base random --images data/imagenet/val --out outputs/analysis/attn
    python tools/analyze.py maps --models backbone.pth --images photos/ --layers 3 11 --heads 0 1 2 \\
        --query 7,7 --out outputs/analysis/maps

A model is ``CHECKPOINT`` (our export), ``ARCH=CHECKPOINT`` (MAE-Lite, MAE, MoCo-v3, DeiT/timm, Hiera and
every other layout ``backbones.load_pretrained`` reads), ``ARCH=random``, or with build options
``'ARCH(img_size=112)=CHECKPOINT'`` (DeiT-Tiny: ``'vit_tiny(num_heads=3)=deit_tiny.pth'``, our
``vit_tiny`` has MAE-Lite's 12 heads).  Images: any folder (ImageNet layout or flat, any size),
resized and centre-cropped to each model's input.  Layers and heads are 0-based block / head
indices (negative counts from the end).  ``attention`` and ``maps`` need plain ViTs, ``cka`` also
takes Hiera (its blocks or stage ends).

``cka`` compares whole token maps of the paper's layers by default (``analyze.py cka --help``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.images import list_images, spread  # noqa: E402
from analysis.maps import parse_query  # noqa: E402
from analysis.models import POOLS, build_model, default_name, parse_model_spec  # noqa: E402
from engine import resolve_device  # noqa: E402
from analysis.runs import run_attention, run_cka, run_maps  # noqa: E402

CKA_DESCRIPTION = (
    "Linear CKA between every layer of two or more models (minibatch estimate, unbiased HSIC_1 averaged over the "
    "minibatches, then CKA). The default, --pool tokens, is the paper's quantity (MAE-Lite's run_vis_cmp_rep.py): "
    "for a ViT of depth d, d + 1 layers (layer i < d: input of block i after its norm1, layer 0 the embedding; "
    "layer d: the final norm of the last block's output), class token removed, each image's token map flattened. "
    "Hiera: every block's (or stage end's) output map, flattened. --pool mean / cls compare block outputs pooled "
    "to one vector per image instead, a coarser quantity than the paper's. Defaults: 1024 images in minibatches "
    "of 128, as the paper's.")
DEFAULTS = {"cka": {"batch_size": 128, "max_images": 1024}, "attention": {"batch_size": 16, "max_images": 1000},
            "maps": {"batch_size": 8, "max_images": 4}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models", nargs="+", required=True, metavar="SPEC",
                        help="CHECKPOINT | ARCH=CHECKPOINT | ARCH=random | 'ARCH(key=value,...)=CHECKPOINT'")
    common.add_argument("--names", nargs="+", default=None, help="one display name per model")
    common.add_argument("--images", required=True, type=Path, help="image folder (ImageNet layout or flat)")
    common.add_argument("--out", required=True, type=Path, help="output folder")
    common.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    common.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: cka 128, attention 16, maps 8)")
    common.add_argument("--max-images", type=int, default=None,
                        help="use at most this many images, evenly spread over the sorted folder "
                             "(0: all; default: cka 1024, attention 1000, maps 4)")
    common.add_argument("--img-size", type=int, default=None, help="model input size (default: the model's)")
    common.add_argument("--workers", type=int, default=2, help="image decoding processes (0: in the main one)")
    common.add_argument("--seed", type=int, default=0, help="seed of random initialisations")
    common.add_argument("--quiet", action="store_true", help="no progress bar")

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cka = sub.add_parser("cka", parents=[common], help="linear CKA between every layer of two or more models",
                         description=CKA_DESCRIPTION)
    cka.add_argument("--pool", choices=list(POOLS), default="tokens",
                     help="representation of a layer: 'tokens' (default, the paper's: ViT block inputs after "
                          "norm1 plus the final norm, depth + 1 layers, each image's token map flattened; "
                          "Hiera block maps), or the block outputs pooled to the patch-token 'mean' or the "
                          "'cls' token")
    cka.add_argument("--hiera-layers", choices=["blocks", "stages"], default="blocks",
                     help="Hiera layers: every block (default) or the stage ends")
    attention = sub.add_parser("attention", parents=[common], help="attention distance and entropy per head")
    attention.add_argument("--layers", nargs="+", type=int, default=None, help="blocks (default: all)")
    maps = sub.add_parser("maps", parents=[common], help="attention maps overlaid on images")
    maps.add_argument("--layers", nargs="+", type=int, default=[-1], help="blocks (default: the last)")
    maps.add_argument("--heads", nargs="+", type=int, default=None, help="heads (default: all)")
    maps.add_argument("--query", default="cls", help="'cls' or a patch grid position 'row,col' (default cls)")
    maps.add_argument("--pick", nargs="+", default=None,
                      help="images by index in the sorted folder or by (relative) path; default: --max-images "
                           "spread over the folder")
    maps.add_argument("--alpha", type=float, default=0.6, help="opacity of the attention colours")
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.command].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def unique_names(names: list[str]) -> list[str]:
    """Default names made distinct: the second 'mae' becomes 'mae-2'."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def pick_images(paths: list[Path], root: Path, picks: list[str]) -> list[Path]:
    """Resolve ``--pick`` entries (index, path relative to the folder, or file name)."""
    by_name = {p.relative_to(root).as_posix(): p for p in paths}
    chosen = []
    for pick in picks:
        if pick.lstrip("-").isdigit():
            index = int(pick)
            if not -len(paths) <= index < len(paths):
                raise ValueError(f"--pick {pick}: out of range, {root} has {len(paths)} images")
            chosen.append(paths[index])
            continue
        found = by_name.get(pick) or [p for p in paths if p.name == pick]
        if not found:
            raise ValueError(f"--pick {pick}: no such image under {root}")
        if isinstance(found, list) and len(found) > 1:
            raise ValueError(f"--pick {pick}: {len(found)} images have that name; give the path relative to {root}")
        chosen.append(found if isinstance(found, Path) else found[0])
    return list(dict.fromkeys(chosen))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device, option="--device")
        if args.names is not None and len(args.names) != len(args.models):
            raise ValueError(f"--names gives {len(args.names)} names for {len(args.models)} models")
        if args.max_images < 0:
            raise ValueError(f"--max-images must be 0 (all) or positive, got {args.max_images}")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        query = parse_query(args.query) if args.command == "maps" else None
        specs = [parse_model_spec(text) for text in args.models]
        names = args.names or unique_names([default_name(s) for s in specs])
        if len(set(names)) != len(names):
            raise ValueError(f"--names must differ, got {names}")
        all_paths = list_images(args.images)
        if args.command == "maps" and args.pick:
            paths = pick_images(all_paths, args.images, args.pick)
        else:
            paths = spread(all_paths, args.max_images or None)
        models = {name: build_model(spec, args.img_size, args.seed).to(device) for name, spec in zip(names, specs)}
        common = {"batch_size": args.batch_size, "workers": args.workers, "progress": not args.quiet}
        print(f"{args.command}: {len(models)} model(s) on {device}, {len(paths)} of {len(all_paths)} images "
              f"from {args.images}", flush=True)
        if args.command == "cka":
            result = run_cka(models, paths, args.out, pool=args.pool, hiera_layers=args.hiera_layers, **common)
        elif args.command == "attention":
            result = run_attention(models, paths, args.out, blocks=args.layers, **common)
        else:
            result = run_maps(models, paths, args.out, blocks=args.layers, heads=args.heads, query=query,
                              alpha=args.alpha, root=args.images, **common)
    except (ValueError, KeyError, FileNotFoundError, NotADirectoryError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise SystemExit(f"error: {message}") from None
    print(f"wrote {args.out / (args.command + '.json')} and the figures beside it")
    return result


if __name__ == "__main__":
    main()
