# AdaptFormer as in the V-PETL benchmark: bottleneck 8, fixed scale 1.0, dropout 0.1, a trainable
# LayerNorm on the branch input, parallel to the MLP of every block.
peft_method = dict(type='AdaptFormer', bottleneck=8, scale=1.0, dropout=0.1, input_norm=True)
peft_backbone = dict()
