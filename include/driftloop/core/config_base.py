"""What every config section is made of: the section decorator and the shared value types.

A section is a frozen pydantic dataclass that refuses unknown keys (:func:`dataclass`); ``Share`` and
``OpenShare`` are the probability types. :mod:`driftloop.core.config` builds the sections into a
:class:`~driftloop.core.config.DatasetConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Annotated, Literal, TypeVar, dataclass_transform

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as _pydantic_dataclass

Share = Annotated[float, Field(ge=0, le=1)]  # a share or probability, bounds included
OpenShare = Annotated[float, Field(gt=0, lt=1)]  # a share or probability strictly between 0 and 1
Task = Literal["binary", "multiclass", "regression"]  # driftloop.core.task_types
_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def dataclass(*, frozen: bool = True) -> Callable[[type[_T]], type[_T]]:
    """A config section: a frozen pydantic dataclass that refuses unknown keys and checks every field's type.

    Fields are declared like standard dataclass fields (``name: type = default``); a range or a choice goes in
    the type (``PositiveInt``, ``Share``, ``Literal["auto", "manual"]``). ``dataclasses.replace`` keeps
    working and validates the copy.
    """
    return _pydantic_dataclass(frozen=frozen, config=ConfigDict(extra="forbid"))  # type: ignore[return-value]
