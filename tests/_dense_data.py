"""Small dense-prediction datasets in the layouts the toolboxes' dataset configs name, for
tests that run the project's configs through the tools: COCO instance segmentation
(``data/coco``), Pascal VOC 2007 + 2012 detection (``data/VOCdevkit``) and ADE20K semantic
segmentation (``data/ade/ADEChallengeData2016``). Images are noise of different sizes with one
or two rectangular objects of a brighter colour; the annotations are exact."""
import json
import os

import numpy as np
from PIL import Image

#: image sizes (height, width): different, landscape and portrait
SIZES = [(64, 80), (72, 60), (60, 76), (80, 68)]
#: COCO / VOC class names the tests label objects with (real names: the dataset classes look
#: their categories up by name)
COCO_CLASSES = ('person', 'car')
VOC_CLASSES = ('dog', 'car')


def coco_categories():
    """COCO's 80 categories (``id``, ``name``), as every COCO annotation file lists them
    (CocoMetric maps a predicted label to the category of the same index)."""
    from mmdet.datasets import CocoDataset
    return [dict(id=i + 1, name=name) for i, name in enumerate(CocoDataset.METAINFO['classes'])]


def _image(rng, size):
    """(H, W, 3) uint8 noise and the box ``(x1, y1, x2, y2)`` of a bright rectangle in it."""
    h, w = size
    pixels = rng.randint(0, 96, (h, w, 3), dtype=np.uint8)
    x1, y1 = rng.randint(2, w // 3), rng.randint(2, h // 3)
    x2, y2 = x1 + rng.randint(w // 3, w // 2), y1 + rng.randint(h // 3, h // 2)
    pixels[y1:y2, x1:x2] = rng.randint(160, 256, (3, ), dtype=np.uint8)
    return pixels, (int(x1), int(y1), int(x2), int(y2))


def write_coco(root, n_train=2, n_val=2, seed=0):
    """``root/annotations/instances_{train,val}2017.json`` and ``root/{train,val}2017/*.jpg``
    with one box + polygon object per image."""
    rng = np.random.RandomState(seed)
    categories = coco_categories()
    labelled = [c for c in categories if c['name'] in COCO_CLASSES]
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    next_id = 0
    for split, n in (('train2017', n_train), ('val2017', n_val)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            next_id += 1
            size = SIZES[(next_id - 1) % len(SIZES)]
            pixels, (x1, y1, x2, y2) = _image(rng, size)
            name = f'{next_id:012d}.jpg'
            Image.fromarray(pixels).save(os.path.join(root, split, name))
            images.append(dict(id=next_id, file_name=name, height=size[0], width=size[1]))
            w, h = x2 - x1, y2 - y1
            annotations.append(dict(
                id=next_id, image_id=next_id, category_id=labelled[i % 2]['id'],
                bbox=[x1, y1, w, h], area=w * h, iscrowd=0,
                segmentation=[[x1, y1, x2, y1, x2, y2, x1, y2]]))
        with open(os.path.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)


def _voc_xml(name, size, box, cls):
    h, w = size
    x1, y1, x2, y2 = box
    return (f'<annotation><filename>{name}.jpg</filename><size><width>{w}</width>'
            f'<height>{h}</height><depth>3</depth></size><object><name>{cls}</name>'
            f'<difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>'
            f'<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object></annotation>')


def write_voc(root, n=2, seed=0):
    """``root/VOC2007`` (trainval and test) and ``root/VOC2012`` (trainval): JPEGImages,
    Annotations (1-based pixel boxes, as VOC's XML), ImageSets/Main lists."""
    rng = np.random.RandomState(seed)
    count = 0
    for year, splits in (('VOC2007', ('trainval', 'test')), ('VOC2012', ('trainval', ))):
        for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
            os.makedirs(os.path.join(root, year, sub), exist_ok=True)
        for split in splits:
            ids = []
            for i in range(n):
                size = SIZES[count % len(SIZES)]
                name = f'{year[3:]}_{count:06d}'
                count += 1
                pixels, box = _image(rng, size)
                Image.fromarray(pixels).save(os.path.join(root, year, 'JPEGImages',
                                                          f'{name}.jpg'))
                with open(os.path.join(root, year, 'Annotations', f'{name}.xml'), 'w') as f:
                    f.write(_voc_xml(name, size, box, VOC_CLASSES[i % 2]))
                ids.append(name)
            with open(os.path.join(root, year, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
                f.write(''.join(f'{i}\n' for i in ids))


def write_ade20k(root, n_train=2, n_val=2, seed=0):
    """``root/images/{training,validation}/*.jpg`` and ``root/annotations/.../*.png`` label maps
    (0 = other, 1-150 classes; a rectangle of one class on a background of another)."""
    rng = np.random.RandomState(seed)
    for split, n in (('training', n_train), ('validation', n_val)):
        for sub in ('images', 'annotations'):
            os.makedirs(os.path.join(root, sub, split), exist_ok=True)
        for i in range(n):
            size = SIZES[i % len(SIZES)]
            pixels, (x1, y1, x2, y2) = _image(rng, size)
            labels = np.full(size, 1 + i % 3, dtype=np.uint8)
            labels[y1:y2, x1:x2] = 5 + i % 2
            labels[:2] = 0  # a border of 'other', ignored with reduce_zero_label
            name = f'ADE_{split[:5]}_{i:08d}'
            Image.fromarray(pixels).save(os.path.join(root, 'images', split, f'{name}.jpg'))
            Image.fromarray(labels).save(os.path.join(root, 'annotations', split,
                                                      f'{name}.png'))
