"""Loaded by Inspect through the ``inspect_ai`` entry point; importing registers the tasks."""

from siuo_task.adapters.inspect_ai.tasks import siuo_gen, siuo_gen_greedy, siuo_mcq, siuo_mcq_circular

__all__ = ["siuo_gen", "siuo_gen_greedy", "siuo_mcq", "siuo_mcq_circular"]
