"""`valuetune serve`: the OpenAI-compatible API on loopback by default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from valuetune.cli.common import CliState, state
from valuetune.errors import ValuetuneError

if TYPE_CHECKING:
    from valuetune.llm.base import LLMBackend
    from valuetune.server.web.rendering import WebServices

EMBEDDED_NAME = "smollm2"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _loader(path: Path | None, home: Path) -> Callable[[], LLMBackend]:
    def load() -> LLMBackend:
        from valuetune.llm.local import TransformersBackend

        if path is None:
            return TransformersBackend.embedded(home)
        return TransformersBackend.from_directory(path)

    return load


def serve_command(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        help="Serve a local model directory as NAME=DIR (repeatable); "
        f"the embedded model is served as `{EMBEDDED_NAME}`.",
    ),
    embedded: bool = typer.Option(
        True, "--embedded/--no-embedded", help=f"Serve the embedded model as `{EMBEDDED_NAME}`."
    ),
    artifacts: list[Path] | None = typer.Option(
        None,
        "--artifacts",
        help="Another directory of artifacts built by `valuetune tune` (repeatable; the "
        "home's artifacts/ is always searched).",
    ),
    adapter_cache: int = typer.Option(
        16, "--adapter-cache", min=1, help="Adapters and steering sets kept loaded (LRU)."
    ),
    upstream: str | None = typer.Option(
        None,
        "--upstream",
        help="Proxy mode: generate on this OpenAI-compatible server (its /v1 URL, e.g. vLLM "
        "with the adapters from `valuetune export vllm`); no model is loaded here.",
    ),
    upstream_key: str | None = typer.Option(
        None,
        "--upstream-key",
        envvar="VALUETUNE_UPSTREAM_KEY",
        help="API key for the upstream (better: the VALUETUNE_UPSTREAM_KEY variable).",
    ),
    pages: bool = typer.Option(
        True, "--web/--no-web", help="Serve the web pages (survey, results, playground, admin)."
    ),
    secure_cookies: bool = typer.Option(
        False,
        "--secure-cookies",
        envvar="VALUETUNE_SECURE_COOKIES",
        help="Mark cookies Secure: set this when users reach the site over HTTPS.",
    ),
) -> None:
    """Serve the web app and the OpenAI-compatible API: chat completions aligned to each
    request's token."""
    import uvicorn

    from valuetune.server.app import create_app
    from valuetune.server.auth import Gate
    from valuetune.server.host import ModelHost
    from valuetune.server.proxy import Upstream
    from valuetune.store.apikeys import ApiKeyStore
    from valuetune.tune.catalog import ArtifactCatalog

    cli = state(ctx)
    keys = ApiKeyStore(cli.database())
    beyond_loopback = host not in LOOPBACK
    if beyond_loopback and not keys.any_active():
        raise ValuetuneError(
            f"refusing to listen on {host} with no API key: beyond loopback every request "
            "needs one. Create one with `valuetune apikey create --name NAME` first."
        )
    home = cli.settings.home
    models = {EMBEDDED_NAME: _loader(None, home)} if embedded and not upstream else {}
    for spec in model or []:
        name, sep, where = spec.partition("=")
        if not sep or not name or "@" in name or not Path(where).is_dir():
            raise ValuetuneError(f"--model wants NAME=DIR with an existing directory, got {spec!r}")
        models[name] = _loader(Path(where), home)
    if upstream and model:
        raise ValuetuneError("--model and --upstream exclude each other: the upstream generates")
    if upstream and not upstream.startswith(("http://", "https://")):
        raise ValuetuneError(f"--upstream wants an http(s) URL ending in /v1, got {upstream!r}")
    if not models and not upstream and not pages:
        raise ValuetuneError("nothing to serve: give --model NAME=DIR or drop --no-embedded")
    gate = Gate(keys, cli.token_store(), keys_always=beyond_loopback)
    for extra in artifacts or []:
        if not extra.is_dir():
            raise ValuetuneError(f"--artifacts {extra}: no such directory")
    catalog = ArtifactCatalog([cli.settings.artifacts, *(artifacts or [])])
    model_host = ModelHost(models, cli.tokens(), cli.aliases(), catalog, cache_size=adapter_cache)
    proxy = Upstream(upstream, upstream_key) if upstream else None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    web = _web_services(cli, f"http://{shown}:{port}/v1", secure_cookies) if pages else None
    app = create_app(cli.settings, model_host, gate, proxy, web)
    what = f"the models of {upstream}" if upstream else ", ".join(sorted(models))
    typer.echo(f"valuetune: serving {what} on http://{host}:{port}/v1", err=True)
    if web is not None:
        password = web.admin.create_first()
        if password:
            typer.echo(
                "valuetune: created the dashboard administrator `admin`; its password, "
                f"shown only now: {password}\n  (change it with `valuetune admin password`)",
                err=True,
            )
        typer.echo(f"valuetune: open http://{shown}:{port}/ in a browser", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _web_services(cli: CliState, api_base: str, secure_cookies: bool) -> WebServices:
    try:
        from valuetune.server.web.rendering import WebServices
    except ImportError as exc:
        raise ValuetuneError(
            f"the web pages need the web extra ({exc.name} is missing): "
            "pip install 'valuetune[web]', or serve the API alone with --no-web"
        ) from None
    from valuetune.server.web.visitor import Signer
    from valuetune.store.admin import AdminStore
    from valuetune.store.demographics import DemographicsStore
    from valuetune.values.items import load_item_bank

    database = cli.database()
    return WebServices(
        survey=cli.store(),
        demographics=DemographicsStore(database),
        tokens=cli.tokens(),
        token_store=cli.token_store(),
        aliases=cli.aliases(),
        admin=AdminStore(database),
        signer=Signer(cli.key_ring().secret("session")),
        bank=load_item_bank(),
        secure_cookies=secure_cookies,
        api_base=api_base,
    )
