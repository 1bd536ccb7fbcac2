"""Form requests: the four regulated forms, rhyme schemes, and checking a form/acrostic/rhyme/tonal request
before any decoding (`check_request`, `Rules`; that an acrostic fits a tonal pattern is tonal.VerseRules' check).
The rules themselves and the processor are in genrt.poems.verse.forms;
tones and 平水韵 in genrt.poems.verse.tonal."""
from __future__ import annotations

from dataclasses import dataclass

from genrt.contract import COMMA, PERIOD, is_han  # noqa: F401  (re-exported: the verse rules' own names)
MAX_FREE_LINES = 16            # longest acrostic without a form (one line per character)
FREE_LENGTHS = (5, 7)          # line lengths an acrostic without a form may take


@dataclass(frozen=True)
class FormSpec:
    name: str
    lines: int
    length: int                      # Han characters per line
    aliases: tuple[str, ...] = ()


FORMS: dict[str, FormSpec] = {f.name: f for f in (
    FormSpec("五言绝句", 4, 5, ("wujue", "五绝", "五言絕句")),
    FormSpec("七言绝句", 4, 7, ("qijue", "七绝", "七言絕句", "七絕")),
    FormSpec("五言律诗", 8, 5, ("wulv", "五律", "五言律詩")),
    FormSpec("七言律诗", 8, 7, ("qilv", "七律", "七言律詩")),
)}
_FORM_NAMES = {key.lower(): f for f in FORMS.values() for key in (f.name, *f.aliases)}


def form_choices() -> str:
    return ", ".join(f"{f.name} ({f.aliases[0]})" for f in FORMS.values())


def resolve_form(name: str) -> FormSpec:
    spec = _FORM_NAMES.get(name.strip().lower()) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown form {name!r}; choose one of {form_choices()}")
    return spec


RHYME_SCHEMES = ("modern", "pingshui")    # modern: the 14 groups below (pypinyin); pingshui: 平水韵 (tonal.py)


def rhyme_scheme(rhyme: bool | str | None, tonal: bool = False) -> str | None:
    """The rhyme a request asks for: None, 'modern' (rhyme=True or 'modern') or 'pingshui' (also implied by
    tonal: regulated verse rhymes in 平水韵)."""
    if rhyme is True or rhyme == "modern":
        return "modern"
    if rhyme == "pingshui" or (tonal and not rhyme):
        return "pingshui"
    return None


def check_request(form: str | None, acrostic: str | None, rhyme: bool | str | None, tonal: bool = False) -> None:
    """Raise ValueError (one line, every problem) for a form/acrostic/rhyme/tonal request that cannot be met."""
    problems, spec = [], None
    if form is not None:
        try:
            spec = resolve_form(form)
        except ValueError as e:
            problems.append(str(e))
    if acrostic is not None:
        problems += _acrostic_problems(acrostic, spec, form is not None)
    if not (isinstance(rhyme, bool) or rhyme is None or rhyme in RHYME_SCHEMES):
        problems.append(f"rhyme must be one of {', '.join(RHYME_SCHEMES)} (or True/False), got {rhyme!r:.40}")
    scheme = rhyme_scheme(rhyme, tonal)
    if tonal and form is None:
        problems.append("tonal (平仄) needs a form: --form 五言绝句/七言绝句/五言律诗/七言律诗")
    if tonal and scheme == "modern":
        problems.append("tonal verse rhymes in 平水韵: use rhyme 'pingshui' (or leave rhyme out), not 'modern'")
    if scheme and form is None and acrostic is None and not tonal:
        problems.append("rhyme needs a form or an acrostic")
    if scheme == "modern" and not _pypinyin_installed():
        from genrt.extras import install_hint
        problems.append(f"rhyme needs the pypinyin package: {install_hint('forms')}")
    if problems:
        raise ValueError("; ".join(problems))


def _acrostic_problems(acrostic: object, spec: FormSpec | None, form_given: bool) -> list[str]:
    if not isinstance(acrostic, str):
        return [f"acrostic must be a string, got {type(acrostic).__name__}"]
    if not acrostic:
        return ["acrostic is empty"]
    bad = "".join(dict.fromkeys(ch for ch in acrostic if not is_han(ch)))
    if bad:
        return [f"acrostic must be Han characters only; not allowed: {bad!r}"]
    if spec is not None and len(acrostic) > spec.lines:
        return [f"acrostic has {len(acrostic)} characters but {spec.name} has only {spec.lines} lines"]
    if not form_given and not 2 <= len(acrostic) <= MAX_FREE_LINES:
        return [f"an acrostic without a form needs 2 to {MAX_FREE_LINES} characters (one per line), got "
                f"{len(acrostic)}; give a form for a shorter one"]
    return []


def _pypinyin_installed() -> bool:
    from importlib.util import find_spec
    return find_spec("pypinyin") is not None


@dataclass(frozen=True)
class Rules:
    """A checked request: `length` None = 5 or 7, set by the first line (acrostic without a form)."""
    lines: int
    length: int | None
    acrostic: str = ""
    rhyme: bool = False

    @classmethod
    def of(cls, form: str | None, acrostic: str | None, rhyme: bool) -> "Rules":
        """rhyme: the modern rhyme groups (True/'modern'); 平水韵 rhyme and tones are genrt.poems.verse.tonal's."""
        rhyme = rhyme_scheme(rhyme) == "modern"
        check_request(form, acrostic, rhyme)
        if form is None and acrostic is None:
            raise ValueError("a form constraint needs a form or an acrostic")
        if form is not None:
            spec = resolve_form(form)
            return cls(spec.lines, spec.length, acrostic or "", bool(rhyme))
        return cls(len(acrostic), None, acrostic, bool(rhyme))

    def end_mark(self, line: int) -> str:
        return PERIOD if line % 2 == 1 or line == self.lines - 1 else COMMA

    @property
    def max_tokens(self) -> int:
        """Body tokens of the longest poem these rules allow, <eos> included."""
        return self.lines * ((self.length or max(FREE_LENGTHS)) + 1) + 1


def poem_token_budget(form: str | None, acrostic: str | None) -> int:
    """Tokens (<eos> included) a constrained poem may need after <sos>: max_new_tokens should be at least this."""
    return Rules.of(form, acrostic, False).max_tokens


