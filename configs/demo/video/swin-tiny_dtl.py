_base_ = ['./swin-tiny_base.py']
# as V-PETL's Video Swin-B recipe: side maps in the last two stages, added in the last one (here
# the demo Swin's stages 2 and 3 of 3: blocks 2-5, added after blocks 4 and 5)
model = dict(backbone=dict(method=dict(type='DTL', rank=4, side_blocks=(2, 3, 4, 5),
                                       add_blocks=(4, 5), kernel_size=0)))
