"""mmcv's ``DropPath`` with its probability as a Python float.

mmpretrain, mmaction and mmseg build their blocks' drop-path rates with ``np.linspace``, so
mmcv's ``DropPath`` holds numpy floats, and the ``drop_prob == 0.`` test in its ``drop_path()``
is a numpy comparison that ``torch.compile`` cannot trace: every block broke the graph. The
value is kept, only its type changes.
"""


def patch_drop_path_float() -> None:
    """Make ``mmcv.cnn.bricks.drop.DropPath`` store ``float(drop_prob)`` (once)."""
    from mmcv.cnn.bricks.drop import DropPath
    original = DropPath.__init__
    if getattr(original, '_vpetl_float', False):
        return

    def __init__(self, drop_prob: float = 0.1):
        original(self, float(drop_prob))

    __init__._vpetl_float = True
    DropPath.__init__ = __init__
