"""``siuo-eval report``: results people can read, compare and check.

Writes report.md, a self-contained report.html (figures and item images inlined, no network
needed) and PNG figures. Every number carries its 95% interval; model pairs evaluated on the
same items get a paired difference and McNemar's exact test; the paper's leaderboard, which is
human evaluation for the open-ended metrics, stands beside the user's automatic-judge numbers.

- ``render``: tables and sections as Markdown and HTML, and the number formats (``audit`` uses
  it too).
- ``view``: how the report reads a run: its label, item counts, the task and per-item decision
  behind each metric.
- ``published``: the paper's leaderboard and results published since.
- ``categories``: per-category rates from per-item records.
- ``paired``: paired differences and McNemar's test between two runs, as data.
- ``tables``: every table of the report, formatted.
- ``figures``: the Safe-vs-Effective scatter and the per-category bars (PNG).
- ``items``: the HTML of items judged unsafe.
- ``calibrated``: human-calibrated rates of runs with a review, as a table and a figure.
- ``build``: the sections in order, the terminal warnings, and writing the files.
"""
