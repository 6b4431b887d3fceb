"""Training and working with runs: the loop (`training`), checkpoints (`checkpointing`), the
run log (`run_log`), optimisers and schedules (`optim`), and finished runs (`runs`)."""
