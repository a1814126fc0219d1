"""Mapping structure names and label ids between catalogues.

Names map to the same name when the target catalogue has it. Known differences:

* TotalSegmentator v1 -> v2 (see TotalSegmentator's "improvements in v2"): the heart chambers
  ``heart_myocardium``, ``heart_atrium_left``, ``heart_ventricle_left``,
  ``heart_atrium_right``, ``heart_ventricle_right`` are merged into v2's ``heart``;
  ``pulmonary_artery`` and ``face`` moved out of the v2 "total" task (to
  ``heartchambers_highres`` and ``face``), so they have no v2 counterpart. v2's
  ``pulmonary_vein`` is a new class, not a rename of ``pulmonary_artery``. All other v1
  names (lung lobes, vertebrae, ribs, vessels...) are unchanged in v2.
* v2 -> v1: ``heart`` has no single v1 structure (it is the union of five) -> None.
* TotalSegmentator's ``tissue_types`` task calls visceral fat ``torso_fat``; CT-SAM3D calls it
  ``visceral_fat``; the two are mapped onto each other.
* FLARE22 and OpenKBP names follow TotalSegmentator spelling; OpenKBP's ``brainstem``,
  ``parotid_*``, ``larynx`` and ``mandible`` have no TotalSegmentator counterpart.
"""

from __future__ import annotations

from .catalogue import Catalogue, get_catalogue, normalize_name

#: (source name, target name): many-to-one merges and synonyms, applied when the target
#: catalogue lacks the source name but has the target name.
RENAMES: tuple[tuple[str, str], ...] = (
    ("heart_myocardium", "heart"),
    ("heart_atrium_left", "heart"),
    ("heart_ventricle_left", "heart"),
    ("heart_atrium_right", "heart"),
    ("heart_ventricle_right", "heart"),
    ("torso_fat", "visceral_fat"),
    ("visceral_fat", "torso_fat"),
)


def _as_catalogue(c: str | Catalogue) -> Catalogue:
    return c if isinstance(c, Catalogue) else get_catalogue(c)


def map_name(name: str, src: str | Catalogue, dst: str | Catalogue) -> str | None:
    """The ``dst`` name of ``src``'s structure ``name``, or None if ``dst`` has no counterpart.

    Raises:
        InputError: ``name`` is not in ``src``.
    """
    s, d = _as_catalogue(src), _as_catalogue(dst)
    canonical = s.canonical(name)
    if canonical in d:
        return d.canonical(canonical)
    key = normalize_name(canonical)
    for a, b in RENAMES:
        if a == key and b in d:
            return d.canonical(b)
    return None


def map_names(names, src: str | Catalogue, dst: str | Catalogue) -> dict[str, str | None]:
    """Map structure names from catalogue ``src`` to ``dst`` by name (with known renames).

    Args:
        names: names in ``src`` (case-insensitive), or None for all of ``src``.
        src, dst: catalogue names (see :func:`~ctsam3d.anatomy.get_catalogue`) or catalogues.

    Returns:
        ``{src name: dst name or None}`` in the order given; None where ``dst`` has no
        counterpart. Several names may map to one (v1 heart chambers -> v2 ``heart``).

    Raises:
        InputError: a name is not in ``src``, or a catalogue is unknown.

    Example:
        >>> map_names(["heart_atrium_left", "liver", "face"], "totalseg_v1", "totalseg_v2")
        {'heart_atrium_left': 'heart', 'liver': 'liver', 'face': None}
    """
    s = _as_catalogue(src)
    d = _as_catalogue(dst)
    if names is None:
        names = s.names
    elif isinstance(names, str):
        names = [names]
    return {s.canonical(n): map_name(n, s, d) for n in names}


def map_ids(src: str | Catalogue, dst: str | Catalogue) -> dict[int, int]:
    """Label id table ``{src id: dst id}`` for every ``src`` structure that has a counterpart.

    Use it to convert a label map between catalogues (ids without a counterpart -> 0).
    """
    s, d = _as_catalogue(src), _as_catalogue(dst)
    out = {}
    for i, n in sorted(s.labels.items()):
        m = map_name(n, s, d)
        if m is not None:
            out[i] = d.id_of(m)
    return out
