"""The five French texts retentiond's rules come from, as a reader can look them up.

Code comments and the policy pack name them by their id in the project's regulatory notes
(``000_822542ba0a462e32.txt``...); what a DPO reads (the compliance report, docs) names
them by author, title and date. docs/sources.md says what each one supports.
"""

from __future__ import annotations

SOURCES: dict[str, str] = {
    "000_822542ba0a462e32.txt":
        "« Campagne de contrôles par la CNIL des centres de relation clientèle », actualité "
        "juridique du 13 novembre 2009 (communiqué de la CNIL du 12 novembre 2009)",
    "001_aef597fe755596ca.txt":
        "« Call center externalisé : qui est responsable de la sécurité des données "
        "personnelles ? », JTIT n° 56/2006, p. 2 (septembre 2006)",
    "002_4fefc22a382397cf.txt":
        "Eloquant, conseils sur l’écoute et l’enregistrement des conversations en centre "
        "de contact (2024)",
    "003_fac5e16efc5eae4d.txt":
        "Webhelp, enjeux, contraintes et règles de la Cnil sur l’enregistrement des "
        "conversations de la relation client",
    "004_d3ec3d87acc4f880.txt":
        "Anne Rabineau, « Commentaires sur clients : la CNIL veille »",
}


def cite(source_id: str, detail: str = "") -> str:
    """The human citation of a source (``detail``: e.g. the recital it quotes)."""
    return SOURCES[source_id] + (f", {detail}" if detail else "")
