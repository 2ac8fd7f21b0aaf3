"""Token estimates for judge requests, before any call (for ``--dry-run`` and SIUO_JUDGE_TPM).

Text: 1 token per 4 characters (OpenAI's rule of thumb for English; the SIUO prompts are
English), plus a few tokens of chat framing. Images: OpenAI's published vision accounting for
``detail: auto`` at high detail: scale the image to fit 2048 x 2048, then its shorter side to
768, count 512-pixel tiles; tokens = base + per_tile x tiles. GPT-4o and most models count 85
+ 170 per tile; the gpt-4o-mini family counts 2,833 + 5,667 per tile (its image tokens are
cheaper, so an image costs about the same). Completions are estimated at
``EXPECTED_COMPLETION_TOKENS`` (a short reason plus the verdict, the format the prompts ask for).
These are estimates: the bill is what the provider counts.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from PIL import Image

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 7
EXPECTED_COMPLETION_TOKENS = 150
_TILE = 512
# (base, per tile) tokens for an image, by model-name prefix; the longest prefix wins.
_IMAGE_TOKENS = {"": (85, 170), "gpt-4o-mini": (2833, 5667), "gpt-4.1-mini": (2833, 5667)}


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@lru_cache(maxsize=1024)
def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def image_tokens(width: int, height: int, model: str) -> int:
    """Input tokens one image costs at high detail for ``model`` (see the module docstring)."""
    fit = min(1.0, 2048 / max(width, height))
    fitted_width, fitted_height = width * fit, height * fit
    shrink = min(1.0, 768 / min(fitted_width, fitted_height))
    tiles = math.ceil(fitted_width * shrink / _TILE) * math.ceil(fitted_height * shrink / _TILE)
    base, per_tile = _IMAGE_TOKENS[max((p for p in _IMAGE_TOKENS if model.startswith(p)), key=len)]
    return base + per_tile * tiles


def request_tokens(prompt: str, image_path: Path | None, model: str) -> int:
    """Estimated input tokens of one judge request (text, framing and image)."""
    tokens = text_tokens(prompt) + MESSAGE_OVERHEAD_TOKENS
    if image_path is not None:
        tokens += image_tokens(*_image_size(image_path), model)
    return tokens
