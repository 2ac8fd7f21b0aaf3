"""The ``siuo-eval`` commands: judge, check, export-review, agreement (``report`` and ``build`` /
``audit`` have packages of their own, ``siuo_task.report`` and ``siuo_task.construction``)."""
