"""What every harness shares: the one way in for adapters (``siuo_task.harness.api``), the task
hooks of the YAML harnesses, the judge check before generation and how a harness run ends."""
