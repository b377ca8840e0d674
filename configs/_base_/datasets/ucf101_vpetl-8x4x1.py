# UCF101 split 1 (mmaction's tools/data/ucf101 -> data/ucf101/videos and
# ucf101_{train,val}_split_1_videos.txt, "class/video.avi label" lines, labels from 0) with
# V-PETL's video pipeline (vpetl_video-8x4x1.py).
_base_ = ['./vpetl_video-8x4x1.py']
num_classes = 101
data_root = 'data/ucf101/videos'
ann_file_train = 'data/ucf101/ucf101_train_split_1_videos.txt'
ann_file_val = 'data/ucf101/ucf101_val_split_1_videos.txt'
train_dataloader = dict(dataset=dict(ann_file=ann_file_train, data_prefix=dict(video=data_root)))
val_dataloader = dict(dataset=dict(ann_file=ann_file_val, data_prefix=dict(video=data_root)))
test_dataloader = dict(dataset=dict(ann_file=ann_file_val, data_prefix=dict(video=data_root)))
