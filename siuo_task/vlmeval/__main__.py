"""``python -m siuo_task.vlmeval ...``: the same as ``python -m siuo_task.adapters.vlmevalkit ...``."""

from siuo_task.adapters.vlmevalkit.__main__ import main

if __name__ == "__main__":
    main()
