"""Accuracy harness: simulated noisy field days through the processors (and a peer
library), scored against the simulator's ground truth. Entry point: ``bench/bench_accuracy.py``;
the method is described in ``docs/sessions.md`` (section "Accuracy")."""
