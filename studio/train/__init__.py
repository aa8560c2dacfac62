"""Train stage: the training job, the Trainer and its callback, packing, the fused LoRA linear, offloaded
checkpoints, the memory/time estimate, the bench."""
