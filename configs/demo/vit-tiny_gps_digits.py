_base_ = ['./vit-tiny_digits_base.py']
model = dict(backbone=dict(method=dict(type='GPS', connections=1)))
# GPS masks the gradients of whole weights: weight decay would move the unselected entries
optim_wrapper = dict(optimizer=dict(type='Adam', lr=2e-3, weight_decay=0.0))
