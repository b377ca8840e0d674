# HMDB51 split 1 (mmaction's tools/data/hmdb51 -> data/hmdb51/videos and the split lists)
# with V-PETL's video pipeline (vpetl_video-8x4x1.py).
_base_ = ['./vpetl_video-8x4x1.py']
num_classes = 51
data_root = 'data/hmdb51/videos'
ann_file_train = 'data/hmdb51/hmdb51_train_split_1_videos.txt'
ann_file_val = 'data/hmdb51/hmdb51_val_split_1_videos.txt'
train_dataloader = dict(dataset=dict(ann_file=ann_file_train, data_prefix=dict(video=data_root)))
val_dataloader = dict(dataset=dict(ann_file=ann_file_val, data_prefix=dict(video=data_root)))
test_dataloader = dict(dataset=dict(ann_file=ann_file_val, data_prefix=dict(video=data_root)))
