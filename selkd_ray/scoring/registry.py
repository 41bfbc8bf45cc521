"""A small name -> function registry, filled by a decorator (in the style of timm's `_registry.py` and
`register_model`), and the scorers' registry itself: scorer modules import it and register into it; nothing
here imports them (the package's `__init__` does, so every scorer is registered once `scoring` is imported)."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from ..errors import SelkdError
from ..records import Evidence

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Named entry points of one kind (scorers, cost builders); a duplicate name raises."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, F] = {}
        self._tags: dict[str, frozenset[str]] = {}

    def register(self, name: str, *tags: str) -> Callable[[F], F]:
        """A decorator adding `fn` under `name`, with optional tags (say "task" for a scorer of a whole task)."""
        def add(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = fn
            self._tags[name] = frozenset(tags)
            return fn

        return add

    def tagged(self, tag: str) -> list[str]:
        return [name for name in self.names() if tag in self._tags[name]]

    def get(self, name: str, flag: str = "") -> F:
        """The entry; an unknown name is one line (prefixed with the option that gave it, when there is one)."""
        if name not in self._entries:
            where = f"{flag}: " if flag else ""
            raise SelkdError(f"{where}unknown {self.kind} '{name}': expected one of {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


Scorer = Callable[[Evidence], float]
# Two kinds share one registry, so `--scorer` takes either: a teacher's scorer maps one teacher's Evidence to a
# float; a task's scorer (tag TASK, `rankers.py`) ranks every teacher of a task at once from their scores.
SCORERS: Registry[Callable] = Registry("scorer")
TASK = "task"
TASK_SCORERS = ("aggregate", "learned")  # registered with the TASK tag by rankers.py
LABEL_NAME_SCORERS = ("ot-semantic", "semantic")  # read label-name embeddings (the scan computes them)
STATIC_PRIORS = ("params", "flops")  # need no probe at all
PREDICTION_FREE_SCORERS = ("semantic", *STATIC_PRIORS)  # need no forward pass of the teacher
