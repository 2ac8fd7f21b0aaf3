"""``python -m siuo_task.vlmeval --model <VLMEvalKit model> --data SafeInputsUnsafeOutput_GEN3 ...``

Registers the SIUO datasets, then runs VLMEvalKit's own runner with the same arguments
(multi-GPU: ``torchrun --nproc-per-node N -m siuo_task.vlmeval ...``, as with VLMEvalKit).
"""

from __future__ import annotations

from siuo_task.adapters.vlmevalkit import register
from siuo_task.run_end import exit_nonzero_if_judge_failed


def main() -> None:
    # Early, so that after judge errors the process ends non-zero once VLMEvalKit is done.
    exit_nonzero_if_judge_failed("vlmeval", "vlmevalkit")
    register()
    from vlmeval.run import main as vlmeval_main
    from vlmeval.smp import load_env

    load_env()
    vlmeval_main()


if __name__ == "__main__":
    main()
