"""`ceper keycloak fetch`: the Keycloak distribution the interoperability test runs, fetched once into the cache."""

from __future__ import annotations

import typer
from rich.console import Console

from .keycloak import KEYCLOAK_VERSION, KeycloakError, distribution, java_home

app = typer.Typer(help="Keycloak, the external identity provider the services are tested against.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@app.command()
def fetch() -> None:
    """Download and unpack Keycloak once into the user cache (needs Maven; running it needs Java 21+)."""
    try:
        with console.status("Checking the Keycloak distribution…") as status:
            home = distribution(progress=status.update)
    except KeycloakError as error:
        err_console.print(str(error), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"Keycloak {KEYCLOAK_VERSION} in {home}", highlight=False)
    try:
        console.print(f"runs on the JDK in {java_home()}", highlight=False)
    except KeycloakError as error:
        err_console.print(f"warning: {error}", style="yellow", markup=False, highlight=False, soft_wrap=True)
