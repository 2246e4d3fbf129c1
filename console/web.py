"""`workdeck web`: the console in a browser, through textual-serve.

Each browser tab that signs in gets a console process of its own (the very console of
the terminal, drawn by Textual's web driver), run as the person who signed in: signing in
takes one of their tokens (`workdeck token create`), and their console sends it with every
request, so the server judges the browser as it judges that person anywhere else. The
page is plain HTTP on loopback only: from elsewhere, through an SSH tunnel.

No console outlives its tab or this server: closing the tab quits it (killed when it does
not quit), stopping the server stops them all, and a console whose server was killed ends
by itself (console/app.py watches its parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import logging
import os
import re
import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from console.client import SOCKET_TOKEN_ENV

if TYPE_CHECKING:
    from console.client import Target

log = logging.getLogger(__name__)

SESSION_COOKIE = "workdeck_session"
QUIT_GRACE_S = 5.0  # a console asked to quit has this long before it is killed
PARENT_ENV = "WORKDECK_WEB_PARENT"  # the console's watch on this server (console/app.py)


@dataclass
class Session:
    token: str | None  # None: the consoles are who runs `workdeck web` (its sign-in link)
    person: str


class ConsoleProcess(AppService):
    """One tab's console: run with the token of who signed in; stopped for certain."""

    def __init__(self, command: str, *, token: str | None, **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self.token = token

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width, height)
        if self.token is not None:
            # Whichever way the console reaches the server (console/client.py).
            environment["WORKDECK_TOKEN"] = environment[SOCKET_TOKEN_ENV] = self.token
        environment[PARENT_ENV] = str(os.getpid())
        return environment

    async def stop(self) -> None:
        """Ask the console to quit; kill it when it has not within QUIT_GRACE_S (textual-
        serve's own stop waits for it forever, and never kills it)."""
        process, task = self._process, self._task
        self._task = None
        if task is not None:
            await self._download_manager.cancel_app_downloads(
                app_service_id=self.app_service_id)
            with contextlib.suppress(Exception):
                await self.send_meta({"type": "quit"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), QUIT_GRACE_S)
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class WebConsole(Server):
    """textual-serve's server, with a sign-in in front of it and a console per tab that
    acts as the person signed in."""

    def __init__(self, target: Target, host: str, port: int, *, yours: str, you: str) -> None:
        options = [sys.executable, "-m", "console.cli", "--data-dir", str(target.data_dir.root)]
        if target.profile is not None:  # its pinned certificates come with it
            options += ["--server", target.profile.name]
        elif target.server_url:
            options += ["--server", ",".join(target.addresses) or target.server_url]
        # `exec`: the console is this server's child, not a shell's, so it can watch it.
        super().__init__("exec " + shlex.join(options), host=host, port=port,
                         title="Workdeck")
        self.target = target
        self.yours, self.you = yours, you  # the printed link's secret, and whose it is
        self.sessions: dict[str, Session] = {}
        self.consoles: set[ConsoleProcess] = set()

    # -------------------------------------------------------- the server's life

    def initialize_logging(self) -> None:
        # What goes wrong, on stderr; not textual-serve's banner and request log.
        logging.basicConfig(level=logging.WARNING, format="workdeck web: %(message)s")

    async def on_startup(self, app: web.Application) -> None:
        """The command says where it serves (console/commands/web.py)."""

    async def on_shutdown(self, app: web.Application) -> None:
        await asyncio.gather(*(console.stop() for console in list(self.consoles)))

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        # textual-serve's page, without the font it fetches from Google: an operator's
        # console calls no third party (the page has its own font).
        page = re.sub(r"<link[^>]*fonts\.googleapis\.com[^>]*>", "",
                      (Path(self.templates_path) / "app_index.html").read_text())
        aiohttp_jinja2.setup(app, loader=jinja2.DictLoader({"app_index.html": page}))
        app.router.add_get("/login", self.handle_login)
        app.router.add_post("/login", self.handle_login)
        app.router.add_get("/logout", self.handle_logout)
        return app

    # -------------------------------------------------------- signing in

    def session_of(self, request: web.Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))

    async def still_signed_in(self, request: web.Request) -> tuple[Session | None, str]:
        """The request's session while its token still works ((None, why) once it was
        revoked or expired: the session goes, and the sign-in page says why)."""
        session = self.session_of(request)
        if session is None or session.token is None:
            return session, ""
        person, refusal = await self.check_token(session.token)
        if person is None:
            self.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
            return None, refusal
        return session, ""

    async def handle_login(self, request: web.Request) -> web.StreamResponse:
        """GET /login?token=T (the link `workdeck web` prints) or the form's POST: the
        printed link's secret, or a person's token tried on the server; a session cookie
        for it, or the form again with the server's sentence."""
        token = request.query.get("token", "")
        if request.method == "POST":
            token = str((await request.post()).get("token", ""))
        token = token.strip()
        if not token:
            return _sign_in_page("")
        if hmac.compare_digest(token.encode(), self.yours.encode()):
            signed_in = Session(None, self.you)
        else:
            person, refusal = await self.check_token(token)
            if person is None:
                return _sign_in_page(refusal, status=401)
            signed_in = Session(token, person)
        session = secrets.token_urlsafe(32)
        self.sessions[session] = signed_in
        response = web.HTTPSeeOther("/")  # the token leaves the address bar
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="Strict",
                            path="/")
        return response

    async def handle_logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response = web.HTTPSeeOther("/")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def check_token(self, token: str) -> tuple[str | None, str]:
        """(the person the token names, "") or (None, the server's sentence)."""
        from console.client import ApiError, AsyncClient

        client = AsyncClient(self.target)
        try:
            you = await client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
        except ApiError as exc:
            return None, str(exc)
        finally:
            await client.aclose()
        return str(you["name"]), ""

    # -------------------------------------------------------- the page and its console

    async def handle_index(self, request: web.Request) -> Any:
        session, refusal = await self.still_signed_in(request)
        if session is None:
            return _sign_in_page(refusal, status=401 if refusal else 200)
        # The page's own address, as the browser reached it: through an SSH tunnel on
        # another port, its console's websocket must go there too, not to --listen.
        self.public_url = f"http://{request.host}"
        return await super().handle_index(request)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's, with a console that acts as who signed in, refused to anyone
        who has not, and to a page of another site (the browser sends the cookie only
        from this one; the origin is checked as well)."""
        session, _refusal = await self.still_signed_in(request)
        origin = request.headers.get("Origin")
        if session is None or (origin and origin.split("://", 1)[-1] != request.host):
            raise web.HTTPForbidden(text="Sign in first.")
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        console: ConsoleProcess | None = None
        try:
            await websocket.prepare(request)
            console = ConsoleProcess(
                self.command, token=session.token, write_bytes=websocket.send_bytes,
                write_str=websocket.send_str, close=websocket.close,
                download_manager=self.download_manager, debug=self.debug)
            self.consoles.add(console)
            await console.start(width, height)
            await self._process_messages(websocket, console)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception:
            log.exception("a browser's console failed")
        finally:
            if console is not None:
                await console.stop()
                self.consoles.discard(console)
        return websocket


def _sign_in_page(refusal: str, status: int = 200) -> web.Response:
    said = f'<p class="refusal">{html.escape(refusal)}</p>' if refusal else ""
    return web.Response(status=status, content_type="text/html", text=f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Workdeck: sign in</title>
<style>
body {{ background: #0c181f; color: #e8eef2; font-family: monospace; display: flex;
       align-items: center; justify-content: center; height: 100vh; margin: 0; }}
form {{ background: #12232d; padding: 2em 3em; max-width: 40em; }}
input {{ width: 100%; font-family: monospace; padding: .5em; margin: .5em 0 1em; }}
button {{ padding: .6em 2em; background: #5e0ba7; color: #fff; border: none; }}
.refusal {{ color: #ff8a80; }}
</style></head>
<body><form method="post" action="/login">
<h2>Workdeck</h2>
<p>Sign in with one of your tokens: <code>workdeck token create --label browser</code>
prints one. The console then acts as you, with your roles.</p>
{said}
<label>Token <input type="password" name="token" autofocus autocomplete="off"></label>
<button type="submit">Sign in</button>
</form></body></html>""")
