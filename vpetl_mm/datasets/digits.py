"""scikit-learn's bundled handwritten digits, exported to the VTAB-1K folder format.

The digits (1,797 images of 8x8 pixels, 10 classes) ship inside scikit-learn, so the demo and the
tests need no download. :func:`export_digits_vtab` writes one VTAB-1K dataset folder::

    <root>/images/<split>/<index:06d>.png
    <root>/{train800,val200,train800val200,test}.txt     # "images/<split>/<index>.png <label>"

for a subset of the digit classes (relabelled ``0..len(classes)-1``), optionally through a
domain shift applied to every image, upscaled to ``size`` pixels.
"""
import os
from typing import Dict, Optional, Sequence

import numpy as np

#: domain shifts for the demo's target task
SHIFTS = ('none', 'invert_rotate')


def _shift(image: np.ndarray, shift: str) -> np.ndarray:
    """``image``: ``(8, 8)`` in ``[0, 16]`` -> shifted ``(8, 8)`` in ``[0, 16]``."""
    if shift == 'none':
        return image
    if shift == 'invert_rotate':
        return np.rot90(16.0 - image, k=1).copy()
    raise ValueError(f'unknown shift {shift!r}; choose from {SHIFTS}')


def export_digits_vtab(root: str, classes: Sequence[int], shift: str = 'none',
                       size: int = 32, train_fraction: float = 0.5,
                       seed: int = 0) -> Dict[str, int]:
    """Write the digits of ``classes`` to ``root`` in the VTAB-1K layout.

    ``train_fraction`` of the images of each class (shuffled with ``seed``) form
    ``train800val200`` (its first 80% ``train800``, the rest ``val200``; the names follow VTAB
    even though the counts are smaller); the others form ``test``. Returns the split sizes.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.RandomState(seed)
    splits: Dict[str, list] = {s: [] for s in ('train800', 'val200', 'test')}
    for label, cls in enumerate(classes):
        idx = np.flatnonzero(digits.target == cls)
        rng.shuffle(idx)
        n_train = int(round(len(idx) * train_fraction))
        n_t800 = int(round(n_train * 0.8))
        splits['train800'] += [(i, label) for i in idx[:n_t800]]
        splits['val200'] += [(i, label) for i in idx[n_t800:n_train]]
        splits['test'] += [(i, label) for i in idx[n_train:]]
    splits['train800val200'] = splits['train800'] + splits['val200']

    for split, items in splits.items():
        folder = os.path.join(root, 'images', split)
        os.makedirs(folder, exist_ok=True)
        lines = []
        for k, (i, label) in enumerate(items):
            pixels = _shift(digits.images[i], shift) * (255.0 / 16.0)
            img = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), mode='L')
            img = img.resize((size, size), Image.BILINEAR).convert('RGB')
            rel = f'images/{split}/{k:06d}.png'
            img.save(os.path.join(root, rel))
            lines.append(f'{rel} {label}\n')
        with open(os.path.join(root, f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return {s: len(v) for s, v in splits.items()}
