"""genrt.poems.verse.requests: the four forms, rhyme schemes, checking a request before decoding, and Rules."""
from __future__ import annotations

import pytest

from genrt.poems.verse import requests as form_requests
from genrt.poems.verse.requests import (
    FORMS, Rules, check_request, form_choices, poem_token_budget, resolve_form, rhyme_scheme,
)
from genrt.poems.options import GenerationOptions


def test_resolve_form_by_name_and_alias():
    assert resolve_form("wujue") is FORMS["五言绝句"]
    assert resolve_form(" QiLv ").lines == 8 and resolve_form("七言律诗").length == 7
    with pytest.raises(ValueError, match="unknown form 'sonnet'; choose one of 五言绝句 \\(wujue\\)"):
        resolve_form("sonnet")


@pytest.mark.parametrize("form, acrostic, rhyme, message", [
    ("wujue", "春夏秋冬雪", False, "acrostic has 5 characters but 五言绝句 has only 4 lines"),
    ("haiku", None, False, "unknown form 'haiku'"),
    (None, None, True, "rhyme needs a form or an acrostic"),
    ("wujue", "", False, "acrostic is empty"),
    ("qijue", "春a 秋", False, "acrostic must be Han characters only; not allowed: 'a '"),
    (None, "春", False, "an acrostic without a form needs 2 to 16 characters"),
    (None, "春" * 17, False, "needs 2 to 16 characters"),
])
def test_impossible_requests_raise_one_clear_line(form, acrostic, rhyme, message):
    with pytest.raises(ValueError, match=message) as e:
        check_request(form, acrostic, rhyme)
    assert "\n" not in str(e.value)


def test_possible_requests_pass_and_options_use_the_check():
    for form, acrostic, rhyme in (("wujue", None, False), ("qilv", "春江花月夜", True), (None, "春江", True),
                                  ("五绝", "春", False)):
        check_request(form, acrostic, rhyme)
    with pytest.raises(ValueError, match="acrostic has 5 characters"):
        GenerationOptions.from_kwargs(form="wujue", acrostic="春夏秋冬雪")
    assert GenerationOptions.from_kwargs(form="qijue", rhyme=True).form == "qijue"


def test_token_budget():
    assert poem_token_budget("wujue", None) == 4 * 6 + 1
    assert poem_token_budget("qilv", None) == 8 * 8 + 1
    assert poem_token_budget(None, "春江花") == 3 * 8 + 1


def test_form_choices_list_each_form_with_its_ascii_name():
    assert form_choices() == "五言绝句 (wujue), 七言绝句 (qijue), 五言律诗 (wulv), 七言律诗 (qilv)"


@pytest.mark.parametrize("rhyme, tonal, scheme", [
    (True, False, "modern"), ("modern", False, "modern"), ("pingshui", False, "pingshui"),
    (False, True, "pingshui"), (None, True, "pingshui"), (True, True, "modern"), (False, False, None),
    (None, False, None),
])
def test_rhyme_scheme_of_a_request(rhyme, tonal, scheme):
    assert rhyme_scheme(rhyme, tonal) == scheme


def test_every_problem_of_a_request_is_named_in_one_line():
    with pytest.raises(ValueError) as e:
        check_request("haiku", "a", "classical")
    assert str(e.value) == ("unknown form 'haiku'; choose one of " + form_choices() + "; acrostic must be Han "
                            "characters only; not allowed: 'a'; rhyme must be one of modern, pingshui (or True/False), "
                            "got 'classical'")


def test_modern_rhyme_without_pypinyin_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(form_requests, "_pypinyin_installed", lambda: False)
    with pytest.raises(ValueError, match=r"rhyme needs the pypinyin package: pip install .*pypinyin"):
        check_request("wujue", None, True)
    check_request("wujue", None, False)
    check_request("wujue", None, "pingshui")                                  # 平水韵 needs no pypinyin


def test_rules_of_a_form_and_of_an_acrostic_without_one():
    rules = Rules.of("wulv", "春江", "modern")
    assert (rules.lines, rules.length, rules.acrostic, rules.rhyme) == (8, 5, "春江", True)
    assert [rules.end_mark(i) for i in range(8)] == ["，", "。"] * 4
    free = Rules.of(None, "春江花", False)
    assert (free.lines, free.length, free.rhyme) == (3, None, False)
    assert [free.end_mark(i) for i in range(3)] == ["，", "。", "。"]           # the last line always ends '。'
    assert free.max_tokens == 3 * (7 + 1) + 1                                 # the longer free length
    assert Rules.of("qijue", None, "pingshui").rhyme is False                 # 平水韵 is genrt.poems.verse.tonal's
    with pytest.raises(ValueError, match="a form constraint needs a form or an acrostic"):
        Rules.of(None, None, False)
