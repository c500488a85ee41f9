"""Routing: which model answers each row, and whether the other one scores it in the shadow.

Two knobs, set from the dataset config's ``serving`` section at start and changed at run time through
``PUT /admin/routing``:

* ``challenger_share``: the share of entities the challenger answers (A/B). 0 means champion only.
* ``shadow``: the model that did not answer a row also scores it (in a call that model makes anyway, else on
  its own once no request waits); never returned.

The mode shown by ``GET /version`` follows from them: ``champion``, ``ab``, ``shadow`` or ``ab+shadow``.
Without a challenger every row goes to the champion whatever the knobs say.

Assignment is sticky per entity: a row goes to the challenger when
    ``xxh64(salt, challenger version, entity id)``
falls below ``challenger_share`` of the hash range, so an entity keeps its arm for as long as the experiment
(the challenger version) lasts, without the client echoing anything, and a new challenger reshuffles the
entities. Rows without an entity id get one from the request id, so they are assigned at random.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from driftloop.core import bus
from driftloop.serving.online.validation import RequestError

CHAMPION, CHALLENGER = bus.CHAMPION, bus.CHALLENGER
ARMS = (CHAMPION, CHALLENGER)
_HASH_RANGE = 2**64


@dataclass(frozen=True)
class Routing:
    """The routing knobs (see the module docstring)."""

    challenger_share: float = 0.0
    shadow: bool = False

    @property
    def mode(self) -> str:
        """``champion``, ``ab``, ``shadow`` or ``ab+shadow``."""
        if self.challenger_share > 0:
            return "ab+shadow" if self.shadow else "ab"
        return "shadow" if self.shadow else CHAMPION

    def effective(self, has_challenger: bool) -> Routing:
        """What applies now: champion only while no challenger is loaded."""
        return self if has_challenger else Routing()

    def updated(self, payload: Any) -> Routing:
        """A copy with the knobs in ``payload`` (``challenger_share``, ``shadow`` or a ``mode`` shorthand).

        Raises:
            RequestError: 422 when a knob is unknown or out of range.
        """
        if (
            not isinstance(payload, dict)
            or not payload
            or set(payload) - {"challenger_share", "shadow", "mode"}
        ):
            raise RequestError(
                422,
                "INVALID_PARAMETER_VALUE",
                "send a JSON object with 'challenger_share' (0..1), 'shadow' (true/false) or 'mode'",
            )
        updated = self
        if "mode" in payload:
            updated = _from_mode(payload["mode"], updated)
        if "challenger_share" in payload:
            share = payload["challenger_share"]
            if type(share) not in (int, float) or not 0 <= share <= 1:
                raise RequestError(
                    422, "INVALID_PARAMETER_VALUE", "challenger_share must be a number in [0, 1]"
                )
            updated = replace(updated, challenger_share=float(share))
        if "shadow" in payload:
            if type(payload["shadow"]) is not bool:
                raise RequestError(422, "INVALID_PARAMETER_VALUE", "shadow must be true or false")
            updated = replace(updated, shadow=payload["shadow"])
        return updated

    def describe(self) -> dict[str, Any]:
        """The knobs and the mode, for ``GET /version`` and the admin endpoint."""
        return {"mode": self.mode, "challenger_share": self.challenger_share, "shadow": self.shadow}


def _from_mode(mode: Any, current: Routing) -> Routing:
    share = current.challenger_share or 0.5
    modes = {
        CHAMPION: Routing(),
        "ab": Routing(share, False),
        "shadow": Routing(0.0, True),
        "ab+shadow": Routing(share, True),
    }
    if mode not in modes:
        raise RequestError(422, "INVALID_PARAMETER_VALUE", f"mode must be one of {sorted(modes)}")
    return modes[mode]


def assign_challenger(entity_ids: list[str], share: float, salt: str, challenger_version: str) -> list[bool]:
    """Per entity, True when the challenger answers it (sticky for a given salt and challenger version)."""
    import xxhash

    if share <= 0:
        return [False] * len(entity_ids)
    if share >= 1:
        return [True] * len(entity_ids)
    threshold = int(share * _HASH_RANGE)
    prefix = f"{salt}\x1f{challenger_version}\x1f"
    digest = xxhash.xxh64_intdigest
    return [digest((prefix + entity_id).encode()) < threshold for entity_id in entity_ids]
