# GPS: per output neuron of every qkv / proj / fc1 / fc2 / patch-embedding weight, the input
# connection with the largest gradient (one pass over the training data before training,
# vpetl_mm.PEFTSelectionHook) is tuned, with all biases of those layers. Needs weight decay 0.
peft_method = dict(type='GPS', connections=1)
peft_backbone = dict()
