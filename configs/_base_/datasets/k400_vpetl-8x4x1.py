# Kinetics-400 (mmaction's tools/data/kinetics -> data/kinetics400/videos_{train,val} and
# kinetics400_{train,val}_list_videos.txt, "class/video.mp4 label" lines) with V-PETL's video
# pipeline (vpetl_video-8x4x1.py).
_base_ = ['./vpetl_video-8x4x1.py']
num_classes = 400
ann_file_train = 'data/kinetics400/kinetics400_train_list_videos.txt'
ann_file_val = 'data/kinetics400/kinetics400_val_list_videos.txt'
train_dataloader = dict(dataset=dict(ann_file=ann_file_train,
                                     data_prefix=dict(video='data/kinetics400/videos_train')))
val_dataloader = dict(dataset=dict(ann_file=ann_file_val,
                                   data_prefix=dict(video='data/kinetics400/videos_val')))
test_dataloader = dict(dataset=dict(ann_file=ann_file_val,
                                    data_prefix=dict(video='data/kinetics400/videos_val')))
