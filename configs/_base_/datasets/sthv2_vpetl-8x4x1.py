# Something-Something V2 (mmaction's tools/data/sthv2 -> data/sthv2/videos, .webm re-encoded
# as .mp4 at their 240 px height as VideoMAE / V-PETL do)
# with V-PETL's video pipeline (vpetl_video-8x4x1.py).
_base_ = ['./vpetl_video-8x4x1.py']
num_classes = 174
data_root = 'data/sthv2/videos'
ann_file_train = 'data/sthv2/sthv2_train_list_videos.txt'
ann_file_val = 'data/sthv2/sthv2_val_list_videos.txt'
train_dataloader = dict(dataset=dict(ann_file=ann_file_train, data_prefix=dict(video=data_root)))
val_dataloader = dict(dataset=dict(ann_file=ann_file_val, data_prefix=dict(video=data_root)))
test_dataloader = dict(dataset=dict(ann_file=ann_file_val, data_prefix=dict(video=data_root)))
