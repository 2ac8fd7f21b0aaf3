"""The benchmark's own logic: items, prompts, verdicts, the vote, records, rates and statistics.

Nothing here reads the environment, runs a harness or parses a command line: every entry point
builds its settings and hands them down (see ``siuo_task.settings``).
"""
