"""The LLM judge: configuration, the chat-completions client and the grading engine."""

from siuo_task.judge.config import JudgeConfig
from siuo_task.judge.engine import JudgeEngine
from siuo_task.judge.request import JudgeOutcome

__all__ = ["JudgeConfig", "JudgeEngine", "JudgeOutcome"]
