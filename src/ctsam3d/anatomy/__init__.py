"""Anatomy catalogues (label id <-> structure name) and mapping between them.

>>> get_catalogue("totalseg_v2").id_of("liver")
5
"""

from .catalogue import CATALOGUE_FILES, Catalogue, get_catalogue, list_catalogues, normalize_name
from .mapping import RENAMES, map_ids, map_name, map_names

__all__ = [
    "CATALOGUE_FILES",
    "Catalogue",
    "RENAMES",
    "get_catalogue",
    "list_catalogues",
    "map_ids",
    "map_name",
    "map_names",
    "normalize_name",
]
