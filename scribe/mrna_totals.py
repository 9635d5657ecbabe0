"""Total mRNA molecules per cell by organism: the documented values of ``mrna_per_cell``.

These figures anchor the capture models (SPEC section 6): each cell's capture prior is
centred on ``L_c / M_0``. They are order-of-magnitude figures, not measurements of your
cells: the mRNA content of a cell varies several-fold with cell type, size and cell-cycle
stage, and published estimates for one organism differ by a factor of 2-5. Pass your own
number when you know better (for example from spike-ins or smFISH of the same cells), and
widen ``mrna_log_sd`` when you are unsure of ``M_0`` itself.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class MrnaTotal:
    """A documented total of mRNA molecules per cell.

    Parameters
    ----------
    molecules : float
        ``M_0``, mRNA molecules in a typical cell.
    source : str
        Where the figure comes from and how uncertain it is.
    """

    molecules: float
    source: str


_MAMMAL = (
    "Typical mammalian cells hold 1e5-1e6 mRNA molecules; 2e5 is the figure most often "
    "quoted for cultured human and mouse cells (Milo & Phillips, 'Cell Biology by the "
    "Numbers', 2015, section 'How many mRNAs are in a cell?'; BioNumbers database). Small "
    "cells such as lymphocytes hold fewer, large or secretory cells more: treat it as "
    "uncertain by a factor of about 3."
)

#: Organism name -> documented ``M_0``. Names are matched case-insensitively.
ORGANISMS: dict[str, MrnaTotal] = {
    "human": MrnaTotal(2e5, _MAMMAL),
    "mouse": MrnaTotal(2e5, _MAMMAL),
}

#: Other accepted spellings of the names above.
ALIASES: dict[str, str] = {
    "homo_sapiens": "human",
    "homo sapiens": "human",
    "mus_musculus": "mouse",
    "mus musculus": "mouse",
}


def organism_total(name: str) -> MrnaTotal:
    """The documented total for an organism name.

    Raises
    ------
    ValueError
        An unknown name; the message lists the known ones.
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in ORGANISMS:
        known = ", ".join(sorted(ORGANISMS) + sorted(ALIASES))
        raise ValueError(
            f"mrna_per_cell: unknown organism {name!r}; known organisms: {known}. "
            f"For another organism pass the number of mRNA molecules per cell instead."
        )
    return ORGANISMS[key]
