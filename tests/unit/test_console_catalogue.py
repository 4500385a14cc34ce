"""Every visible string of the console is in the Indonesian catalogue, translated: extract with pybabel as a
translator would, and fail on a new or changed string nobody translated yet (see docs/console.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "services" / "console"


def extract(into: Path) -> list[str | tuple[str, ...]]:
    pot = into / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(CONSOLE / "babel.cfg"),
         "-k", "text", "-k", "plural:1,2", "-k", "N_", "--no-location", "-o", str(pot), "."],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    with pot.open("rb") as source:
        return [m.id for m in read_po(source) if m.id]


def catalogue(locale: str) -> Catalog:
    with (CONSOLE / "locale" / locale / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source, locale=locale)


def test_every_visible_string_is_translated_into_indonesian(tmp_path):
    extracted = extract(tmp_path)
    assert len(extracted) > 300  # the pages, the sentences, the labels and the charts
    indonesian = catalogue("id")
    untranslated = []
    for msgid in extracted:
        message = indonesian.get(msgid)
        strings = () if message is None else (message.string if isinstance(message.string, tuple) else (message.string,))
        if message is None or message.fuzzy or not all(strings):
            untranslated.append(msgid)
    assert not untranslated, f"add these to services/console/locale/id/LC_MESSAGES/messages.po: {untranslated}"


def test_translations_keep_every_placeholder():
    problems = [(message.id, errors) for message, errors in catalogue("id").check() if errors]
    assert not problems


def test_the_english_catalogue_lists_the_same_messages():
    english = {m.id for m in catalogue("en") if m.id}
    indonesian = {m.id for m in catalogue("id") if m.id}
    assert english == indonesian
