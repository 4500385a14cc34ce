"""Who is using the console, and in which language: the one place a page learns "the current person".

Until sign-in exists, everyone is the anonymous dev person below with an admin's view. Sign-in replaces
`current_person` alone (session cookie → token → role and tenant); every page and the live stream already
ask it and show only what that person may see.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .domain import ADMIN, Person
from .i18n import Translator, pick_locale

LANGUAGE_COOKIE = "ceper_lang"
DEV_PERSON = Person(subject="dev", name="dev", role=ADMIN)


async def current_person(request: Request) -> Person:
    return DEV_PERSON


def authorization_of(request: Request) -> str | None:
    """The caller's token, passed on to the services as it came."""
    return request.headers.get("authorization")


def translator_of(request: Request) -> Translator:
    return Translator(pick_locale(request.cookies.get(LANGUAGE_COOKIE)))


CurrentPerson = Annotated[Person, Depends(current_person)]
Language = Annotated[Translator, Depends(translator_of)]
