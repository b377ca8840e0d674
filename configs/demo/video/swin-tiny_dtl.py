_base_ = ['./swin-tiny_base.py']
# as V-PETL's Video Swin-B recipe: side maps in the last two stages, added in the last one
model = dict(backbone=dict(method=dict(type='DTL', rank=4, side_blocks=(4, 5, 6, 7),
                                       add_blocks=(6, 7), kernel_size=0)))
