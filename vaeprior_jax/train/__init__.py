"""Training: `loop` (`train_and_evaluate`: any method, checkpoints, logging, early stopping,
preemption; and the joint step for your own loop), `device_loop` (chunks of steps in one compiled
loop over data kept on the devices) and `metric_writer` (metrics.jsonl and TensorBoard)."""
