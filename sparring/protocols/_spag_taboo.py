"""The official SPAG judge of Adversarial Taboo (Linear95/SPAG, ``tools/assign_rewards.py``), re-implemented.

Pure functions over strings, called by ``builtin/adversarial_taboo_spag.yaml`` as
``spag_mentions``, ``spag_guess`` and ``spag_correct_guess`` (see ``_expressions.HELPERS``).
They follow the official rules, not the whole-word judge of ``_taboo``:

- a message *mentions* the target when its lower-cased text contains, as a plain substring, the
  lower-cased word, the word + ``ing``, the word + ``ed`` or its plural (``category`` mentions
  ``cat``; ``ran`` does not mention ``run``);
- a message *guesses* when its lower-cased text contains ``i know the word! it`` followed by 1 to
  8 characters other than a newline (regex ``i know the word! it.{1,8}``);
- a guess is *right* when one of those forms, bare or quoted, starts 1 to 8 characters after
  such an ``it`` (``it is `cats```, ``it's cat``, but also ``it is not cat``).

The official code takes the plural from TextBlob (pattern's classical pluralizer), which sparring
does not depend on. `spag_plural` applies the same English suffix rules and a table of pattern's
listed exceptions (``_IRREGULAR``, ``_UNCHANGED``, ``_S_SINGULAR``) holding every one that the
shipped ``taboo_words.txt`` hits: the plural is TextBlob's for all 1,500 words (checked against
TextBlob's rules). Another word may get another plural where pattern lists it as an exception
(Latin and Greek plurals, uncountable nouns) and the table does not. The official code also puts
the forms into its regular expression unescaped; here they are escaped, which differs only for a
target holding a regex metacharacter (none in the shipped list).
"""

from __future__ import annotations

import re
from functools import lru_cache

_GUESS = r"i know the word! it.{1,8}"
_GUESS_RE = re.compile(_GUESS)
_QUOTES = ('"', "'", "`")

# Plurals TextBlob gives (pattern's listed exceptions, classical mode) that the suffix rules miss.
_IRREGULAR = {
    "child": "children", "person": "people", "medium": "media", "criterion": "criteria",
    "phenomenon": "phenomena", "datum": "data", "bacterium": "bacteria", "formula": "formulae",
    "antenna": "antennae", "nebula": "nebulae", "index": "indices", "vertex": "vertices",
    "cortex": "cortices", "apex": "apices", "focus": "foci", "radius": "radii", "fungus": "fungi",
    "genius": "genii", "curriculum": "curricula", "stadium": "stadia",
    "aquarium": "aquaria", "gymnasium": "gymnasia", "memorandum": "memoranda",
    "minimum": "minima", "maximum": "maxima", "momentum": "momenta", "spectrum": "spectra",
    "vacuum": "vacua", "quantum": "quanta", "drama": "dramata", "dogma": "dogmata",
    "trauma": "traumata", "stigma": "stigmata", "diploma": "diplomata", "schema": "schemata",
    "charisma": "charismata", "soprano": "soprani", "solo": "soli", "tempo": "tempi",
    "photo": "photos", "ghetto": "ghettos", "inferno": "infernos", "embryo": "embryos",
    "cherub": "cherubim", "status": "status", "apparatus": "apparatus", "nexus": "nexus",
    "genus": "genera", "corpus": "corpora", "opus": "opera", "octopus": "octopodes",
    "ox": "oxen", "loaf": "loaves", "beef": "beeves", "turf": "turves", "brother": "brethren",
    "cow": "kine", "money": "monies", "atlas": "atlantes", "iris": "irides",
}
_UNCHANGED = frozenset(
    "aircraft bison carp cattle chassis cod corps debris diabetes elk homework mackerel measles "
    "moose offspring news salmon scissors series species swine trout tuna advice bread butter "
    "cheese electricity equipment fruit furniture garbage gravel happiness information ketchup "
    "knowledge love luggage mathematics mayonnaise meat mustard progress research rice sand "
    "software understanding water".split()
)
_S_SINGULAR = frozenset("alias bias bus canvas chaos christmas cosmos gas lens pelvis".split())
_RULES = [  # (suffix pattern, replacement): the first that matches is applied
    (r"(fish|sheep|deer|pox|itis|ois)$", r"\1"),
    (r"man$", "men"), (r"([lm])ouse$", r"\1ice"), (r"tooth$", "teeth"), (r"goose$", "geese"),
    (r"foot$", "feet"), (r"zoon$", "zoa"), (r"([csx])is$", r"\1es"),
    (r"([cs]h|ss|x)$", r"\1es"),
    (r"([aeo]l)f$", r"\1ves"), (r"([^d]ea)f$", r"\1ves"), (r"arf$", "arves"), (r"([nlw]i)fe$", r"\1ves"),
    (r"([aeiou][yo])$", r"\1s"), (r"y$", "ies"), (r"o$", "oes"),
    (r"$", "s"),
]


@lru_cache(maxsize=4096)
def spag_plural(word: str) -> str:
    """The plural the official judge uses for ``word`` (its TextBlob ``pluralize``), lower-case.

    English suffix rules (``city`` -> ``cities``, ``box`` -> ``boxes``, ``knife`` -> ``knives``,
    ``woman`` -> ``women``), the exceptions of the shipped target list (``child`` -> ``children``,
    ``medium`` -> ``media``, ``water`` -> ``water``), and otherwise ``-s``. Like TextBlob on a
    phrase (``TextBlob(w).words.pluralize()[0]``), a multi-word target gives its first word's plural.

    Args:
        word (`str`): the target word, in any case.

    Returns:
        `str`: the plural, lower-case (``""`` for a blank word).

    Example:
        >>> spag_plural("City"), spag_plural("child"), spag_plural("potato")
        ('cities', 'children', 'potatoes')
    """
    words = re.findall(r"[\w'-]+", word.lower())
    if not words:
        return ""
    first = words[0]
    if first in _IRREGULAR:
        return _IRREGULAR[first]
    if first in _UNCHANGED:
        return first
    if first in _S_SINGULAR:
        return first + "es"
    for suffix, replacement in _RULES:
        if re.search(suffix, first):
            return re.sub(suffix, replacement, first, count=1)
    return first + "s"  # not reached: the last rule always matches


@lru_cache(maxsize=4096)
def spag_forms(word: str) -> tuple[str, ...]:
    """The strings whose presence counts as saying ``word`` under the official judge.

    The lower-cased word, word + ``ing``, word + ``ed`` and `spag_plural` (the official code also
    lists each quoted in ``"``, ``'`` and backticks; a quoted form contains its bare form, so
    those add nothing to a substring test and are left out here).

    Args:
        word (`str`): the target word.

    Returns:
        `tuple[str, ...]`: the forms, lower-case.

    Example:
        >>> spag_forms("cat")
        ('cat', 'cating', 'cated', 'cats')
    """
    lower = word.lower()
    return (lower, lower + "ing", lower + "ed", spag_plural(word))


def spag_mentions(message: str, target: str) -> bool:
    """Whether ``message`` says ``target`` by the official rule: any of `spag_forms` as a substring.

    Any case; a form inside a longer word counts (``category`` mentions ``cat``), an irregular
    inflection that does not contain a form does not (``ran`` for ``run``).

    Args:
        message (`str`): a message.
        target (`str`): the target word.

    Returns:
        `bool`: `True` when the message mentions the target.

    Example:
        >>> spag_mentions("A Category error", "cat"), spag_mentions("I ran home", "run")
        (True, False)
    """
    text = (message or "").lower()
    return any(form and form in text for form in spag_forms(target))


def spag_guess(message: str) -> bool:
    """Whether ``message`` makes a guess by the official rule: ``i know the word! it.{1,8}``.

    The lower-cased text must contain ``i know the word! it`` (exactly: one space each, ``!``)
    and at least one more character on the same line. ``I know the word: apple`` is no guess.

    Args:
        message (`str`): a message.

    Returns:
        `bool`: `True` when it guesses.

    Example:
        >>> spag_guess("I KNOW THE WORD! It is `cat`!"), spag_guess("I know the word: cat")
        (True, False)
    """
    return _GUESS_RE.search((message or "").lower()) is not None


def spag_correct_guess(message: str, target: str) -> bool:
    """Whether ``message`` guesses ``target`` right by the official rule.

    Right when, in the lower-cased text, one of `spag_forms`, bare or in quotes (``"``, ``'``,
    backticks), starts 1 to 8 characters (not newlines) after ``i know the word! it``; the form
    may run on into a longer word. Unlike
    ``correct_guess`` it takes the whole message, not a parsed guess.

    Args:
        message (`str`): the defender's message.
        target (`str`): the target word.

    Returns:
        `bool`: `True` for a right guess.

    Example:
        >>> spag_correct_guess("I know the word! It is `Cats`!", "cat")
        True
        >>> spag_correct_guess("I know the word! It is really a dog, not a cat", "cat")
        False
    """
    text = (message or "").lower()
    forms = [form for form in spag_forms(target) if form]
    forms += [quote + form + quote for quote in _QUOTES for form in forms]  # as the official list
    return any(re.search(_GUESS + re.escape(form), text) for form in forms)


__all__ = ["spag_correct_guess", "spag_forms", "spag_guess", "spag_mentions", "spag_plural"]
