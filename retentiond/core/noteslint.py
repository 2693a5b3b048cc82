"""Notes lint: flag sensitive data and insulting or subjective judgments in call notes.

Free-text ``notes`` (the agent's comments about a call) must not hold the sensitive
categories of GDPR Art. 9/10 nor excessive, insulting or subjective judgments about the
person. The CNIL texts in ``context/`` (French) set the rule:

- 004_d3ec3d87acc4f880.txt: "Vos agents doivent rédiger les commentaires clients en toute
  objectivité, sans propos excessifs ou insultants" and "Aucune information relative à
  des données sensibles [...] Il s'agit par exemple des informations relatives à la
  santé, aux opinions politiques, à la vie sexuelle, aux infractions ou condamnations des
  clients." The same text gives the neutral wording to aim for: "« hospitalisation » sans
  mentionner la pathologie", "Client indisponible pour 1 mois pour raisons de santé".
- 002_4fefc22a382397cf.txt quotes GDPR Art. 5: data "adéquates pertinentes et limitées à
  ce qui est nécessaire au regard des finalités".

This is a lexical checker: it flags, a human decides. It never returns nor logs the
matched text, only character spans (for a UI to highlight) and rule ids.

How it works. The text is folded (NFKD, combining marks dropped, case folded, curly
apostrophes and dashes made ASCII, œ -> oe) while keeping a map back to the original
offsets. Each rule is anchored on a literal *stem* that starts each alternative of its
``term`` (``diabet`` for ``diabet(?:e|es|ique|iques)``); all stems form one trie-shaped
regular expression, so a clean note costs one scan, and only rules whose stem starts a
word are tried. A rule may require a context just before its term (``before``: "est
enceinte", not "enceinte Bluetooth") or be cancelled by one (``unless_before``,
``unless_after``: "pas très catholique", "dépression atmosphérique").

Limits, in numbers: a note is checked up to ``MAX_NOTE_CHARS`` = 65 536 characters (not
bytes); beyond that ``NoteLint.truncated`` is set. Contexts look back at most 60
characters. Overlapping findings of one category are merged into one (the id of the
rule that starts first, or of the longer match).

Benchmark: 10 000 notes from ``bench_corpus()`` (9 000 ordinary notes, most of them
written as near misses of a rule, and 1 000 flagged ones; French and English, 61
characters on average), from the repository root::

    python -m timeit -s "from tests.unit.test_noteslint import bench_corpus" \\
        -s "from retentiond.core.noteslint import lint_note" -s "c = bench_corpus()" \\
        "for n in c: lint_note(n)"
    2 loops, best of 5: 79.6 msec per loop

that is 8 µs per note (ordinary 7 µs, flagged 29 µs), on a 2-core VM shared with other
jobs (load average 2; other runs gave up to 114 msec), CPython 3.11.7. The floor on the
same notes, ``n.lower()`` and one trivial regex search (``re.compile(r"\\bzzzz")``),
takes 1.6 µs per note: lint_note costs 5 times a single regex pass.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, TypeAlias

CATEGORIES: Final = (
    "health", "origin", "political", "religion", "union", "sex-life", "genetic-biometric",
    "offences", "insulting", "subjective",
)
LANGUAGES: Final = ("fr", "en")
MAX_NOTE_CHARS: Final = 64 * 1024  # characters; the sidecar caps notes at 16 KiB anyway
_CONTEXT_CHARS: Final = 60  # how far back ``before``/``unless_before`` look
_MIN_STEM: Final = 3


@dataclass(frozen=True)
class Finding:
    """One flagged span of a note. Never carries the matched text."""

    category: str  # one of CATEGORIES
    language: str  # "fr" or "en"
    start: int  # character offsets into the note as given (Python str indices)
    end: int
    rule: str  # e.g. "health.fr.condition"

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown notes-lint category {self.category!r}")
        if self.language not in LANGUAGES:
            raise ValueError(f"unknown notes-lint language {self.language!r}")
        if not 0 <= self.start < self.end:
            raise ValueError(f"bad span {self.start}..{self.end}")


@dataclass(frozen=True)
class NoteLint:
    """Result of ``lint_note``: the findings, in text order, and whether the note was cut.

    Iterating over it or taking ``len()`` goes through ``findings``, so code written for a
    plain list of findings keeps working; check ``truncated`` separately.
    """

    findings: tuple[Finding, ...]
    truncated: bool = False  # the note was longer than MAX_NOTE_CHARS; the rest is unchecked
    checked_chars: int = 0

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    @property
    def categories(self) -> tuple[str, ...]:
        """Distinct categories found, in ``CATEGORIES`` order."""
        found = {f.category for f in self.findings}
        return tuple(c for c in CATEGORIES if c in found)


@dataclass(frozen=True)
class Rule:
    """One entry of a rule table. Patterns are written against *folded* text: lowercase
    ASCII, no accents (``etait``, not ``était``).

    In ``term``, ``before``, ``unless_before`` and ``unless_after`` a space stands for "one
    or more spaces or hyphens" and an apostrophe for "an apostrophe, maybe followed by
    spaces" (outside character classes). ``term`` must start, in each top-level
    alternative, with a literal word stem of at least 3 letters or digits, and may not be
    followed by a letter or digit. ``before`` (required) and ``unless_before`` (forbidding)
    must match right up to the start of the term (write their trailing space);
    ``unless_after`` must match right after the term (write its leading space).
    """

    id: str  # "<category>.<fr|en|any>.<name>"; "any": same spelling in both languages
    term: str
    before: str | None = None
    unless_before: str | None = None
    unless_after: str | None = None
    category: str = field(init=False)
    language: str = field(init=False)

    def __post_init__(self) -> None:
        parts = self.id.split(".")
        if len(parts) != 3 or parts[0] not in CATEGORIES or parts[1] not in (*LANGUAGES, "any"):
            raise ValueError(f"bad notes-lint rule id {self.id!r}")
        object.__setattr__(self, "category", parts[0])
        object.__setattr__(self, "language", parts[1])
        for text in (self.term, self.before, self.unless_before, self.unless_after):
            if text is not None and (not text.isascii() or text != text.lower()):
                raise ValueError(f"rule {self.id}: patterns must be folded (lowercase ASCII)")


def _alts(heads: str, tail: str) -> str:
    """``"a|b", "x"`` -> ``"a x|b x"``: one top-level alternative per head, so each
    keeps its own stem (``(?:a|b) x`` would have none)."""
    return "|".join(f"{h} {tail}" for h in heads.split("|"))


# ---------------------------------------------------------------------------------------
# Shared vocabularies (folded)
# ---------------------------------------------------------------------------------------

# a person, as agents refer to one ("client arabe", "dame noire", "mec lourd")
_PERSON_FR = (
    r"(?:client|cliente|clients|clientes|homme|hommes|femme|femmes|monsieur|madame|dame"
    r"|jeune|mec|gars|personne|personnes|famille|interlocuteur|interlocutrice|appelant"
    r"|appelante|abonne|abonnee)"
)
_PERSON_EN = (
    r"(?:guy|guys|man|men|woman|women|lady|ladies|gentleman|customer|customers|caller"
    r"|callers|client|person|people|bloke|fella|girl|boy|lad|family|folks)"
)
# degree words that turn an adjective into a judgment of the person ("trop bête")
_DEGREE_FR = (
    r"(?:trop|tres|vraiment|completement|totalement|carrement|un peu|assez|super|hyper"
    r"|bien|a moitie|franchement|particulierement|si|aussi|plutot)"
)
_PARTIES_FR = (
    r"(?:rn|fn|lfi|ps|lr|eelv|pcf|npa|modem|udi|reconquete|renaissance|insoumis|ecolos?"
    r"|front national|rassemblement national|france insoumise|les republicains|les verts"
    r"|extreme droite|extreme gauche|la droite|la gauche|a droite|a gauche|communistes?"
    r"|socialistes?|macron|le pen|melenchon|zemmour|bardella)"
)
# "green", "the right", "the left" alone are left out: "voted for the green one"
_PARTIES_EN = (
    r"(?:labour|tory|tories|conservative|conservatives|republicans?|democrats?|greens"
    r"|green party|the greens|reform uk|reform|ukip|lib dems?|liberal democrats?|snp|gop"
    r"|bnp|trump|biden|harris|obama|brexit|leave|remain|far right|far left)"
)
_UNION_NAMES_FR = r"cgt|cfdt|force ouvriere|cfe cgc|cftc|unsa|sud|solidaires|fsu"
_UNIONS_FR = rf"(?:syndicat|fo|{_UNION_NAMES_FR})"
# "customer is a...", "caller was an...", "she's": a statement about the person
_SUBJECT_EN = r"(?:customer|caller|client|he|she)(?:'s| is| was)(?: an?)? "
_ORIGINS_FR = (
    r"(?:etrangere?|immigree?|ethnique|raciale|maghrebine?|africaine?|arabe|asiatique"
    r"|antillaise?|marocaine?|algerienne?|tunisienne?|senegalaise?|malienne?|ivoirienne?"
    r"|camerounaise?|congolaise?|comorienne?|haitienne?|turque|kurde|chinoise?"
    r"|vietnamienne?|indienne?|pakistanaise?|roumaine?|polonaise?|portugaise?|italienne?"
    r"|espagnole?|kabyle|berbere|juive?|rom|gitane?|subsaharienne?)"
)
_ORIGINS_EN = (
    r"african|asian|arab|hispanic|latino|indian|pakistani|chinese|mexican|caribbean"
    r"|middle eastern|eastern european|polish|romanian|nigerian|somali|jewish|irish"
)
# animals fall ill too (pet insurance): "chien malade", "the dog is sick"
_PET_FR = r"(?:chat|chats|chien|chiens|chiot|chaton|animal|animaux|cheval|lapin|nac)"
_PET_EN = r"(?:dog|dogs|cat|cats|pet|pets|puppy|kitten|horse|animal|rabbit)"
# goods, not people, have an origin too ("pièce d'origine italienne", "goods of chinese
# origin")
_GOODS_FR = (
    r"(?:piece|pieces|produit|produits|article|articles|vin|vins|viande|viandes|fromage"
    r"|marchandise|marchandises|vehicule|vehicules|voiture|materiel|appellation|label"
    r"|fabrication|ingredient|ingredients|colis|pays|commande|bois|tissu) (?:d'|de )"
)
_GOODS_EN = (
    r"(?:product|products|goods|parts|part|item|items|component|components|material"
    r"|materials|wine|meat|food|parcel|package|order)(?: is| are| of)? "
)

# ---------------------------------------------------------------------------------------
# Rule tables, one per category. Ties on one span go to the earlier rule.
# ---------------------------------------------------------------------------------------

# Health. 004_d3ec3d87acc4f880.txt: "Il s'agit par exemple des informations relatives à
# la santé [...] Par exemple : « hospitalisation » sans mentionner la pathologie." and
# "La retranscription en zone commentaire doit se limiter à « Client indisponible pour 1
# mois pour raisons de santé »". So the neutral wordings (hospitalisation, raisons de
# santé, arrêt maladie, sick leave, in hospital) are deliberately NOT flagged; naming a
# condition, a disability, a pregnancy or a treatment, or calling the person ill, is.
_HEALTH: Final = (
    Rule("health.fr.condition",
         r"diabet(?:e|ique|iques)|cancer(?:eux|euse|euses)|tumeurs?|leucemies?"
         r"|lymphomes?|metastases?|chimio(?:therapie)?|radiotherapie|avc|infarctus"
         r"|cardiaques?|insuffisance renale|dialys(?:e|ee|es|ees)|hepatites?|cirrhoses?"
         r"|hernies?|sclerose en plaques|epilep(?:sie|tique|tiques)|asthm(?:e|atique|atiques)"
         r"|mucoviscidose|myopathies?|vih|sida|seropositi(?:f|fs|ve|ves)|obeses|obesite"
         r"|anorexi(?:e|que|ques)|boulimi(?:e|que|ques)|cataracte|glaucome|arthrose"
         r"|polyarthrite|fibromyalgie|endometriose|mst|impuissance sexuelle"
         r"|dysfonction erectile|sexuellement transmissibles?"),
    Rule("health.any.condition",
         r"cancers?|alzheimer(?:'s)?|parkinson(?:'s)?|crohn(?:'s)?|lupus|obese|viagra",
         unless_before=r"ligue (?:nationale )?contre (?:le |l')",
         unless_after=r" (?:research|charity|charities|foundation|awareness|uk|insurance"
                      r"|cover)\b"),
    Rule("health.any.mental", r"depression|burnout|burn out|suicides?",
         unless_after=r" (?:atmospherique|tropicale)\b",
         unless_before=r"(?:tropical|great|economic) "),
    Rule("health.fr.mental",
         r"depressi(?:f|fs|ve|ves)|deprime(?:e|s|es)?|antidepresseurs?|anxiolytiques?"
         r"|neuroleptiques?|bipolaires?|schizophren(?:e|es|ie)"
         r"|psychiatr(?:e|es|ie|ique|iques)|suivi psychologique|suicidaires?"
         r"|troubles? (?:psychiques?|mentaux|anxieux|alimentaires?|bipolaires?)"
         r"|autis(?:me|te|tes)|trisomi(?:e|que|ques)|tdah|alcooli(?:que|ques|sme)"
         r"|toxicoman(?:e|es|ie)"),
    Rule("health.fr.drugs", r"drogu(?:e|ee|es|ees)", before=r"(?:est|etait|se) "),
    Rule("health.fr.disability",
         r"handicap(?:e|ee|es|ees|s)?|invalidite|mobilite reduite|pmr|fauteuil roulant"
         r"|malvoyant(?:e|s|es)?|malentendant(?:e|s|es)?|non voyant(?:e|s|es)?"
         r"|sourd(?:e|s|es)? muet(?:te|s|tes)?|aveugles?",
         unless_before=r"confiance |a l'"),
    Rule("health.fr.disability-rate", r"invalides? a \d+(?: )?(?:%|pour(?: )?cent)"),
    Rule("health.fr.deaf", r"sourd(?:e|s|es)?", before=rf"(?:{_PERSON_FR}|est|etait) ",
         unless_after=r" (?:d'oreille|oreille)"),
    Rule("health.fr.pregnancy", r"enceintes?",
         before=r"(?:est|etait|suis|etant|etre|tombee|femme|cliente|epouse|compagne|fille"
                r"|soeur)(?: actuellement| desormais| de nouveau| a nouveau)? "),
    Rule("health.fr.pregnancy-term", r"enceintes? de (?:\d+|[a-z]+) (?:mois|semaines)"),
    Rule("health.fr.pregnancy-event", r"grossesses?|fausses? couches?|avortements?|ivg",
         unless_before=r"(?:assurance|garantie|option|forfait|produit|brochure|offre|contrat"
                       r"|test|tests)(?: de)? "),
    Rule("health.fr.treatment",
         r"antidepresseurs|anxiolytiques|chimio|chimiotherapie|insuline|dialyse|morphine"
         r"|methadone|traitement|lithium|oxygene|perfusion|somniferes|neuroleptiques",
         before=r"sous "),
    Rule("health.fr.treatment-named", r"traitement (?:medical|medicamenteux|lourd)"),
    Rule("health.fr.illness", r"malades?|souffrant(?:e|s|es)?",
         unless_before=rf"(?:rend|rendre|rendu|rendent|{_PET_FR}(?: est| etait)?) "),
    Rule("health.fr.disease", r"maladies?",
         unless_before=r"(?:assurance|arret|arrets|conge|conges|caisse|caisses) "),
    Rule("health.fr.affected",
         r"atteint(?:e|s|es)? (?:d'|de|du)|souffre (?:d'|de|du)"
         r"|opere(?:e|s|es)? (?:d'|du|de la|de l')|operer (?:d'|du)",
         unless_after=r"(?: )?(?:cote|site|domicile|bureau|magasin|reseau|compte)\b"),
    Rule("health.fr.operation",
         r"operation (?:du |de la |de l'|des |d')(?:coeur|genou|genoux|hanche|dos|cerveau"
         r"|prostate|sein|seins|cataracte|yeux|oeil|appendicite|vesicule|colonne|poumon)"),
    Rule("health.fr.covid", r"covid(?:(?: )?19)?",
         before=r"(?:a le|a eu le|atteint du|atteinte du|positif au|positive au|malade du) "),
    Rule("health.en.condition",
         r"diabet(?:es|ic|ics)|cancerous|tumou?rs?|leuka?emia|lymphoma|metastas(?:is|es)"
         r"|chemo(?:therapy)?|radiotherapy|heart (?:attack|condition|disease|failure"
         r"|problems?)|kidney (?:failure|disease|transplant)|dialysis|hepatitis|cirrhosis"
         r"|multiple sclerosis|epilep(?:sy|tic|tics)|asthma(?:tic)?|cystic fibrosis"
         r"|arthritis|fibromyalgia|endometriosis|hiv|obesity|anorexi(?:a|c)"
         r"|bulimi(?:a|c)|dementia|glaucoma|cataracts?|erectile dysfunction"
         r"|sexually transmitted"),
    Rule("health.en.aids", r"aids", before=r"(?:has|had|with|hiv) "),
    Rule("health.en.stroke", r"strokes?",
         before=r"(?:had a|suffered a|recovering from a|after a|after his|after her) "),
    Rule("health.en.mental",
         r"depressed|antidepressants?|anxiety (?:disorder|attacks?|medication)"
         r"|panic attacks?|bipolar|schizophreni(?:a|c|cs)|mental (?:health (?:issues|problems"
         r"|condition)|illness|breakdown|disorder)|mentally (?:ill|unstable|disabled)"
         r"|nervous breakdown|psychiatr(?:ic|ist|ists|y)|therapists?|suicidal"
         r"|overdosed?|alcoholi(?:c|cs|sm)|drug (?:addict|addicts|addiction|user|problem"
         r"|habit)|addicts?|autis(?:m|tic)|down(?:')?s syndrome|adhd|ptsd|ocd"
         r"|dyslexi(?:a|c)"),
    Rule("health.en.rehab", r"rehab", before=r"(?:in|to|from|out of) "),
    Rule("health.en.disability",
         r"handicapped|disability|disabilities|wheelchairs?|mobility (?:scooter|impaired"
         r"|issues|problems)|visually impaired|hearing impaired|partially sighted",
         unless_after=r" (?:insurance|cover|coverage|product|products|brochure|policy|access"
                      r"|accessible|ramp|ramps|toilet|toilets|lift)\b"),
    Rule("health.en.disabled", r"disabled",
         before=r"(?:is|was|registered|severely|physically|mentally|permanently|he's|she's"
                r"|he is|she is|customer is|caller is) "),
    Rule("health.en.disabled-person",
         r"disabled (?:person|man|woman|lady|veteran|son|daughter|child|husband|wife|mother"
         r"|father|badge|parking)"),
    Rule("health.en.blind", r"blind",
         before=r"(?:is|was|registered|legally|partially|completely|totally|he's|she's"
                r"|went) ",
         unless_after=r"(?:-sided|-sighted| sided| to| spot| eye)\b",
         unless_before=rf"{_PET_EN}(?:'s)?(?: is| was| went)? "),
    Rule("health.en.blind-person", r"blind (?:man|woman|person|customer|caller|lady)"),
    Rule("health.en.deaf", r"deaf", unless_after=r" ears?\b"),
    Rule("health.en.pregnancy", r"pregnant|pregnancy|miscarriages?|abortions?|ivf",
         unless_after=r" (?:insurance|cover|coverage|product|products|brochure|plan|policy"
                      r"|test|tests|benefit|pack)\b"),
    Rule("health.en.labour", r"labou?r", before=r"(?:in|into|went into|gone into) ",
         unless_after=r" (?:dispute|disputes|law|laws|market|costs?|relations|party|court"
                      r"|government|council|shortage|hire)\b"),
    Rule("health.en.treatment",
         r"antidepressants|insulin|chemo|chemotherapy|dialysis|methadone|medication|meds"
         r"|morphine|lithium|painkillers|steroids|oxygen",
         before=r"on (?:strong |heavy )?"),
    Rule("health.en.ill", r"ill|illness(?:es)?",
         before=r"(?:is|was|been|seriously|terminally|chronically|critically|gravely|very"
                r"|fell|falls|mental|long term|mentally) "),
    Rule("health.en.sick", r"sick",
         before=r"(?:is|was|been|gets|got|feeling|felt|very|really|he's|she's) ",
         unless_before=rf"{_PET_EN}(?:'s)?(?: is| was| has been| got)? ",
         unless_after=r" (?:of|and tired)\b"),
    Rule("health.en.covid", r"covid(?:(?: )?19)?",
         before=r"(?:has|had|got|caught|with|positive for) "),
)

# Racial or ethnic origin. Not in 004's example list (which says "par exemple"): GDPR
# Art. 9 names it, and 004 condemns "fiche du client présentant un jugement de valeur,
# caractère diffamatoire, discriminant ou insultant". Bare nationalities and spoken
# languages ("parle arabe", "arabophone") are not flagged; origin words describing a
# person, "d'origine X", skin colour of a person, accents named by origin, slurs are.
_ORIGIN: Final = (
    Rule("origin.fr.group",
         r"beur(?:s|ette|ettes)?|rebeu(?:s|e|es)?|renoi(?:s|e|es)?|noich|gitan(?:e|s|es)?"
         r"|tziganes?|manouches?|gens du voyage|sans-papiers"),
    Rule("origin.fr.people",
         r"maghrebin(?:e|s|es)?|africain(?:e|s|es)?|subsaharien(?:ne|s|nes)?|asiatiques?"
         r"|arabes?|antillais(?:e|es)?|metis(?:se|ses)?|basane(?:e|s|es)?",
         before=rf"(?:{_PERSON_FR}|un|une|des|les|ces|sale|sales) "),
    Rule("origin.fr.colour",
         r"noir(?:e|s|es)?|blacks?|blanc|blanche|blancs|blanches",
         before=rf"{_PERSON_FR} "),
    Rule("origin.fr.of-colour", r"couleur", before=rf"{_PERSON_FR} de "),
    Rule("origin.fr.ethnic",
         r"couleur de peau|origines? (?:ethniques?|raciales?)|ethnies?|ethniques?"
         r"|raciale|raciales|raciaux"),
    Rule("origin.fr.descent", rf"origines? {_ORIGINS_FR}", unless_before=_GOODS_FR),
    Rule("origin.fr.accent",
         r"accent (?:africain|arabe|maghrebin|asiatique|chinois|indien|antillais|etranger"
         r"|turc|portugais|roumain|polonais|pied noir|beur)"),
    Rule("origin.fr.migration", r"immigre(?:e|s|es)?|immigrante(?:s)?"),
    Rule("origin.fr.slur",
         r"bougnoules?|bicots?|negros?|negres?|negresses?|bamboulas?|chinetoques?"
         r"|niakoues?|youpin(?:e|s|es)?|yeux brides"),
    Rule("origin.any.ethnic", r"racial|immigrants?"),
    Rule("origin.en.people", _alts(
        r"black|white|brown|asian|hispanic|latino|latina|arab|african|indian|pakistani"
        r"|chinese|mexican|middle eastern|eastern european|gypsy|romani", _PERSON_EN)),
    Rule("origin.en.predicate", r"asian|hispanic|latino|latina|arab|mixed race",
         before=_SUBJECT_EN),
    Rule("origin.en.descent", _alts(
        _ORIGINS_EN, r"(?:origin|descent|heritage|background|extraction|ancestry)"),
        unless_before=_GOODS_EN),
    Rule("origin.en.accent", _alts(_ORIGINS_EN + r"|foreign|african american", r"accent")),
    Rule("origin.en.ethnicity",
         r"ethnic (?:minority|minorities|background|origin|group)|ethnicity|racially"
         r"|mixed race|skin colou?r|gypsies|illegal (?:aliens?|immigrants?)"),
    Rule("origin.en.slur",
         r"nigg(?:er|ers|a|as|ah)|pakis?|chinks?|spics?|wetbacks?|kikes?|ragheads?"
         r"|towelheads?|gooks?|darkies|darkie|wogs?",
         unless_after=r" in (?:the|his|her|their|its|our|my) armou?r\b"),
)

# Political opinions. 004_d3ec3d87acc4f880.txt: "Il s'agit par exemple des informations
# relatives à la santé, aux opinions politiques [...]". A vote is flagged only with a
# party, a candidate or a side ("vote RN", "votes Labour"), never "a voté pour l'option
# premium"; "politique" alone (politique de remboursement) is not flagged.
_POLITICAL: Final = (
    Rule("political.fr.vote",
         rf"vot(?:e|es|ent|ait|aient|ant|er|ee|ees)? (?:pour )?(?:le |la |les |l')?"
         rf"{_PARTIES_FR}"),
    Rule("political.fr.supporter", _alts(
        r"electeur|electrice|electeurs|electrices|sympathisant|sympathisante|sympathisants"
        r"|militant|militante|militants|militantes|encarte|encartee|adherent|adherente",
        rf"(?:du |de la |de l'|d'|de |au |a la |chez (?:la |le )?)?(?:{_PARTIES_FR}"
        r"|ecologiste|antifa|d'extreme (?:droite|gauche)|politique)")),
    Rule("political.fr.label",
         r"gauchistes?|fachos?|fascistes?|communistes?|anarchistes?|royalistes?"
         r"|zadistes?|islamo gauchistes?|lepenistes?|melenchonistes?|macronistes?"
         r"|frontistes?|insoumis(?:e|es)?|extreme (?:droite|gauche)"),
    Rule("political.fr.opinion",
         r"opinions? politiques?|convictions? politiques?|engage(?:e|s|es)? politiquement"
         r"|politiquement engage(?:e|s|es)?|parti politique|membre (?:du|d'un) parti"),
    Rule("political.fr.side", r"droite|gauche",
         before=r"(?:est|etait|client|cliente|plutot|tres|electeur|electrice|homme|femme"
                r"|vote|votent) (?:tres |plutot )?de "),
    Rule("political.any.label", r"antifa|neo(?: )?nazis?"),
    Rule("political.en.vote", rf"vot(?:e|es|ed|ing|er|ers) (?:for )?(?:the )?{_PARTIES_EN}"),
    Rule("political.en.supporter", _alts(
        r"labour|tory|conservative|republican|democrat|ukip|reform uk|lib dem|snp|gop"
        r"|trump|green party|brexit|bnp|far right|far left",
        r"(?:voter|voters|supporter|supporters|member|members|activist|activists|fan)")),
    Rule("political.en.registered", r"registered (?:democrat|republican)"),
    Rule("political.en.predicate", r"republican|democrat|tory|trumpist|leftist",
         before=_SUBJECT_EN),
    Rule("political.en.label",
         r"maga|lefties|lefty|leftie|commies?|libtards?|communists?|socialists?"
         r"|fascists?|anarchists?|brexiteers?|remoaners?|political (?:views|opinions"
         r"|beliefs|affiliation|activist|leanings)|"
         + _alts("right|left", r"(?:wingers?|wing (?:views|politics|activist|nut|nutjob"
                               r"|extremist|beliefs))")),
)

# Religious or philosophical beliefs. GDPR Art. 9; 004 lists sensitive data "par exemple"
# and asks for "termes neutres et objectifs". "pas très catholique" (dubious) and
# "religieusement" (scrupulously) are idioms, not beliefs.
_RELIGION: Final = (
    Rule("religion.fr.affiliation",
         r"musulman(?:e|s|es)?|juif|juive|juifs|juives|protestantes?"
         r"|chretien(?:ne|s|nes)?|bouddhistes?|hindou(?:e|s|es)?|mormones?"
         r"|evangeli(?:ste|stes|que|ques)|temoins? de jehovah|athees?|agnostiques?"
         r"|salafistes?|islamistes?|islamiques?|scientologues?|judaisme"
         r"|christianisme|bouddhisme|feujs?"),
    Rule("religion.fr.catholic", r"catholiques?",
         unless_before=r"pas (?:tres |trop |bien |si |tout a fait )?"),
    Rule("religion.fr.practice", r"pratiquant(?:e|s|es)?",
         unless_after=r" (?:le|la|les|du|de|des|un|une|d'|l')"),
    Rule("religion.fr.belief",
         r"religieu(?:x|se|ses)|croyant(?:e|s|es)?"
         r"|confession (?:musulmane|juive|catholique|protestante|chretienne)"
         r"|careme|casher|kasher|kippas?",
         unless_after=r" (?:que|qu')"),
    Rule("religion.fr.worship", r"messe|mosquee|synagogue|eglise|temple",
         before=r"(?:va|vont|aller|allait|frequente|frequentait|se rend) (?:a la |au |a l'"
                r"|la |le |l')?"),
    Rule("religion.fr.veil", r"voile", before=r"(?:porte|portant|portait) (?:le |un )"),
    Rule("religion.fr.veiled", r"voilee", before=r"(?:femme|cliente|dame|fille|jeune) "),
    Rule("religion.any.belief",
         r"religion|religions|islam|ramadan|halal|burqa|niqab|hijab|shabbat|sikhs?"
         r"|mormons?|protestants?"),
    Rule("religion.en.affiliation",
         r"muslims?|moslems?|jews?|jewish|catholics?|christians|hindus?|buddhists?"
         r"|jehovah(?:')?s witness(?:es)?|evangelicals?|atheists?|agnostics?|scientologists?"
         r"|islamic|judaism|christianity|devout|churchgoers?"),
    Rule("religion.en.christian", r"christian",
         before=r"(?:is a|devout|practising|practicing|born again|evangelical|a) "),
    Rule("religion.en.christian-faith", r"christian (?:faith|beliefs?|church|values|family)"),
    Rule("religion.en.belief",
         r"religious|kosher|headscarf|turban|kippah|yarmulke|sabbath",
         unless_after=r" (?:holiday|holidays|festival|festivals)\b"),
    Rule("religion.en.worship", r"church|mosque|synagogue|temple|mass",
         before=r"(?:goes|go|going|went|attends|attending|attended) (?:to )?(?:the )?"),
)

# Trade-union membership. GDPR Art. 9. "syndic" (de copropriété) and "syndicat des eaux"
# are not unions; a union name (CGT, CFDT...) is flagged only after a membership word,
# never in a strike notice ("grève CGT, train annulé"); "grève" alone is not flagged.
_UNION: Final = (
    Rule("union.fr.member",
         r"syndique(?:e|s|es)?|syndicalistes?|syndicalisme|syndica(?:l|le|les|ux)",
         unless_before=r"(?:chambre|chambres|conseil) "),
    Rule("union.fr.membership", _alts(
        r"membre|membres|adherent|adherente|adherents|militant|militante|militants|encarte"
        r"|encartee|delegue|deleguee|representant|representante",
        rf"(?:du |d'un |au |a la |de la |a |chez (?:la )?)?{_UNIONS_FR}")),
    Rule("union.fr.named", _UNION_NAMES_FR,
         before=r"(?:du personnel|elu|elue|elus|elues|carte|section|adhesion|cotisation"
                r"|syndique|syndiquee|syndiques|syndiquees) (?:a la |au |de la |du |chez )?"),
    Rule("union.en.member",
         r"union (?:member|members|membership|rep|reps|representative|activist|official"
         r"|steward|organi[sz]er|dues|card)",
         unless_before=r"(?:credit|european|student|students|rugby|customs|postal|civil"
                       r"|soviet) "),
    Rule("union.en.membership",
         r"members? of (?:the |a )?(?:trade |labou?r )?union|belongs to (?:the |a )union"
         r"|shop stewards?|trade unionists?|teamsters?"),
)

# Sex life or sexual orientation. 004_d3ec3d87acc4f880.txt: "[...] à la vie sexuelle".
_SEX_LIFE: Final = (
    Rule("sex-life.fr.orientation",
         r"homosexuel(?:le|s|les)?|bisexuel(?:le|s|les)?|heterosexuel(?:le|s|les)?"
         r"|transsexuel(?:le|s|les)?|transgenres?|lesbiennes?|homos|homo|heteros?"
         r"|orientation sexuelle|vie sexuelle|sexualite|relations? sexuelles?"
         r"|pratiques? sexuelles?|libertin(?:e|s|es)?|echangistes?|prostitu(?:e|ee|es|ees)"
         r"|adulteres?|pedes?|gouines?|tarlouzes?|travelos?|tantouzes?"),
    Rule("sex-life.fr.slur", r"tapettes?",
         unless_after=r" (?:a|pour|anti) (?:mouches?|souris|rats?)"),
    Rule("sex-life.fr.mistress", r"maitresse",
         before=r"(?:a une|avait une|avoir une|a pris une|sa nouvelle) "),
    Rule("sex-life.fr.lover", r"amant(?:e|s|es)?", before=r"(?:son|sa|ses|un|une|des) "),
    Rule("sex-life.any.orientation", r"gays?|queers?|lgbt(?:q|qi|qia)?|prostitution",
         unless_after=r" (?:lussac|street|st|road|rd|avenue|lane)\b"),
    Rule("sex-life.en.orientation",
         r"lesbians?|homosexual(?:s|ity)?|bisexual(?:s|ity)?|heterosexual(?:s|ity)?"
         r"|transgender|transsexual|sexual (?:orientation|preference|partners?|history|life)"
         r"|sex life|sex workers?|prostitutes?|faggots?|trann(?:y|ies)|porn|pornography"
         r"|trans (?:woman|man|women|men|person)"),
    Rule("sex-life.en.affair", r"affair",
         before=r"(?:having an|had an|has an|an extramarital|extramarital) "),
    Rule("sex-life.en.mistress", r"mistress", before=r"(?:his|a) "),
)

# Genetic and biometric data. GDPR Art. 9 (not named in 004's examples). A device's
# fingerprint reader or face unlock is not biometric data about the caller.
_GENETIC_BIOMETRIC: Final = (
    Rule("genetic-biometric.fr.test",
         _alts(r"test|tests|analyse|analyses|depistage", r"(?:adn|genetiques?)")),
    Rule("genetic-biometric.fr.heredity",
         r"genetiques?|hereditaires?|porteu(?:r|se) (?:du|d'un) gene",
         unless_before=r"(?:algorithme|algorithmes|patrimoine) "),
    Rule("genetic-biometric.fr.biometric",
         r"empreintes? digitales?|biometri(?:e|que|ques)|reconnaissance faciale",
         unless_before=r"(?:capteur|capteurs|lecteur|lecteurs|deverrouillage|authentification"
                       r"|connexion|fonction|option|scanner)(?: par | de | a | d'| )"),
    Rule("genetic-biometric.fr.iris",
         _alts(r"scan|scanner", r"(?:de l'|d'|de la |du )?(?:iris|retine)")),
    Rule("genetic-biometric.any.gene", r"brca[12]?|huntington(?:'s)?"),
    Rule("genetic-biometric.en.genetic",
         r"dna (?:test|tests|testing|sample|results?|profile)|genetic (?:test|tests|testing"
         r"|condition|disorder|disease|predisposition|mutation|screening|results?|data)"
         r"|carrier of the \w+ gene|carries the \w+ gene"),
    Rule("genetic-biometric.en.biometric",
         r"biometric (?:data|information|identifiers?|template)|biometrics|fingerprints?"
         r"|facial recognition|retina scan|iris scan|voiceprint",
         unless_before=r"(?:device|browser|key|ssh|tls|certificate|pgp|gpg|sensor|reader"
                       r"|scanner|phone|phone's) ",
         unless_after=r" (?:sensor|sensors|reader|scanner|login|unlock|id|mismatch|setting"
                      r"|settings|feature|not working)\b"),
)

# Offences, criminal convictions. 004_d3ec3d87acc4f880.txt: "[...] aux infractions ou
# condamnations des clients". Being the *victim* of fraud, a theft or a scam is the
# ordinary business of many contact centres and is not flagged ("fraude", "vol" alone,
# "victime d'un escroc").
_OFFENCES: Final = (
    Rule("offences.fr.record", r"casiers? judiciaires?"),
    Rule("offences.fr.prison", r"prison|taule|zonzon",
         before=r"(?:fait de la|fait|en|sorti de|sortie de|sort de|sortant de|retour de"
                r"|ans de|mois de|annees de|passe par la) "),
    Rule("offences.fr.justice",
         r"ancien(?:ne)? (?:detenu|detenue|taulard|prisonnier|prisonniere)|taulards?"
         r"|incarcer(?:e|ee|es|ees|ation)|mis(?:e|es)? en examen|garde a vue"
         r"|bracelet electronique|controle judiciaire|tribunal correctionnel"
         r"|application des peines|delinquan(?:t|te|ts|tes|ce)|trafiquants?"
         r"|trafic de (?:drogue|stupefiants|cannabis)|pedophilie|violences? conjugales?"
         r"|arrestation|arrete(?:e|s|es)? par la police"
         r"|interpelle(?:e|s|es)? par (?:la police|les gendarmes|la gendarmerie)"),
    Rule("offences.fr.accusation", r"fraudeu(?:r|se|rs|ses)|voleu(?:r|se|rs|ses)|escrocs?",
         unless_before=r"victime (?:d'un |d'une |de |des |d')?"),
    Rule("offences.fr.detention", r"detention",
         before=r"(?:en|(?:place|placee|places|placees) en) "),
    Rule("offences.fr.convicted", r"condamn(?:e|ee|es|ees) (?:pour|a|par)|condamnations?"),
    Rule("offences.fr.suspended", r"sursis", before=r"(?:avec|sous) "),
    Rule("offences.fr.assizes", r"assises", before=r"cour d'"),
    Rule("offences.fr.watchlist", r"fichee? s", unless_after=r"'"),
    Rule("offences.any.paedophile", r"pedophiles?"),
    Rule("offences.en.record",
         r"criminal (?:record|records|conviction|convictions|past|history|offence|offense"
         r"|charges)|police record|mugshot"),
    Rule("offences.en.prison", r"jail|prison",
         before=r"(?:in|to|from|out of|served time in|spent time in|time in|years in"
                r"|months in) "),
    Rule("offences.en.sentence", _alts(r"jail|prison", r"(?:time|sentence|term)")),
    Rule("offences.en.convicted",
         r"convicted|convicts?|felon|felons|felony|felonies"
         r"|sex offenders?|offenders|dui|dwi|drunk driving|drink driving"
         r"|shoplift(?:ing|er|ers|ed)|drug (?:dealer|dealers|dealing|trafficking|charges"
         r"|conviction)|ankle (?:tag|monitor|bracelet)|indicted|arrested|incarcerated"
         r"|paedophiles?|domestic (?:violence|abuse)|restraining order"
         r"|probation officer|parole officer|served time"),
    Rule("offences.en.ex-con", r"cons?|convicts?", before=r"ex "),
    Rule("offences.en.conviction", r"convictions?",
         before=r"(?:criminal|prior|previous|past|drug|dui|fraud|theft|assault|has a|has"
                r"|had a) "),
    Rule("offences.en.parole", r"parole|probation", before=r"on ",
         unless_after=r" (?:period|periods)\b"),
    Rule("offences.en.charged",
         r"charged with (?:assault|fraud|theft|murder|burglary|robbery|possession"
         r"|drink driving|drunk driving|dui|a crime|an offence|an offense|battery)"),
)

# Insulting words. 004_d3ec3d87acc4f880.txt: "sans propos excessifs ou insultants" and
# "fiche du client présentant un jugement de valeur, caractère diffamatoire,
# discriminant ou insultant". Words with an innocent meaning ("con" in "chili con
# carne", "fou rire", "ordures ménagères", "a clown costume") need a person context.
_INSULTING: Final = (
    Rule("insulting.fr.word",
         r"idiote|idiotes|abruti(?:e|s|es)?|debiles?|stupides?|connard(?:e|s|es)?"
         r"|connasses?|salauds?|salopes?|putes?|enfoire(?:e|s|es)?|encule(?:e|s|es)?"
         r"|batard(?:e|s|es)?|bouffon(?:ne|s|nes)?|gogols?|mongolien(?:ne|s|nes)?"
         r"|boloss?|bolos|teubes?|cassos|ploucs?|petasses?|pouffiasses?|grognasses?"
         r"|neuneus?|barjots?|barjos?|trou du cul|tete de (?:con|noeud)"
         r"|emmerdeu(?:r|se|rs|ses)|chieu(?:r|se|rs|ses)|casse couilles|hysteriques?"
         r"|psychopathes?|racailles?"),
    Rule("insulting.any.word", r"idiots?|cretins?|imbeciles?|psychos?|bimbos?"),
    Rule("insulting.fr.con", r"con(?:ne|nes|s)?",
         before=rf"(?:{_DEGREE_FR}|{_PERSON_FR}|un|une|quel|quelle|gros|grosse|pauvre|vieux"
                r"|vieille|vieil|sale|espece de|c'est un|c'est une|bande de|tete de) "),
    Rule("insulting.fr.con-comme", r"con(?:ne)? comme"),
    Rule("insulting.fr.crazy",
         r"fou|folle|fous|folles|tare(?:e|s|es)?|cingle(?:e|s|es)?|dingues?"
         r"|malade mental(?:e)?",
         before=rf"(?:{_DEGREE_FR}|{_PERSON_FR}|est|etait|c'est un|c'est une) ",
         unless_before=rf"c'est (?:{_DEGREE_FR} )?",
         unless_after=r" (?:rire|rires|journee|soiree|ambiance|envie|histoire|de rage|de joie"
                      r"|de colere|de bonheur|d'inquietude)\b"),
    Rule("insulting.fr.noun", r"ordures?|vaches?|andouilles?",
         before=r"(?:une|quelle|cette|sale|vraie|vieille|grosse|espece d') ",
         unless_after=r" (?:menageres?|laitieres?|a lait)\b"),
    Rule("insulting.fr.fat", _alts(r"gros|grosse", r"(?:porc|lard|vache|dondon|tas|truie)")),
    # "sale" is also English ("sale type: clearance"): only with French nouns
    Rule("insulting.fr.dirty",
         r"sale (?:bonne femme|race|mec|gamin|vieux|vieille|arabe|noir|noire|juif|juive"
         r"|negre|bougnoule|gitan|gitane|con|conne)|sales (?:mecs|gamins|vieux|vieilles"
         r"|arabes|noirs|noires|juifs|negres|bougnoules|gitans|gitanes|cons)"),
    Rule("insulting.en.word",
         r"idiotic|morons?|moronic|stupid|dumb|dumbass(?:es)?|dumbo|nutjobs?|nutcases?"
         r"|nutters?|lunatics?|maniacs?|retarded|jerks?|assholes?|arseholes?|bitch(?:es|y)?"
         r"|bastards?|dickheads?|twats?|cunts?|wankers?|tossers?|douchebags?|losers?"
         r"|scumbags?|scum|hysterical|weirdos?|freaks?|halfwits?|dimwits?|numpty"
         r"|numpties|pillocks?|sluts?|whores?|airheads?|brain dead|braindead"),
    Rule("insulting.en.crazy", r"crazy",
         unless_after=r" (?:about|busy|deal|deals|price|prices|offer|offers|fast|long|hot|weather"
                      r"|good|cheap|expensive|day|week)\b"),
    Rule("insulting.en.prick", r"pricks?", unless_before=r"(?:needle|pin) "),
    Rule("insulting.en.creep", r"creeps?", unless_before=r"(?:scope|feature|mission) "),
    Rule("insulting.en.noun", r"retard|douche|karen|muppet|clown",
         before=r"(?:a|total|complete|such a|what a|absolute|bloody|fucking|full|proper"
                r"|typical|real) ",
         unless_after=r" (?:costume|costumes|outfit|nose|shoes|wig|suit|mask|party)\b"),
    Rule("insulting.en.fat", r"fat (?:slob|cow|pig|git|bastard|bitch)"),
)

# Subjective or excessive judgments of character, intellect, age or state. Same CNIL
# passage as _INSULTING ("en toute objectivité", "jugement de valeur"). Conduct described
# as such ("client agressif", "mécontent", "en colère", "customer was rude/angry") is
# a fact an agent may need to record and is NOT flagged; judgments of the person are.
_SUBJECTIVE: Final = (
    Rule("subjective.fr.character",
         r"relous?|chiant(?:e|s|es)?|casse pieds|grincheu(?:x|se|ses)"
         r"|raleu(?:r|se|rs|ses)|radin(?:e|s|es)?|aigri(?:e|s|es)?|grognon(?:ne|s|nes)?"
         r"|mauvaise foi|mauvais payeurs?|mauvaises? payeuses?|menteu(?:r|se|rs|ses)"
         r"|mythos?|mythomanes?|hautain(?:e|s|es)?|pretentieu(?:x|se|ses)"
         r"|odieu(?:x|se|ses)|gateu(?:x|se|ses)|radot(?:e|ent|eur|euse|eurs|euses)"
         r"|tete de mule"),
    # "situation pénible", "attente insupportable": the situation, not the person
    Rule("subjective.fr.tiresome", r"penibles?|insupportables?|imbuvables?|execrables?",
         unless_before=rf"(?:situation|situations|c'est|probleme|periode|attente|moment"
                       rf"|travail|demarche|demarches|procedure|service|delai|delais"
                       rf"|bruit|douleur|douleurs)(?: {_DEGREE_FR})? "),
    Rule("subjective.any.character", r"arrogant(?:e|s|es)?|seniles?|gaga"),
    Rule("subjective.fr.heavy", r"lourd(?:e|s|es)?",
         before=rf"{_PERSON_FR}(?: {_DEGREE_FR})? "),
    Rule("subjective.fr.dumb", r"betes?",
         before=rf"(?:{_DEGREE_FR}|{_PERSON_FR}|est|etait) ",
         unless_before=rf"c'est (?:{_DEGREE_FR} )?"),
    Rule("subjective.fr.dumb-phrase",
         r"pas (?:tres |bien |super )?(?:fute|futee|malin|maligne)|lent(?:e)? d'esprit"
         r"|bete comme ses pieds"),
    Rule("subjective.fr.age", _alts(
        r"vieux|vieille|vieilles|vieil",
        r"(?:grincheux|grincheuse|con|conne|schnock|schnoque|chnoque|bique|peau|croulant"
        r"|croulante|fou|folle|raleur|raleuse|radoteur|radoteuse|gateux|gateuse|senile"
        r"|debris|taree|tare|chiant|chiante|aigri|aigrie|relou|bougon|bougonne)")),
    Rule("subjective.fr.drunk", r"ivres?|alcoolise(?:e|s|es)?|bourre(?:e|s|es)?|saoul(?:e|s|es)?",
         before=rf"(?:{_PERSON_FR}|semblait|semble|etait|est|paraissait|un peu|completement"
                r"|totalement|visiblement) ",
         unless_after=r" (?:de|d')"),
    Rule("subjective.en.character",
         r"grumpy|cranky|whiny|whiney|whingers?|moaners?|cheapskates?|stingy|liars?"
         r"|time(?: )?wasters?|obnoxious|insufferable|creepy|thick as|not the sharpest"
         r"|pain in the (?:ass|arse|neck|backside|butt)"),
    Rule("subjective.en.annoying", r"annoying|unbearable",
         before=r"(?:customer|caller|client|man|woman|lady|guy|bloke|person|he's|she's"
                r"|he is|she is|he was|she was)(?: is| was)?(?: very| really| so| extremely"
                r"| incredibly)? "),
    Rule("subjective.en.difficult",
         r"difficult (?:customer|caller|person|man|woman|lady|individual|client)"
         r"|nightmare (?:customer|caller|client)"),
    Rule("subjective.en.entitled", r"entitled",
         before=r"(?:so|very|really|totally|extremely|super|an|most|typical) ",
         unless_after=r" to\b"),
    Rule("subjective.en.too-dumb", r"too (?:dumb|thick|stupid|slow|dim) to"),
    Rule("subjective.en.age",
         r"old (?:git|fart|farts|bag|bat|hag|codger|geezer|coot|biddy|fogey|fogeys|duffer)"),
    Rule("subjective.en.rude-old", r"old (?:man|woman|lady|guy|bloke|men|women|timer|boy)",
         before=r"(?:rude|grumpy|cranky|senile|batty|dotty|nasty|miserable|stubborn|silly"
                r"|crazy|mad|daft|stupid|annoying|difficult|crabby|cantankerous|doddering"
                r"|confused|dirty|creepy|bitter) "),
    Rule("subjective.en.fat", r"fat (?:man|woman|lady|guy|bloke|people|person)"),
    Rule("subjective.en.drunk", r"drunk|drunken|tipsy",
         before=r"(?:was|is|sounded|sounds|seemed|seems|appeared|very|completely|totally"
                r"|clearly|obviously|a bit|he's|she's|customer|caller) ",
         unless_after=r" (?:driving|driver)\b"),
)

RULES: Final[tuple[Rule, ...]] = (
    *_HEALTH, *_ORIGIN, *_POLITICAL, *_RELIGION, *_UNION, *_SEX_LIFE, *_GENETIC_BIOMETRIC,
    *_OFFENCES, *_INSULTING, *_SUBJECTIVE,
)

# ---------------------------------------------------------------------------------------
# Compilation (import time)
# ---------------------------------------------------------------------------------------

_SEP: Final = r"[\s\-]+"
_APOS: Final = r"'\s*"


def _expand(pattern: str) -> str:
    """Replace the space and apostrophe shorthands outside character classes."""
    out: list[str] = []
    in_class = escaped = False
    for i, ch in enumerate(pattern):
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif in_class:
            out.append(ch)
            in_class = ch != "]"
        elif ch == "[":
            out.append(ch)
            in_class = True
        elif ch in " '":
            if pattern[i + 1:i + 2] in ("?", "*", "+", "{"):
                raise ValueError(f"pattern {pattern!r}: quantify a shorthand as (?: )? or (?:')?")
            out.append(_SEP if ch == " " else _APOS)
        else:
            out.append(ch)
    return "".join(out)


def _top_level_alternatives(pattern: str) -> list[str]:
    alts: list[str] = []
    depth = 0
    in_class = escaped = False
    start = 0
    for i, ch in enumerate(pattern):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            alts.append(pattern[start:i])
            start = i + 1
    alts.append(pattern[start:])
    return alts


def _stem(alternative: str) -> str:
    """Leading literal letters and digits that every match of ``alternative`` starts with."""
    stem: list[str] = []
    for i, ch in enumerate(alternative):
        if not ("a" <= ch <= "z" or "0" <= ch <= "9"):
            break
        if alternative[i + 1:i + 2] in ("?", "*", "{", "+"):
            break
        stem.append(ch)
    return "".join(stem)


@dataclass(frozen=True)
class _Compiled:
    index: int
    rule: Rule
    term: re.Pattern[str]
    before: re.Pattern[str] | None
    unless_before: re.Pattern[str] | None
    unless_after: re.Pattern[str] | None


def _compile_rule(index: int, rule: Rule) -> tuple[_Compiled, list[str]]:
    stems = []
    for alt in _top_level_alternatives(rule.term):
        stem = _stem(alt)
        if len(stem) < _MIN_STEM:
            raise ValueError(
                f"rule {rule.id}: alternative {alt!r} must start with a literal stem of at"
                f" least {_MIN_STEM} letters")
        stems.append(stem)

    def ctx(pattern: str | None) -> re.Pattern[str] | None:
        return None if pattern is None else re.compile(rf"\b(?:{_expand(pattern)})\Z")

    return _Compiled(
        index=index,
        rule=rule,
        term=re.compile(rf"(?:{_expand(rule.term)})(?:(?<!\w)|(?!\w))"),
        before=ctx(rule.before),
        unless_before=ctx(rule.unless_before),
        unless_after=(None if rule.unless_after is None
                      else re.compile(_expand(rule.unless_after))),
    ), stems


_Trie: TypeAlias = dict[str, "_Trie"]


def _trie_regex(words: set[str]) -> str:
    """A regex matching the longest of ``words`` that starts at a position, shaped as a
    trie so that the regex engine tries at most one branch per character."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: _Trie) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


def _build() -> tuple[re.Pattern[str], dict[str, tuple[_Compiled, ...]]]:
    """The prefilter, and for each stem the rules to try when it is the longest stem
    found at a word start: its own and those of every shorter stem it begins with."""
    ids = [r.id for r in RULES]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate notes-lint rule ids: {dupes}")
    by_stem: dict[str, list[_Compiled]] = {}
    for index, rule in enumerate(RULES):
        compiled, stems = _compile_rule(index, rule)
        for stem in dict.fromkeys(stems):
            by_stem.setdefault(stem, []).append(compiled)
    candidates = {
        stem: tuple(sorted({c.index: c for other, rules in by_stem.items()
                            if stem.startswith(other) for c in rules}.values(),
                           key=lambda c: c.index))
        for stem in by_stem
    }
    return re.compile(r"\b" + _trie_regex(set(by_stem))), candidates


# compiled on first use (about 0.2 s): commands that never lint a note do not pay for it
_compiled = functools.cache(_build)
_WORD: Final = re.compile(r"\w+")

# ---------------------------------------------------------------------------------------
# Folding with an offset map back to the original text
# ---------------------------------------------------------------------------------------

_SPECIAL: Final = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u02bc\u02b9\u00b4\u2032", "'"),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    "œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l",
    "đ": "d", "Đ": "d",
}
_FOLD_CACHE: dict[str, str] = {}
_FOLD_CACHE_MAX: Final = 4096  # distinct characters remembered; others are folded each time


def _fold_char(ch: str) -> str:
    folded = _FOLD_CACHE.get(ch)
    if folded is None:
        folded = _SPECIAL.get(ch)
        if folded is None:
            decomposed = unicodedata.normalize("NFKD", ch)
            folded = "".join(c for c in decomposed
                             if not unicodedata.combining(c)
                             and unicodedata.category(c) != "Cf").casefold()
            folded = "".join(_SPECIAL.get(c, c) for c in folded)
        if len(_FOLD_CACHE) < _FOLD_CACHE_MAX:
            _FOLD_CACHE[ch] = folded
    return folded


class _Offsets:
    """Maps folded-text indices back to the original text. Identity for ASCII text."""

    __slots__ = ("_ends", "_n_starts", "_origs", "_shift", "_text_len")

    def __init__(self, irregular: list[tuple[int, int, int]], text_len: int) -> None:
        # irregular: (folded start, folded length, original index) of each character whose
        # folding is not exactly one character (dropped marks, œ -> oe, ß -> ss ...)
        self._n_starts = [n for n, _, _ in irregular]
        self._ends = [n + ln for n, ln, _ in irregular]
        self._origs = [o for _, _, o in irregular]
        self._shift: list[int] = []  # original minus folded index, after each one
        shift = 0
        for _, length, _ in irregular:
            shift += 1 - length
            self._shift.append(shift)
        self._text_len = text_len

    def _orig(self, j: int) -> int:
        k = bisect.bisect_right(self._ends, j)  # irregulars entirely before folded index j
        if k < len(self._n_starts) and self._n_starts[k] <= j:
            return self._origs[k]  # inside an expansion (œ -> "oe")
        return j + (self._shift[k - 1] if k else 0)

    def span(self, start: int, end: int, text: str) -> tuple[int, int]:
        o_start = self._orig(start)
        o_end = self._orig(end - 1) + 1
        while o_end < self._text_len and _fold_char(text[o_end]) == "":
            o_end += 1  # keep combining marks that follow the last matched letter
        return o_start, o_end


def _regular_table() -> tuple[dict[int, str], re.Pattern[str]]:
    """Folding table for the characters agents type (Latin-1, Latin Extended-A/B, general
    punctuation, euro sign) whose folding is exactly one character, and a regex finding
    any other character, for which the slow path builds an offset map."""
    table = {cp: chr(cp).lower() for cp in range(0x80)}
    for cp in (*range(0x80, 0x250), *range(0x2000, 0x2070), 0x20AC):
        folded = _fold_char(chr(cp))
        if len(folded) == 1:
            table[cp] = folded
    regular = "".join(re.escape(chr(cp)) for cp in sorted(table) if cp >= 0x80)
    return table, re.compile(f"[^\\x00-\\x7f{regular}]")


_REGULAR_TABLE, _IRREGULAR = _regular_table()


def _fold(text: str) -> tuple[str, _Offsets | None]:
    """Folded text and the offset map (None when folding kept every index in place)."""
    if text.isascii():
        return text.lower(), None
    if _IRREGULAR.search(text) is None:
        return text.translate(_REGULAR_TABLE), None
    pieces: list[str] = []
    irregular: list[tuple[int, int, int]] = []
    n = 0
    for i, ch in enumerate(text):
        folded = _fold_char(ch)
        pieces.append(folded)
        if len(folded) != 1:
            irregular.append((n, len(folded), i))
        n += len(folded)
    folded_text = "".join(pieces)
    return folded_text, (_Offsets(irregular, len(text)) if irregular else None)


# ---------------------------------------------------------------------------------------
# Language of rules spelled alike in French and English ("idiot", "cancer", "gay")
# ---------------------------------------------------------------------------------------

_FR_HINTS: Final = frozenset({
    "le", "la", "les", "de", "des", "du", "est", "et", "pour", "une", "un", "au", "aux",
    "avec", "pas", "il", "elle", "sur", "dans", "qui", "que", "client", "cliente",
    "rappeler", "demande", "tres", "mais", "son", "sa", "ses", "ne", "nous", "vous",
    "souhaite", "appel",
})
_EN_HINTS: Final = frozenset({
    "the", "is", "was", "and", "for", "with", "to", "of", "he", "she", "has", "not", "on",
    "in", "customer", "caller", "called", "said", "asked", "very", "his", "her", "but",
    "wants", "call", "back", "will", "would",
})


def _guess_language(folded: str) -> str:
    fr = en = 0
    for word in _WORD.findall(folded):
        fr += word in _FR_HINTS
        en += word in _EN_HINTS
    return "en" if en > fr else "fr"


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def lint_note(text: str) -> NoteLint:
    """Check one note. Pure and deterministic; never raises on any ``str``."""
    truncated = len(text) > MAX_NOTE_CHARS
    if truncated:
        text = text[:MAX_NOTE_CHARS]
    folded, offsets = _fold(text)
    raw: list[tuple[int, int, int, _Compiled]] = []  # (start, end, rule index, rule)
    prefilter, candidates = _compiled()
    for hit in prefilter.finditer(folded):
        pos = hit.start()
        for c in candidates[hit.group()]:
            span = _match(c, folded, pos)
            if span is not None:
                raw.append((span[0], span[1], c.index, c))
    if not raw:
        return NoteLint(findings=(), truncated=truncated, checked_chars=len(text))
    return NoteLint(findings=_findings(raw, folded, text, offsets), truncated=truncated,
                    checked_chars=len(text))


def _match(c: _Compiled, folded: str, pos: int) -> tuple[int, int] | None:
    m = c.term.match(folded, pos)
    if m is None:
        return None
    if c.unless_after is not None and c.unless_after.match(folded, m.end()):
        return None
    lo = max(0, pos - _CONTEXT_CHARS)
    if c.unless_before is not None and c.unless_before.search(folded, lo, pos):
        return None
    start = pos
    if c.before is not None:
        b = c.before.search(folded, lo, pos)
        if b is None:
            return None
        start = b.start()
    return start, m.end()


@dataclass
class _Hit:
    start: int
    end: int
    compiled: _Compiled


def _findings(raw: list[tuple[int, int, int, _Compiled]], folded: str, text: str,
              offsets: _Offsets | None) -> tuple[Finding, ...]:
    raw.sort(key=lambda r: (r[0], -r[1], r[2]))
    kept: list[_Hit] = []
    last: dict[str, _Hit] = {}  # overlapping findings of one category merge into one
    for start, end, _, c in raw:
        prev = last.get(c.rule.category)
        if prev is not None and start < prev.end:
            prev.end = max(prev.end, end)
            continue
        last[c.rule.category] = hit = _Hit(start, end, c)
        kept.append(hit)
    guessed: str | None = None
    out = []
    for hit in kept:
        rule = hit.compiled.rule
        language = rule.language
        if language == "any":
            guessed = guessed or _guess_language(folded)
            language = guessed
        span = ((hit.start, hit.end) if offsets is None
                else offsets.span(hit.start, hit.end, text))
        out.append(Finding(category=rule.category, language=language, start=span[0],
                           end=span[1], rule=rule.id))
    return tuple(out)
