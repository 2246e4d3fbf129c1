"""Every answer the suite provoked, checked against what the API's OpenAPI document says
its route answers (the server records them: backend/api/recording.py), every event of
the push stream and the log stream included."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match


class Contract:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations: list[tuple[str, re.Pattern[str], dict[str, Any]]] = []
        for template, item in document["paths"].items():
            # Names travel %2F-quoted, so one path segment holds any name.
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+",
                                               re.escape(template)) + "$")
            for method, operation in item.items():
                self.operations.append((method.upper(), pattern, operation))
        self._validators: dict[str, Draft202012Validator] = {}

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        path = path.split("?", 1)[0]
        for known, pattern, operation in self.operations:
            if known == method and pattern.match(path):
                return operation
        return None

    def violation(self, answer: dict[str, Any]) -> str | None:
        """What is wrong with one recorded answer (None: it keeps the contract)."""
        operation = self.operation(answer["method"], answer["path"])
        if operation is None:  # no such route: the router's own 404/405
            return None
        where = f"{answer['method']} {answer['path']} answered {answer['status']}"
        response = operation["responses"].get(str(answer["status"]))
        if response is None:
            return f"{where}, a status its route does not declare"
        event = answer.get("event")
        if event is not None:  # one event of a stream, its data as JSON
            where = f"{where}, event {event}"
            declared = response.get("content", {}).get("text/event-stream", {})
            schema = declared.get("x-events", {}).get(event)
            if schema is None:
                return f"{where}, an event its route does not declare"
        else:
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema is None:
                return f"{where} with JSON its route does not declare"
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = Draft202012Validator(
                {**schema, "components": self.document.get("components", {})})
        try:
            body = json.loads(answer["body"])
        except ValueError:
            return f"{where} with a body that is not JSON"
        error = best_match(validator.iter_errors(body))
        while error is not None and error.context:
            # Of a union's branches, the one whose discriminator matched: its error says
            # what is wrong, where the others only say the type was another.
            error = max(error.context, key=lambda e: (e.validator not in ("const", "enum"),
                                                     len(e.absolute_path)))
        if error is None:
            return None
        at = "/".join(str(p) for p in error.absolute_path) or "the body"
        return f"{where}: at {at}: {error.message[:300]}"

    def violations(self, recorded: Path) -> list[str]:
        if not recorded.exists():
            return []
        found: list[str] = []
        for line in recorded.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                answer = json.loads(line)
            except ValueError:  # cut short by a disk a test filled
                continue
            problem = self.violation(answer)
            if problem and problem not in found:
                found.append(problem)
        return found
