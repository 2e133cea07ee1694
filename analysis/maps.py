"""Attention maps of chosen blocks and heads, overlaid on the image the model saw.

For one query (the class token, or the patch at grid position ``row,col``) each map is that
query's row of the block's softmax attention, read on the patch keys (the class-token key's share
is left out of the picture and written to the JSON).  One PNG per model and image: a row per
block, columns = the input crop (query marked) | one tile per head | the mean over the chosen
heads; each tile is scaled to its own maximum and drawn at the model's input size.
"""
from __future__ import annotations

from typing import Literal, Sequence

import cv2
import numpy as np
import torch

from backbones import VisionTransformer

from .attention import attention_logits

__all__ = ["HEADER_PX", "LABEL_PX", "GAP_PX", "Query", "attention_maps", "canvas_size", "overlay_heat",
           "parse_query", "query_token", "render_map_grid"]

Query = Literal["cls"] | tuple[int, int]
HEADER_PX, LABEL_PX, GAP_PX = 20, 56, 2  # column titles, row labels, space between tiles


def parse_query(text: str) -> Query:
    """``cls`` or ``row,col`` (patch grid position, 0-based)."""
    if text.strip().lower() == "cls":
        return "cls"
    parts = text.split(",")
    try:
        row, col = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--query {text!r}: expected 'cls' or a patch position 'row,col' (e.g. 7,7)") from None
    return row, col


def query_token(query: Query, grid: tuple[int, int], prefix: int, model: str) -> int:
    """Token index of a query; errors name the model and its grid."""
    if query == "cls":
        return 0
    row, col = query
    if not (0 <= row < grid[0] and 0 <= col < grid[1]):
        raise ValueError(f"--query {row},{col}: outside the {grid[0]}x{grid[1]} patch grid of model {model!r} "
                         f"(rows 0..{grid[0] - 1}, columns 0..{grid[1] - 1})")
    return prefix + row * grid[1] + col


@torch.inference_mode()
def attention_maps(model: VisionTransformer, images: torch.Tensor, blocks: Sequence[int], query: Query,
                   name: str = "model") -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """({block: [B, heads, rows, cols] attention of the query on the patch keys},
    {block: [B, heads] attention of the query on the class token}) from the full softmax."""
    logits, grid = attention_logits(model, images, blocks)
    token = query_token(query, grid, model.num_prefix_tokens, name)
    prefix = model.num_prefix_tokens
    maps, cls = {}, {}
    for b, block_logits in logits.items():
        row = block_logits[:, :, token].float().softmax(dim=-1)  # [B, heads, N]
        maps[b] = row[..., prefix:].reshape(*row.shape[:2], *grid).cpu()
        cls[b] = row[..., :prefix].sum(dim=-1).cpu()
    return maps, cls


def canvas_size(rows: int, cols: int, tile: tuple[int, int]) -> tuple[int, int]:
    """(height, width) in pixels of a grid of ``rows`` x ``cols`` tiles of size ``tile`` (h, w)."""
    return HEADER_PX + rows * (tile[0] + GAP_PX), LABEL_PX + cols * (tile[1] + GAP_PX)


def overlay_heat(image_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a [rows, cols] map (scaled to its maximum, shown as square patches) over an RGB image."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {alpha}")
    heat = np.asarray(heat, dtype=np.float64)
    peak = heat.max()
    level = np.zeros_like(heat) if peak <= 0 else heat / peak
    colours = cv2.applyColorMap((level * 255).round().astype(np.uint8), cv2.COLORMAP_INFERNO)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    colours = cv2.resize(colours, (image_rgb.shape[1], image_rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    blended = (1 - alpha) * image_rgb.astype(np.float64) + alpha * colours
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


def _text(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)


def render_map_grid(image_rgb: np.ndarray, maps: dict[int, np.ndarray], heads: Sequence[int], query: Query,
                    patch_size: int, alpha: float = 0.6) -> np.ndarray:
    """The PNG content: rows = blocks of ``maps`` ({block: [heads, rows, cols]} for ``heads``),
    columns = image with the query marked | each head | mean of the heads."""
    tile_h, tile_w = image_rgb.shape[:2]
    cols = 2 + len(heads)
    height, width = canvas_size(len(maps), cols, (tile_h, tile_w))
    canvas = np.full((height, width, 3), 255, np.uint8)
    marked = image_rgb.copy()
    if query != "cls":
        r, c = query
        cv2.rectangle(marked, (c * patch_size, r * patch_size),
                      ((c + 1) * patch_size - 1, (r + 1) * patch_size - 1), (0, 255, 0), 1)
    query_title = "q=cls" if query == "cls" else f"q={query[0]},{query[1]}"
    for j, title in enumerate([query_title, *(f"h{h}" for h in heads), "mean"]):
        _text(canvas, title, LABEL_PX + j * (tile_w + GAP_PX) + 2, 14)
    for i, (block, block_maps) in enumerate(maps.items()):
        y = HEADER_PX + i * (tile_h + GAP_PX)
        _text(canvas, f"blk {block}", 4, y + tile_h // 2)
        tiles = [marked, *(overlay_heat(image_rgb, m, alpha) for m in block_maps),
                 overlay_heat(image_rgb, np.mean(block_maps, axis=0), alpha)]
        for j, tile in enumerate(tiles):
            x = LABEL_PX + j * (tile_w + GAP_PX)
            canvas[y:y + tile_h, x:x + tile_w] = tile
    return canvas
