"""The API's answers read as the wire models (wire/) declare them.

The command line reads answers through a `View`: attribute access that the type checker
holds to the wire models (`workers: list[Worker] = view(client.get("/api/workers"))`),
with nothing imported, validated or copied at run time, because importing pydantic and
the models costs 0.13 s where the whole command takes 0.12 s. The server builds its
answers through the same models, and the contract tests check every answer against
them (tests/contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class View:
    """A JSON object read as its model: `worker.facts.load` for worker["facts"]["load"].
    A key the server left out (a fact not read yet) reads as None, as in the model."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        value = self._data.get(name)
        # Most fields are scalars: returned at once (ten thousand workers are counted,
        # sorted and searched by their fields).
        if value.__class__ is dict or value.__class__ is list:
            return view(value)
        return value

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return self._data

    # A field the model types as a mapping (`dict[str, ...]`, say a run's variables) is a
    # JSON object too: it reads as the mapping it is. A model is always true, as pydantic's.
    def items(self) -> Iterator[tuple[str, Any]]:
        return ((key, view(value)) for key, value in self._data.items())

    def keys(self) -> Iterator[str]:
        return iter(self._data)

    def values(self) -> Iterator[Any]:
        return (view(value) for value in self._data.values())

    def get(self, key: str, default: Any = None) -> Any:
        return view(self._data.get(key, default))

    def __getitem__(self, key: str) -> Any:
        return view(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        # Equal data, equal views: a table redraws a row only when its data changed.
        return isinstance(other, View) and self._data == other._data

    __hash__ = None  # type: ignore[assignment]  # mutable data, as a dict's

    def __repr__(self) -> str:
        return f"View({self._data!r})"


def view(data: Any) -> Any:
    """JSON data from the API as typed objects (annotate what it is read as)."""
    if isinstance(data, dict):
        return View(data)
    if isinstance(data, list) and data and isinstance(data[0], dict | list):
        return [view(item) for item in data]
    return data


def jsonable(value: Any) -> Any:
    """Views back into JSON data, for --json (the keys the server sent)."""
    if isinstance(value, View):
        return value.model_dump()
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value
