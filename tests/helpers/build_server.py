"""A loopback chat-completions server that scripts replies for `siuo-eval build` and `audit`.

It identifies the stage from the prompt's first line ("[siuo-build stage: ...]" or
"[siuo-audit check: image]"; a prompt with neither is a text-only answer request) and the
candidate from a tag: for requests with an image, the first 8 hex digits of the sha256 of the
image bytes; for text-only requests, the "[tag:xxxxxxxx]" the scripted query put into the
question, else the first 8 hex digits of the sha256 of the question. A plan maps (tag, stage)
or (tag, stage, model) to a behaviour (see BEHAVIOURS; http500 answers with a server error);
everything else gets a well-formed accepting reply.
Every exchange is logged so tests can check what was sent (image or not, JSON mode, model).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.chat_server import ChatHandler, ChatHTTPServer, LoopbackServer, chat_completion, send_json

SERVED_SUFFIX = "-served"
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
BEHAVIOURS = ("reject", "refuse", "malformed", "malformed_once", "bad_field", "unsafe", "http500")
_TAG = re.compile(r"\[tag:([0-9a-f]{8})\]")


def tag_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def tag_of_question(question: str) -> str:
    found = _TAG.search(question)
    return found.group(1) if found else hashlib.sha256(question.encode()).hexdigest()[:8]


@dataclass
class Exchange:
    stage: str
    tag: str
    model: str
    has_image: bool
    json_mode: bool
    reply: str


@dataclass
class Plan:
    """Behaviour by (tag, stage) or (tag, stage, model); the model-specific entry wins."""

    entries: dict[tuple[str, ...], str] = field(default_factory=dict)

    def behaviour(self, tag: str, stage: str, model: str) -> str | None:
        return self.entries.get((tag, stage, model)) or self.entries.get((tag, stage))


def _stage_and_question(prompt: str) -> tuple[str, str]:
    first = prompt.split("\n", 1)[0]
    if first.startswith("[siuo-build stage: "):
        stage = first.removeprefix("[siuo-build stage: ").rstrip("]")
    elif first.startswith("[siuo-audit check: "):
        return "image_judge", ""
    else:
        return "text_answer", prompt
    if stage == "reflect":
        return stage, prompt.split("Query: ", 1)[1].split("\nCategory: ", 1)[0]
    if stage == "text_judge":
        return stage, prompt.split("<query>\n", 1)[1].split("\n</query>", 1)[0]
    return stage, ""


def _categories(prompt: str) -> list[str]:
    return json.loads(prompt.split("Pick the category from this list: ", 1)[1].split(".\n", 1)[0])


def good_reply(stage: str, tag: str, prompt: str) -> str:
    """The accepting reply for a stage (the question carries the tag into later stages)."""
    if stage == "query":
        categories = _categories(prompt)
        return json.dumps(
            {
                "usable": True,
                "category": categories[int(tag, 16) % len(categories)],
                "scenario": f"scenario {tag}",
                "question": f"What should I do next here? [tag:{tag}]",
                "safety_warning": f"warning {tag}",
                "reference_answer": f"reference {tag}",
                "reason": "a danger is visible",
            }
        )
    if stage == "reflect":
        options = {letter: f"option {letter} for {tag}" for letter in "ABCD"}
        return json.dumps(
            {
                "keep": True,
                "redundant": False,
                "complete": True,
                "question": f"What should I do next in this place? [tag:{tag}]",
                "safety_warning": f"revised warning {tag}",
                "reference_answer": f"revised reference {tag}",
                "options": options,
                "correct_option": "A",
                "reason": "complete after revision",
            }
        )
    if stage == "text_answer":
        return f"Here is a helpful answer about {tag}."
    return json.dumps({"safe": True, "reason": f"harmless {tag}"})


def scripted_reply(stage: str, tag: str, prompt: str, behaviour: str | None, attempt: int) -> str:
    if behaviour == "refuse":
        return REFUSAL_TEXT
    if behaviour == "malformed" or (behaviour == "malformed_once" and attempt == 1):
        return good_reply(stage, tag, prompt)[:40]
    if behaviour == "reject":
        key = {"query": "usable", "reflect": "keep"}[stage]
        return json.dumps({key: False, "reason": f"rejected {tag}"})
    if behaviour == "unsafe":
        return json.dumps({"safe": False, "reason": f"unsafe {tag}"})
    if behaviour == "bad_field":
        reply = json.loads(good_reply(stage, tag, prompt))
        if stage == "reflect":
            del reply["options"]["D"]
        else:
            reply["category"] = "not a category"
        return json.dumps(reply)
    return good_reply(stage, tag, prompt)


class _Handler(ChatHandler):
    server: _Server
    chat_path = ""  # every POST is a chat request

    def chat(self, body: dict[str, Any]) -> None:
        content = body["messages"][0]["content"]
        prompt = next(part["text"] for part in content if part["type"] == "text")
        images = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
        stage, question = _stage_and_question(prompt)
        if images:
            tag = tag_of_bytes(base64.b64decode(images[0].split(",", 1)[1]))
        else:
            tag = tag_of_question(question)
        model = body["model"]
        with self.server.lock:
            self.server.attempts[(tag, stage, model)] += 1
            attempt = self.server.attempts[(tag, stage, model)]
        if self.server.latency_s:
            time.sleep(self.server.latency_s)
        behaviour = self.server.plan.behaviour(tag, stage, model)
        if behaviour == "http500":
            send_json(self, 500, {"error": {"message": "internal error"}})
            return
        reply = scripted_reply(stage, tag, prompt, behaviour, attempt)
        json_mode = body.get("response_format") == {"type": "json_object"}
        with self.server.lock:
            self.server.log.append(Exchange(stage, tag, model, bool(images), json_mode, reply))
        send_json(self, 200, chat_completion(reply, model + SERVED_SUFFIX, "chatcmpl-build", 50, 20))

    def do_GET(self) -> None:  # this server answered no GET
        self.send_error(501)


class _Server(ChatHTTPServer):
    plan: Plan
    latency_s: float
    log: list[Exchange]
    attempts: Counter[tuple[str, str, str]]


class BuildServer(LoopbackServer):
    """Context manager: the scripted server on an ephemeral loopback port."""

    server_class = _Server

    def __init__(self, plan: dict[tuple[str, ...], str] | None = None, latency_s: float = 0.0) -> None:
        super().__init__(_Handler, plan=Plan(dict(plan or {})), latency_s=latency_s, log=[], attempts=Counter())

    @property
    def log(self) -> list[Exchange]:
        return self._httpd.log
