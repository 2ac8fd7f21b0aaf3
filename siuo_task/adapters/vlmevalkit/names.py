"""The names of the SIUO datasets in VLMEvalKit, apart from the classes (which import VLMEvalKit).

Dataset names avoid the substring "SIUO": VLMEvalKit's runner forces a gpt-4o-mini judge for
any dataset name containing it.
"""

from __future__ import annotations

GEN_PAPER = "SafeInputsUnsafeOutput_GEN3"
GEN_SINGLE = "SafeInputsUnsafeOutput_GEN1"
MCQ = "SafeInputsUnsafeOutput_MCQ"
MCQ_CIRCULAR = "SafeInputsUnsafeOutput_MCQCircular"
DATASET_NAMES = (GEN_PAPER, GEN_SINGLE, MCQ, MCQ_CIRCULAR)
# VLMEvalKit's own SIUO generation dataset (one response per item, its own judge); its
# predictions can be judged here with the paper's protocol.
BUILTIN_GEN = "SIUO_GEN"
# The eval-card task each dataset runs, and the suffix its runs carry in their names.
TASK_OF_DATASET = {
    GEN_PAPER: "siuo_gen",
    GEN_SINGLE: "siuo_gen_greedy",
    BUILTIN_GEN: "siuo_gen_greedy",
    MCQ: "siuo_mcq",
    MCQ_CIRCULAR: "siuo_mcq_circular",
}
# VLMEvalKit samples with the model's own generation settings, not greedily: its one-response
# datasets are named by the dataset, not "-greedy".
RUN_SUFFIX = {GEN_PAPER: "", GEN_SINGLE: "-GEN1", BUILTIN_GEN: "-SIUO_GEN", MCQ: "", MCQ_CIRCULAR: "-circular"}
