"""Structure catalogues (label id <-> name) shipped as package JSON data.

Catalogues: ``totalseg_v2`` (117), ``totalseg_v1`` (104), ``ctsam3d_107`` (v1 + skeletal_muscle,
subcutaneous_fat, visceral_fat), ``flare22`` (13), ``openkbp`` (7), ``totalseg_tissue_types`` (3). Names are TotalSegmentator
style snake_case with laterality as suffix (``kidney_left``), numbers last (``rib_left_1``).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ..errors import InputError

#: Catalogue files in this package, by canonical name.
CATALOGUE_FILES = {
    "totalseg_v2": "totalseg_v2.json",
    "totalseg_v1": "totalseg_v1.json",
    "ctsam3d_107": "ctsam3d_107.json",
    "flare22": "flare22.json",
    "openkbp": "openkbp.json",
    "totalseg_tissue_types": "totalseg_tissue_types.json",
}

#: Other spellings accepted by :func:`get_catalogue` (lower case).
CATALOGUE_ALIASES = {
    "total": "totalseg_v2",
    "totalseg": "totalseg_v2",
    "totalsegmentator": "totalseg_v2",
    "totalsegmentator_v2": "totalseg_v2",
    "v2": "totalseg_v2",
    "total_v1": "totalseg_v1",
    "totalsegmentator_v1": "totalseg_v1",
    "v1": "totalseg_v1",
    "ctsam3d": "ctsam3d_107",
    "ct_sam3d": "ctsam3d_107",
    "totalseg++": "ctsam3d_107",
    "flare": "flare22",
    "flare2022": "flare22",
    "kbp": "openkbp",
    "tissue_types": "totalseg_tissue_types",
}


def normalize_name(name: str) -> str:
    """Lookup key of a structure name: case-insensitive, spaces/hyphens as underscores."""
    return re.sub(r"[\s\-]+", "_", str(name).strip()).lower()


@dataclass(frozen=True)
class Catalogue:
    """A set of structures: ``labels`` maps label id (int >= 1) to name.

    Names are looked up case-insensitively (``"Kidney Left"`` finds ``kidney_left``).
    """

    name: str
    description: str
    source: str
    labels: dict[int, str]
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        index = {}
        for i, n in self.labels.items():
            key = normalize_name(n)
            if key in index:
                raise ValueError(f"catalogue {self.name}: name {n!r} appears twice")
            index[key] = i
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._index

    @property
    def names(self) -> list[str]:
        """Structure names in id order."""
        return [self.labels[i] for i in sorted(self.labels)]

    def id_of(self, name: str) -> int:
        """Label id of ``name``.

        Raises:
            InputError: unknown name (the message suggests close matches).
        """
        key = normalize_name(name)
        if key in self._index:
            return self._index[key]
        close = difflib.get_close_matches(key, list(self._index), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(self.labels[self._index[c]] for c in close)}?" if close else ""
        raise InputError(f"structure {name!r} is not in catalogue {self.name} ({len(self)} structures){hint}")

    def name_of(self, label_id: int) -> str:
        """Name of ``label_id``.

        Raises:
            InputError: unknown id.
        """
        try:
            return self.labels[int(label_id)]
        except (KeyError, ValueError, TypeError):
            raise InputError(f"label id {label_id!r} is not in catalogue {self.name} (ids 1..{max(self.labels)})") from None

    def canonical(self, name: str) -> str:
        """The catalogue's own spelling of ``name`` (raises like :meth:`id_of`)."""
        return self.labels[self.id_of(name)]


def list_catalogues() -> list[str]:
    """Names of the shipped catalogues."""
    return list(CATALOGUE_FILES)


@lru_cache(maxsize=None)
def _load(canonical: str) -> Catalogue:
    text = resources.files(__package__).joinpath(CATALOGUE_FILES[canonical]).read_text(encoding="utf-8")
    raw = json.loads(text)
    labels = {int(k): str(v) for k, v in raw["labels"].items()}
    return Catalogue(raw["name"], raw.get("description", ""), raw.get("source", ""), labels)


def get_catalogue(name: str) -> Catalogue:
    """The catalogue called ``name`` (``totalseg_v2``, ``totalseg_v1``, ``ctsam3d_107``,
    ``flare22``, ``openkbp``, or an alias such as ``total``, ``v1``, ``ctsam3d``).

    Raises:
        InputError: unknown catalogue name.
    """
    key = normalize_name(name)
    key = CATALOGUE_ALIASES.get(key, key)
    if key not in CATALOGUE_FILES:
        raise InputError(f"unknown catalogue {name!r}; choose one of {', '.join(CATALOGUE_FILES)}")
    return _load(key)
