"""The score-metadata keys our Inspect scorers write and the log reader reads (no Inspect import)."""

VALUES_KEY = (
    "siuo_values"  # the per-item values of siuo_task.benchmark.results (reduced scores, MCQ and circular scores)
)
EPOCH_KEY = "siuo_epoch"  # one epoch's response and judge outcomes (siuo_gen scores before the vote)
