"""Helpers of the Adversarial Taboo judge (SPAG, Cheng et al. 2024): pure functions over strings.

The game's rules live in ``builtin/adversarial_taboo.yaml``; its rule expressions call these
helpers as ``mentions`` (`mentions`), ``guess`` (`parse_guess`) and ``correct_guess``
(`is_correct_guess`), see ``_expressions.HELPERS``. The attacker knows the target word and must
make the defender say it; the defender may guess once ("I know the word! It is `word`!").

Unlike SPAG's substring test a mention is a whole word: ``category`` does not mention ``cat``,
while ``cats``, ``cat's``, ``"Cat"`` and ``cat-like`` (a hyphen separates words) do.
Inflections are real ones from `lemminflect` (``run`` -> ``ran``, ``mouse`` -> ``mice``); words
it does not know get its regular rules. A multi-word target (``ice cream``) matches as a phrase,
its last word inflected, spaces or hyphens between words. `parse_guess` finds a guess even
in a message that also mentions the word; the YAML rules check a defender's guess first.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib.resources import files

from sparring.errors import JudgeError

# A word boundary that lets quotes, markdown (`*`, `_`), apostrophes and hyphens touch the word.
_NOT_AFTER_LETTER = r"(?<![^\W_])"
_NOT_BEFORE_LETTER = r"(?![^\W_])"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_QUOTES = "\"'`\u201c\u201d\u00ab\u00bb"
_GUESS_RE = re.compile(
    r"\bi\s+know\s+the\s+word\b(?![\s*_]*\?)"  # "Do I know the word?" is no guess
    r"[\s*_!.:;,\-\u2013\u2014]*"
    r"(?:(?:it|that)\s*(?:is\b|'s\b|must\s+be\b|should\s+be\b)"
    r"|(?:the\s+|my\s+)?(?:word|guess|answer)\s+is\b)?"
    r"[\s*_:\-\u2013\u2014]*(.*)",
    re.IGNORECASE | re.DOTALL,
)
_QUOTED_RE = re.compile(rf"[{_QUOTES}]+([^{_QUOTES}\n]+)[{_QUOTES}]")
_UNQUOTED_RE = re.compile(r"[^\W\d_][\w'-]*(?:[ \t]+[^\W\d_][\w'-]*){0,3}")
_ARTICLE_RE = re.compile(r"^(?:a|an|the)\s+")


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()


def _target_words(word: str) -> list[str]:
    words = re.split(r"[\s\-\u2013]+", _normalize(word).strip(" \t\n" + _QUOTES + "*_.!?"))
    words = [w for w in words if w]
    if not words:
        raise JudgeError(
            f"the Adversarial Taboo target word is empty ({word!r}): give a word such as 'apple'"
        )
    return words


def _word_forms(word: str) -> set[str]:
    from lemminflect import getAllInflections, getAllInflectionsOOV, getAllLemmas

    tables = [getAllInflections(word)]
    if not tables[0]:  # not a lemma it knows: maybe an inflected form ("cities", "ran")
        lemmas = {lemma for found in getAllLemmas(word).values() for lemma in found}
        tables = [getAllInflections(lemma) for lemma in sorted(lemmas)]
    if not any(tables):  # unknown word: the library's regular rules for nouns and verbs
        tables = [getAllInflectionsOOV(word, "NOUN"), getAllInflectionsOOV(word, "VERB")]
    return {word} | {form.lower() for table in tables for forms in table.values() for form in forms}


@lru_cache(maxsize=4096)
def inflections(word: str) -> frozenset[str]:
    """The lower-case forms that count as saying `word`: the word and its real inflections.

    Forms come from `lemminflect` (plural, -s, -ing, -ed and irregular forms); a word it does
    not know gets its regular rules. For a phrase the last word is inflected.

    Args:
        word (`str`): the target word or phrase, in any case.

    Returns:
        `frozenset[str]`: the forms, lower-case, words separated by one space.

    Raises:
        `JudgeError`: the word is empty.

    Example:
        >>> sorted(inflections("mouse")), sorted(inflections("city"))
        (['mice', 'mouse'], ['cities', 'city'])
    """
    *head, last = _target_words(word)
    return frozenset(" ".join([*head, form]) for form in _word_forms(last))


@lru_cache(maxsize=4096)
def _mention_re(word: str) -> re.Pattern[str]:
    forms = sorted(inflections(word), key=len, reverse=True)
    alternatives = "|".join(r"[\s\-]+".join(map(re.escape, form.split())) for form in forms)
    return re.compile(f"{_NOT_AFTER_LETTER}(?:{alternatives}){_NOT_BEFORE_LETTER}")


def mentions(text: str, word: str) -> bool:
    """Whether `text` says `word` or one of its inflections as a whole word, in any case.

    Quotes, markdown, possessives (``cat's``) and hyphenated compounds (``cat-like``) count;
    a word inside another word (``category``, ``concatenate``) does not.

    Args:
        text (`str`): a message.
        word (`str`): the target word or phrase.

    Returns:
        `bool`: `True` when the text mentions the word.

    Example:
        >>> mentions("Two `Cities`!", "city"), mentions("a category", "cat")
        (True, False)
    """
    return _mention_re(word).search(_normalize(text)) is not None


def parse_guess(text: str) -> str | None:
    """The word a message guesses with "I know the word! It is `word`!", if it guesses.

    Variants count: any case, ``It's``, ``The word is``, ``:`` instead of ``It is``, with or
    without quotes, backticks or bold. An unquoted guess runs to the next punctuation mark (at
    most four words); a leading article is dropped. "Do I know the word?" is no guess.

    Args:
        text (`str`): a message.

    Returns:
        `str | None`: the guess, lower-case; ``""`` for a guess that names no word; `None`
        when the message makes no guess.

    Example:
        >>> parse_guess("I know the word: **Apple**!"), parse_guess("Is it a fruit?")
        ('apple', None)
    """
    found = _GUESS_RE.search(_normalize(text))
    if found is None:
        return None
    rest = found.group(1).lstrip(" \t*_")
    quoted = _QUOTED_RE.match(rest)
    if quoted is not None:
        guess = quoted.group(1)
    else:
        unquoted = _UNQUOTED_RE.match(rest.lstrip(_QUOTES))
        guess = unquoted.group(0) if unquoted else ""
    guess = " ".join(re.split(r"[\s\-]+", guess.strip(" \t*_.,!?;:'")))
    return _ARTICLE_RE.sub("", guess)


def is_correct_guess(guess: str, word: str) -> bool:
    """Whether a guess names `word` or one of its inflections (``cities`` for ``city``).

    Args:
        guess (`str`): the guess, as `parse_guess` returns it or as written.
        word (`str`): the target word or phrase.

    Returns:
        `bool`: `True` for a right guess.

    Raises:
        `JudgeError`: the word is empty.

    Example:
        >>> is_correct_guess("Cities", "city"), is_correct_guess("town", "city")
        (True, False)
    """
    forms = inflections(word)
    words = re.split(r"[\s\-]+", _normalize(guess).strip(" \t\n*_.,!?;:" + _QUOTES))
    return _ARTICLE_RE.sub("", " ".join(w for w in words if w)) in forms


def load_taboo_words() -> list[str]:
    """The bundled list of common English nouns to use as targets (see ``TABOO_WORDS.md``).

    Returns:
        `list[str]`: lower-case single words, most frequent first.

    Example:
        >>> "city" in load_taboo_words()
        True
    """
    text = (files("sparring.protocols") / "builtin" / "taboo_words.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]
