"""`ceper clients|users|keys …`: the operator's administration of identity, straight on its database.

Straight on the database (like `ceper migrate`) rather than over the API: the first administrator has to
come from somewhere, and an operator with the database settings is trusted already. Every change is
audited like one made over the API, with the operator's login name as the actor.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from shared.roles import Role
from shared.settings import get_settings

if TYPE_CHECKING:  # the database stack is imported only by the commands that use it, so `ceper` starts fast
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from shared.audit import Actor

clients_app = typer.Typer(help="Machine clients (buyers' and laboratories' systems) and their secrets.", no_args_is_help=True)
users_app = typer.Typer(help="People who sign in to the console.", no_args_is_help=True)
keys_app = typer.Typer(help="The keys that sign access tokens.", no_args_is_help=True)

console = Console()
err = Console(stderr=True)
T = TypeVar("T")
ROLES = ", ".join(r.value for r in Role)


def _fail(message: str) -> typer.Exit:
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _operator() -> Actor:
    from shared.audit import Actor

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(f"cli:{who}", "operator")


def _run(work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Runs `work` on the identity database (migrated first, as the service would on start)."""
    from services.identity.app import SPEC
    from shared.db import create_engine, migrate, session_factory
    from shared.http import ProblemError
    from shared.logging import configure_logging

    settings = get_settings()
    # Standard output is for the answer (JSON with --json); the service's log lines go to standard error.
    configure_logging("identity", "WARNING", json=False)

    async def run() -> T:
        engine = create_engine(settings.database_url("identity"))
        try:
            if settings.should_migrate_on_start() and SPEC.migrations_dir is not None:
                await migrate(engine, SPEC.migrations_dir)
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ProblemError as problem:
        raise _fail(problem.detail) from None
    except OSError as exc:
        raise _fail(f"cannot reach the identity database: {exc}") from None


def _role(value: str) -> str:
    if value not in {r.value for r in Role}:
        raise _fail(f"unknown role {value!r}: choose one of {ROLES}")
    return value


def _read_password(confirm: bool) -> str:
    """The password from standard input: typed twice at a terminal, else the first line of the input."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Again: ") != password:
            raise _fail("the two passwords differ; nothing changed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise _fail("no password given on standard input; nothing changed")
    return password


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


# --- clients ----------------------------------------------------------------------------------------


def _client_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Machine clients")
    for column in ("client_id", "name", "role", "tenant", "created_at", "rotated_at", "revoked_at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *(str(row[c] or "-") for c in ("client_id", "name", "role", "tenant", "created_at", "rotated_at", "revoked_at"))
        )
    return table


def _show_secret(view: dict[str, Any], secret: str, as_json: bool, what: str) -> None:
    if as_json:
        _print_json({**view, "client_secret": secret})
        return
    console.print(f"{what} [bold]{view['name']}[/bold] ({view['role']}{', ' + view['tenant'] if view['tenant'] else ''})")
    console.print(f"client_id:     {view['client_id']}", markup=False, highlight=False)
    console.print(f"client_secret: {secret}", markup=False, highlight=False)
    console.print("The secret is shown this once: store it now.", style="yellow")


@clients_app.command("add")
def clients_add(
    name: str = typer.Argument(..., help="A name for the client, e.g. kai-procurement"),
    role: str = typer.Option(..., "--role", help=f"One of {ROLES}"),
    tenant: str | None = typer.Option(None, "--tenant", help="Buyer code (buyer) or member code (foundry)"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """Add a machine client; prints its id and its secret, once."""
    from services.identity import handlers

    issued = _run(lambda sessions: handlers.add_client(sessions, _operator(), name, _role(role), tenant))
    _show_secret(issued.client.public(), issued.secret, as_json, "Added client")


@clients_app.command("rotate")
def clients_rotate(
    client: str = typer.Argument(..., help="The client's name or id"),
    grace_minutes: int = typer.Option(0, "--grace-minutes", min=0, max=7 * 24 * 60, help="Keep the old secret working this long"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """Give a client a new secret; prints it, once."""
    from services.identity import handlers

    issued = _run(lambda sessions: handlers.rotate_client_secret(sessions, _operator(), client, timedelta(minutes=grace_minutes)))
    _show_secret(issued.client.public(), issued.secret, as_json, "New secret for client")
    if grace_minutes and not as_json:
        console.print(f"The previous secret keeps working until {issued.client.previous_secret_until:%Y-%m-%d %H:%M} UTC.")


@clients_app.command("revoke")
def clients_revoke(client: str = typer.Argument(..., help="The client's name or id")) -> None:
    """Revoke a client: it gets no new tokens (tokens already issued expire within minutes)."""
    from services.identity import handlers

    revoked = _run(lambda sessions: handlers.revoke(sessions, _operator(), client))
    console.print(f"Revoked client {revoked.name} ({revoked.client_id}).", markup=False, highlight=False)


@clients_app.command("list")
def clients_list(as_json: bool = typer.Option(False, "--json", help="One JSON object per line")) -> None:
    """List the machine clients (never their secrets)."""
    from services.identity import handlers

    rows = [c.public() for c in _run(handlers.list_clients)]
    if as_json:
        for row in rows:
            _print_json(row)
    elif not rows:
        console.print("No clients yet: add one with `ceper clients add NAME --role buyer --tenant KAI`.")
    else:
        console.print(_client_table(rows))


# --- people -----------------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    username: str = typer.Argument(..., help="The name the person signs in with, e.g. siti.planner"),
    role: str = typer.Option(..., "--role", help=f"One of {ROLES}"),
    tenant: str | None = typer.Option(None, "--tenant", help="Member code for a foundry user"),
) -> None:
    """Add a person; the password is read from standard input (asked twice at a terminal)."""
    from services.identity import handlers

    _role(role)
    password = _read_password(confirm=True)
    person = _run(lambda sessions: handlers.add_person(sessions, _operator(), username, role, tenant, password))
    console.print(f"Added {person.username} ({person.role.value}{', ' + person.tenant if person.tenant else ''}).", markup=False)


@users_app.command("disable")
def users_disable(username: str = typer.Argument(...)) -> None:
    """Disable a person: no more sign-ins."""
    from services.identity import handlers

    person = _run(lambda sessions: handlers.disable(sessions, _operator(), username))
    console.print(f"Disabled {person.username}.", markup=False)


@users_app.command("reset-password")
def users_reset_password(username: str = typer.Argument(...)) -> None:
    """Set a person's password, read from standard input."""
    from services.identity import handlers

    password = _read_password(confirm=True)
    person = _run(lambda sessions: handlers.reset_password(sessions, _operator(), username, password))
    console.print(f"New password set for {person.username}.", markup=False)


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json", help="One JSON object per line")) -> None:
    """List the people (never their passwords)."""
    from services.identity import handlers

    rows = [p.public() for p in _run(handlers.list_people)]
    if as_json:
        for row in rows:
            _print_json(row)
        return
    if not rows:
        console.print("No people yet: add one with `ceper users add NAME --role admin`.")
        return
    table = Table(title="People")
    for column in ("username", "role", "tenant", "created_at", "password_changed_at", "disabled_at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *(str(row[c] or "-") for c in ("username", "role", "tenant", "created_at", "password_changed_at", "disabled_at"))
        )
    console.print(table)


# --- signing keys -----------------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate() -> None:
    """A new key signs from now on; the old one stays in the JWKS until the tokens it signed have expired."""
    from services.identity import handlers
    from services.identity.signing import KeyMaterialError

    try:
        keyring = handlers.Keyring(get_settings())
    except KeyMaterialError as exc:
        raise _fail(str(exc)) from None
    kid, retired = _run(lambda sessions: handlers.rotate_signing_key(sessions, keyring, _operator()))
    console.print(f"Signing with {kid}; retired {', '.join(retired) or 'none'}.", markup=False, highlight=False)


@keys_app.command("list")
def keys_list() -> None:
    """The published signing keys: the active one and those whose tokens may still be in use."""
    from services.identity import handlers

    settings = get_settings()
    keys = _run(lambda sessions: handlers.published_signing_keys(sessions, settings))
    for key in keys:
        state = "active" if key.active else f"retired {key.retired_at:%Y-%m-%d %H:%M:%S} UTC"
        console.print(f"{key.kid}  {state}{'  (from file)' if key.from_file else ''}", markup=False, highlight=False)
