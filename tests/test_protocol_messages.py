"""Protocol error messages speak of what the user wrote: the line of a YAML mistake, an expression's
syntax error without the parser's internals, a backspace that was meant as a word boundary, and what
a run stopped by failed episodes should fix (a docs-only user test of docs/protocols.md)."""

from __future__ import annotations

import pytest

from _games import load_error
from sparring.errors import BackendError, ProtocolError
from sparring.protocols import is_protocol_error, load_protocol, parse_protocol, what_to_fix
from sparring.protocols._expressions import ExpressionError, TemplateSyntaxError, compile_expression, parse
from sparring.protocols._play import error_line

GAME = """\
name: words
roles:
  a:
    system: Hi.
schedule: {{order: [a], max_turns: 1}}
judge:
  rules:
    - when: {when}
      winner: a
      reason: said
"""


def _rule(when: str) -> str:
    return GAME.format(when=when)


# --- YAML: the line of the mistake ----------------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "says"), [
    ("name: x\nvariables:\n  n: {values: [1, 2]     # a comment\n\n  m: {values: [3]}\n", 3, "the closing '}' is missing"),
    ("name: x\nvariables:\n  n: {values: [1, 2\n  m: {values: [3]}\n", 3, "the closing ']' is missing"),
    ("name: x\nroles:\n  a: {system: Hi,\n      prompt: Go\n      sees: all}\n", 4, "a ',' or the closing '}'"),
    ("name: x\nroles:\n  a: {system: Hi.\n", 3, "the closing '}' is missing"),
    ("name: x\nroles:\n  a:\n    system: \"Hi.\n    prompt: Go\n", 4, "quoted string that opens on this line is never closed"),
    ("name: x\nroles:\n  a:\n    system: \"Hi.\n    prompt: Go\ndescription: \"A game\"\n", 4,
     "not closed on it (it runs on to the next \" on line 6"),
    ("name: x\nroles:\n  a:\n    system: Hi.\n     prompt: Go\n", 5, "invalid YAML"),
    ("name: x\nroles:\n  a:\n    system: Hi.\n   prompt: Go\n", 5, "indent it like the keys beside it"),
    ("name: x\nroles:\n  a:\n\tsystem: Hi.\n", 4, "replace the tab with spaces"),
])
def test_a_yaml_mistake_is_reported_on_its_line(tmp_path, text, line, says):
    error = load_error(text, tmp_path)
    assert error.startswith(f"{tmp_path / 'bad.yaml'}:{line}: invalid YAML") and says in error, error


@pytest.mark.parametrize("sees", ["a", "3"])
def test_a_value_of_none_of_a_fields_types_is_one_message_naming_the_field(tmp_path, sees):
    error = load_error(GAME.format(when="turn > 0").replace("    system: Hi.", f"    system: Hi.\n    sees: {sees}"),
                       tmp_path)
    assert error == f"{tmp_path / 'bad.yaml'}:5: roles.a.sees: Input should be 'all' or a valid list", error


# --- expressions: parsed as they run, errors in the user's terms -----------------------------------

@pytest.mark.parametrize(("source", "message"), [
    ("state.x is not", "unexpected end of the expression, expected 'name'"),
    ("(turn > 1", "unexpected end of the expression, expected ')'"),
    ("turn turn", "unexpected 'turn' after a complete expression"),
    ("turn > 1 }}", "unexpected '}}' after a complete expression (an expression is written without {{ }}"),
    ("{{ turn > 1 }}", "an expression is written without {{ }}: `x > 1`, not `{{ x > 1 }}`"),
    ("turn, round", "unexpected ',' after a complete expression"),
    ("'abc", "unexpected char \"'\" at 0"),
])
def test_an_expression_syntax_error_speaks_of_the_expression_written(tmp_path, source, message):
    error = load_error(_rule(repr(source).replace("\\'", "''")), tmp_path)
    assert f":8: judge.rules.0.when: bad expression: {message}" in error, error
    assert "')'" not in error.replace("expected ')'", "") and "end of template" not in error
    assert not error.endswith(".")


@pytest.mark.parametrize("source", ["turn > 1", "a, b", "(a", "a b", "x | ", "a if b", "[1, 2][0]", "{'a': 1}.a",
                                    "a }}", "not", "x is divisibleby 3", "(a, b)", "f(x)(y)"])
def test_an_expression_validates_exactly_when_it_compiles(source):
    """Validation parses with the parser that runs the expression: no source passes one and fails the other."""
    try:
        compile_expression(source)
        compiles = True
    except TemplateSyntaxError:
        compiles = False
    try:
        parse(source, expression=True)
        parses = True
    except TemplateSyntaxError:
        parses = False
    assert parses == compiles


@pytest.mark.parametrize(("source", "message"), [
    ("messages | lenght > 1", "No filter named 'lenght' (did you mean 'length'?)"),
    ("turn is evn", "No test named 'evn' (did you mean 'even'?)"),
    ("messages | random", "No filter named 'random' (a rule must judge the same messages the same way each time"),
])
def test_an_unknown_filter_or_test_is_named_with_the_closest_one(tmp_path, source, message):
    assert f"judge.rules.0.when: bad expression: {message}" in load_error(_rule(f'"{source}"'), tmp_path)


# --- regular expressions: a backslash decoded once too often -----------------------------------------

@pytest.mark.parametrize("when", [
    "\"match(message, '\\\\bdeal')\"",        # YAML double quotes, two backslashes: the expression gets '\bdeal'
    "'regex(message, \"\\bdeal\")'",           # single quotes, one backslash: the expression string decodes it
    "\"message | regex('(?i)\\\\bdeal')\"",    # as a filter
])
def test_a_backspace_in_a_constant_pattern_is_refused_at_load(tmp_path, when):
    error = load_error(_rule(when), tmp_path)
    assert ":8: judge.rules.0.when: the regular expression" in error and "holds a backspace character" in error


@pytest.mark.parametrize("when", ["'regex(message, \"\\\\bdeal\")'", "\"match(message, '\\\\\\\\bdeal')\"",
                                  "\"regex(message, 'a\\tb')\""])
def test_a_word_boundary_written_right_loads_and_matches(tmp_path, when):
    path = tmp_path / "good.yaml"
    path.write_text(_rule(when))
    rule = load_protocol(path).spec.judge.rules[0].when
    assert "\b" not in rule
    if "deal" in rule:  # a word boundary: "a deal" matches, "ideal" does not
        assert compile_expression(rule)(message="a deal") and not compile_expression(rule)(message="ideal")


# --- play: what to fix ----------------------------------------------------------------------------

def test_what_to_fix_names_the_protocol_for_its_own_errors(tmp_path):
    path = tmp_path / "game.yaml"
    path.write_text(_rule('"true"'))
    protocol = load_protocol(path)
    own = error_line(ExpressionError(protocol.where("roles.a.to"), "gave 'curier'; give a role"))
    backend = error_line(BackendError("openai:m@http://127.0.0.1:9/v1: connection refused."))
    assert is_protocol_error(protocol, own) and not is_protocol_error(protocol, backend)
    assert what_to_fix(protocol, [own, own]) == f"fix the protocol ({path})"
    assert what_to_fix(protocol, [backend]) == "fix the backend (the model or its server)"
    assert what_to_fix(protocol, [own, backend]).startswith(f"fix the protocol ({path}; 1 of the 2 errors are its)")
    other = parse_protocol(_rule('"true"').replace("name: words", "name: other"))
    assert not is_protocol_error(other, own)


def test_an_error_line_ends_without_a_period_so_a_sentence_can_follow():
    assert error_line(ProtocolError("access to attribute 'x' of 'str' object is unsafe.")).endswith("unsafe")
    assert error_line(ValueError("bad.")) == "ValueError: bad"


def test_the_jinja_globals_are_those_docs_protocols_md_names():
    """docs/protocols.md lists the globals besides the helpers: a Jinja upgrade that adds one is noticed here."""
    from sparring.protocols._expressions import HELPERS, _LOOP_GUARD, _env

    assert set(_env.globals) - set(HELPERS) - {_LOOP_GUARD} == {"range", "dict", "namespace", "cycler", "joiner"}
    evaluate = compile_expression("[dict(a=1).a, range(3) | list, namespace(n=2).n, cycler(1, 2).next(), joiner(',')()]")
    assert evaluate() == [1, [0, 1, 2], 2, 1, ""]
