"""Image grids as PNG files."""

import numpy as np


def save_grid(images: np.ndarray, path: str, num_cols: int = 10, pad: int = 1):
  """Writes images [N, H, W, C] with values in [0, 1] as one PNG grid, row-major."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  num_rows = -(-n // num_cols)
  grid = np.ones((num_rows * (h + pad) + pad, num_cols * (w + pad) + pad, c), np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, num_cols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = image
  grid = (grid * 255).round().astype(np.uint8)
  Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)
