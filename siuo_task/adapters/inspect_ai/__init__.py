"""SIUO for Inspect (inspect-ai): tasks siuo_gen, siuo_gen_greedy, siuo_mcq and siuo_mcq_circular.

Registered through the ``inspect_ai`` entry-point group (``_registry``), so after installation
``inspect eval siuo_task/siuo_gen --model <any Inspect model>`` works. Importing ``siuo_task``
never imports Inspect.
"""
