"""The paper's AI-assisted construction pipeline (``siuo-eval build``) and its review round trip.

Modules: ``prompts`` (the stage prompts, versioned), ``replies`` (JSON reply validation),
``images`` (the source folder: decoding, duplicates, resizing), ``files`` (atomic writes),
``pipeline`` (stages 1-3), ``review`` (step 4: HTML page and CSV), ``finalize`` (a SIUO data
folder from a reviewed CSV).
"""
