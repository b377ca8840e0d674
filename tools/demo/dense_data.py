"""The dense digits demo's data: scikit-learn's bundled handwritten digits (no download) pasted,
upscaled, on noisy canvases of a few sizes, written twice from the same scenes:

- a COCO folder (``coco/<task>/{train,test}/*.jpg`` and ``coco/<task>/annotations/
  instances_{train,test}.json``: boxes and RLE masks, one category per digit class);
- an ADE20K-layout folder (``ade/<task>/images/{training,validation}/*.jpg`` and
  ``ade/<task>/annotations/{training,validation}/*.png``: 0 = background, ``k + 1`` = the
  task's ``k``-th digit class).

Each digit's object (its instance mask and its label-map region) is the box its strokes span:
the task is to find and name digits, not to trace 2-pixel strokes at a stride-4 resolution.

The tasks: ``source`` = digits 0-4, bright on dark noise; ``target`` = digits 5-9 (new classes)
rotated by 90 degrees on colour-inverted scenes (dark ink on bright noise), the shift of the
image digits demo, which features learnt on the source task do not cover. Train and test
scenes draw their digits from disjoint parts of the digit images, so the test digits are held
out."""
import json
import os
import os.path as osp

import numpy as np

#: the scenes; a change re-renders them (the demo keeps this dict as its data fingerprint)
SCENES = dict(
    sizes=[[64, 64], [64, 80], [80, 64], [72, 72]],  # (height, width), cycled
    digit=[14, 26], per_image=[1, 3], noise=96, seed=0, test_fraction=0.3,
    source=dict(classes=[0, 1, 2, 3, 4], train=480, test=120, rotate=0, invert=False),
    target=dict(classes=[5, 6, 7, 8, 9], train=120, test=120, rotate=1, invert=True))
#: the demo's split names and the ADE20K folder each is written to
SPLITS = {'train': 'training', 'test': 'validation'}


def class_names(classes):
    """The dataset class names of the digit ``classes`` (COCO category names)."""
    return tuple(f'digit-{c}' for c in classes)


def seg_class_names(classes):
    """The segmentation classes: background, then the digits."""
    return ('background', ) + class_names(classes)


def sprite(image, size):
    """The 8x8 digit ``image`` (values 0-16) upscaled to ``size`` pixels: float in [0, 1]."""
    from PIL import Image
    im = Image.fromarray((image * (255.0 / 16.0)).astype(np.uint8))
    return np.asarray(im.resize((size, size), Image.BILINEAR), np.float32) / 255.0


def _free(boxes, box, margin=2):
    """Whether ``box`` (x1, y1, x2, y2) keeps ``margin`` pixels from every one of ``boxes``."""
    x1, y1, x2, y2 = box
    return all(x2 + margin <= b[0] or b[2] + margin <= x1 or y2 + margin <= b[1]
               or b[3] + margin <= y1 for b in boxes)


def _place(rng, shape, size, boxes):
    """A free top-left corner (row, col) for a ``size`` square on a ``shape`` canvas, or None."""
    for _ in range(50):
        r, c = rng.randint(0, shape[0] - size + 1), rng.randint(0, shape[1] - size + 1)
        if _free(boxes, (c, r, c + size, r + size)):
            return r, c
    return None


def render_scene(rng, shape, digits, settings=SCENES, rotate=0, invert=False):
    """Paste ``digits`` (a list of ``(8x8 image, label)``), each rotated ``rotate`` times by 90
    degrees, on a noisy ``shape`` canvas, colour-inverted when ``invert``.

    Returns ``(pixels (H, W, 3) uint8, label map (H, W) uint8, objects)``: the label map holds
    ``label + 1`` on the box each digit's strokes span and 0 elsewhere; ``objects`` are
    ``(label, mask)`` with the boolean mask of that box."""
    h, w = shape
    pixels = rng.randint(0, settings['noise'], (h, w, 3)).astype(np.float32)
    labels = np.zeros((h, w), np.uint8)
    objects, boxes = [], []
    lo, hi = settings['digit']
    for image, label in digits:
        size = int(rng.randint(lo, hi + 1))
        corner = _place(rng, shape, size, boxes)
        if corner is None:
            continue
        r, c = corner
        ink = sprite(np.rot90(image, rotate), size)
        colour = rng.randint(160, 256, 3).astype(np.float32)
        patch = pixels[r:r + size, c:c + size]
        pixels[r:r + size, c:c + size] = np.maximum(patch, ink[..., None] * colour)
        strokes = np.zeros((h, w), bool)
        strokes[r:r + size, c:c + size] = ink > 0.25
        if not strokes.any():
            continue
        x, y, bw, bh = mask_box(strokes)
        mask = np.zeros((h, w), bool)
        mask[y:y + bh, x:x + bw] = True
        labels[mask] = label + 1
        objects.append((label, mask))
        boxes.append((c, r, c + size, r + size))
    if invert:
        pixels = 255.0 - pixels
    return pixels.astype(np.uint8), labels, objects


def mask_box(mask):
    """The ``[x, y, w, h]`` box (COCO, pixel edges) of a boolean mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    x1, y1 = int(cols[0]), int(rows[0])
    return [x1, y1, int(cols[-1]) + 1 - x1, int(rows[-1]) + 1 - y1]


def coco_annotation(ann_id, image_id, label, mask):
    """A COCO instance annotation (box, area, RLE mask) of ``mask``; categories are 1-based."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode()
    return dict(id=ann_id, image_id=image_id, category_id=label + 1, bbox=mask_box(mask),
                area=int(mask.sum()), iscrowd=0, segmentation=rle)


def _digit_pools(digits, classes, test_fraction, rng):
    """Per split, the indices of the digit images of ``classes`` (disjoint halves)."""
    idx = np.flatnonzero(np.isin(digits.target, classes))
    rng.shuffle(idx)
    n_test = int(round(len(idx) * test_fraction))
    return {'test': idx[:n_test], 'train': idx[n_test:]}


def _scene_digits(rng, pool, digits, classes, settings):
    """1-3 random ``(image, task label)`` pairs from the ``pool`` of digit indices."""
    n = rng.randint(settings['per_image'][0], settings['per_image'][1] + 1)
    picks = rng.choice(pool, n, replace=False)
    return [(digits.images[i], classes.index(int(digits.target[i]))) for i in picks]


def _folders(root, task, split):
    """The COCO image folder and the ADE20K image / label-map folders of one split."""
    ade = osp.join(root, 'ade', task)
    folders = (osp.join(root, 'coco', task, split),
               osp.join(ade, 'images', SPLITS[split]), osp.join(ade, 'annotations', SPLITS[split]))
    for folder in folders + (osp.join(root, 'coco', task, 'annotations'), ):
        os.makedirs(folder, exist_ok=True)
    return folders


def write_split(root, task, split, n, pool, digits, rng, settings=SCENES):
    """Render ``n`` scenes of one task / split and write them in both layouts; return the
    number of objects."""
    from PIL import Image
    classes, style = settings[task]['classes'], settings[task]
    coco_dir, ade_images, ade_labels = _folders(root, task, split)
    images, annotations = [], []
    for k in range(n):
        shape = tuple(settings['sizes'][k % len(settings['sizes'])])
        pixels, labels, objects = render_scene(
            rng, shape, _scene_digits(rng, pool, digits, classes, settings), settings,
            style['rotate'], style['invert'])
        name = f'{task}_{split}_{k:05d}'
        for folder in (coco_dir, ade_images):
            Image.fromarray(pixels).save(osp.join(folder, f'{name}.jpg'), quality=95)
        Image.fromarray(labels).save(osp.join(ade_labels, f'{name}.png'))
        images.append(dict(id=k + 1, file_name=f'{name}.jpg', height=shape[0], width=shape[1]))
        for label, mask in objects:
            annotations.append(coco_annotation(len(annotations) + 1, k + 1, label, mask))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(class_names(classes))]
    with open(osp.join(root, 'coco', task, 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return len(annotations)


def make_scenes(root, settings=SCENES, max_images=None):
    """Render both tasks under ``root`` in both layouts; return ``{task_split: (images,
    objects)}``. ``max_images`` caps every split (a quick smoke run)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    rng = np.random.RandomState(settings['seed'])
    sizes = {}
    for task in ('source', 'target'):
        pools = _digit_pools(digits, settings[task]['classes'], settings['test_fraction'], rng)
        for split in ('train', 'test'):
            n = settings[task][split]
            n = min(n, max_images) if max_images else n
            objects = write_split(root, task, split, n, pools[split], digits, rng, settings)
            sizes[f'{task}_{split}'] = (n, objects)
    return sizes
