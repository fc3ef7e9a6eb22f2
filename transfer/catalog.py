"""The matter catalog (the notice's annex) and the recommendation it supports. Pure: no I/O.

``recommend`` answers "which platform, which category, emergency or not" for a matter code or a
free-text description (R14, used by AGI ``route`` and the sidecar):

1. An emergency description (life, property or public safety in danger, police needed on site)
   is flagged ``emergency`` and goes to 110 whatever the category (R4; the annex's exception to
   every category 110 passes to 12345).
2. A known matter code gives its category's platform: ``to_110`` categories belong to 110,
   ``to_12345`` categories to 12345.
3. A description is matched against every category's examples (substrings: the annex's Chinese
   terms) and keywords (whole English words, case-insensitive); the category with the longest
   total match wins, ties broken by the number of matches, then by catalog order.
4. Anything else gets no recommendation (``platform is None``) with the reason: that is an
   answer, not an error.

Limits, stated plainly: this is keyword matching. It does not understand negation ("no one is
hurt" contains "hurt"), spelling variants, or descriptions that use none of the listed terms. An
agent's judgement stays the authority; the recommendation is a hint on the desktop and in the
dialplan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# In the annex's order: first what 110 passes to 12345, then what 12345 passes to 110.
PLATFORM_OF_SECTION = {"to_12345": "12345", "to_110": "110"}


class CatalogError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    gloss: str
    platform: str
    examples: tuple[str, ...]
    keywords: tuple[str, ...]
    also_notify_departments: bool = False
    exception: str | None = None


@dataclass(frozen=True)
class Catalog:
    categories: tuple[Category, ...]
    emergency_examples: tuple[str, ...]
    emergency_keywords: tuple[str, ...]
    by_code: dict[str, Category] = field(default_factory=dict)


@dataclass(frozen=True)
class Recommendation:
    platform: str | None        # "110", "12345", or None: no recommendation
    category: str | None
    emergency: bool
    reason: str
    matched: tuple[str, ...] = ()
    notify_departments: bool = False


def parse(data: dict) -> Catalog:
    problems: list[str] = []
    categories: list[Category] = []

    def strings(node: dict, path: str, key: str, required: bool = True) -> tuple[str, ...]:
        value = node.get(key, None if required else [])
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            problems.append(f"{path}.{key}: expected a list of non-empty strings")
            return ()
        return tuple(value)

    for section, platform in PLATFORM_OF_SECTION.items():
        entries = data.get(section)
        if not isinstance(entries, list) or not entries:
            problems.append(f"{section}: expected a non-empty list of categories")
            continue
        for i, entry in enumerate(entries):
            path = f"{section}[{i}]"
            if not isinstance(entry, dict):
                problems.append(f"{path}: expected a table")
                continue
            unknown = set(entry) - {"code", "name", "gloss", "examples", "keywords",
                                    "also_notify_departments", "exception"}
            for key in sorted(unknown):
                problems.append(f"{path}.{key}: unknown key")
            code = entry.get("code")
            if not isinstance(code, str) or not re.fullmatch(r"[a-z][a-z0-9_]{1,40}", code):
                problems.append(f"{path}.code: {code!r} is not a matter code (a-z, 0-9, _)")
                continue
            for key in ("name", "gloss"):
                if not isinstance(entry.get(key), str) or not entry[key]:
                    problems.append(f"{path}.{key}: missing")
            notify = entry.get("also_notify_departments", False)
            if not isinstance(notify, bool):
                problems.append(f"{path}.also_notify_departments: expected true or false")
            categories.append(Category(
                code=code, name=entry.get("name", ""), gloss=entry.get("gloss", ""),
                platform=platform, examples=strings(entry, path, "examples"),
                keywords=tuple(k.lower() for k in strings(entry, path, "keywords", False)),
                also_notify_departments=notify is True, exception=entry.get("exception")))
    codes = [c.code for c in categories]
    for code in sorted({c for c in codes if codes.count(c) > 1}):
        problems.append(f"{code}: matter code used twice")
    emergency = data.get("emergency")
    em_examples: tuple[str, ...] = ()
    em_keywords: tuple[str, ...] = ()
    if isinstance(emergency, dict):
        em_examples = strings(emergency, "emergency", "examples")
        em_keywords = tuple(k.lower() for k in strings(emergency, "emergency", "keywords", False))
    else:
        problems.append("emergency: expected a table")
    if problems:
        raise CatalogError(problems)
    return Catalog(categories=tuple(categories), emergency_examples=em_examples,
                   emergency_keywords=em_keywords, by_code={c.code: c for c in categories})


def _matches(text: str, lowered: str, examples: tuple[str, ...],
             keywords: tuple[str, ...]) -> list[str]:
    found = [e for e in examples if e in text]
    found += [k for k in keywords if re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", lowered)]
    return found


def recommend(catalog: Catalog, code: str | None = None, text: str | None = None) -> Recommendation:
    text = (text or "").strip()
    lowered = text.lower()
    emergency_hits = _matches(text, lowered, catalog.emergency_examples,
                              catalog.emergency_keywords) if text else []
    emergency = bool(emergency_hits)

    category: Category | None = None
    matched: list[str] = []
    if code:
        category = catalog.by_code.get(code)
        if category is None and not emergency:
            return Recommendation(None, None, False, f"no recommendation: unknown matter code {code!r}")
    elif text:
        best: tuple[int, int, int] | None = None
        for index, cat in enumerate(catalog.categories):
            hits = _matches(text, lowered, cat.examples, cat.keywords)
            if not hits:
                continue
            score = (sum(len(h) for h in hits), len(hits), -index)
            if best is None or score > best:
                best, category, matched = score, cat, hits

    if emergency:
        return Recommendation(
            "110", category.code if category else None, True,
            "emergency: danger to life, property or public safety; 110 dispatches first"
            + (f" (category {category.code})" if category else ""),
            tuple(emergency_hits + matched),
            notify_departments=bool(category and category.also_notify_departments))
    if category is None:
        return Recommendation(None, None, False,
                              "no recommendation: nothing in the description matches the catalog"
                              if text else "no recommendation: neither a code nor a description")
    how = f"matter code {code}" if code else "matched " + ", ".join(matched)
    return Recommendation(category.platform, category.code, False,
                          f"{category.name} ({category.gloss}): {how}", tuple(matched),
                          notify_departments=category.also_notify_departments)
