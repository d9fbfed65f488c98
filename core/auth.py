"""Who may use the app: nobody needs to sign in on this machine alone (127.0.0.1); on any other address, sign-in
is required, through Streamlit's `st.login` (OpenID Connect, configured in .streamlit/secrets.toml) or a shared
password (SENTIMENT_LAB_PASSWORD). `python -m core app` checks this before the server starts; app.py checks it again
for a server started some other way. Never imports streamlit: app.py draws the sign-in, this decides.

Near the bottom of core's layers: it imports only core.paths.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import threading
import time
import tomllib
from pathlib import Path

from .paths import PROJECT_ROOT

PASSWORD_ENV = "SENTIMENT_LAB_PASSWORD"
NO_AUTH_ENV = "SENTIMENT_LAB_NO_AUTH"  # set by `python -m core app --no-auth`: shared without sign-in, on purpose
SECRETS = PROJECT_ROOT / ".streamlit" / "secrets.toml"
OIDC_KEYS = ("client_id", "client_secret", "server_metadata_url")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: only this machine can connect. 0.0.0.0 and :: listen on every address."""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whoever resolves it can reach it


def oidc_configured(secrets: Path = SECRETS) -> bool:
    """secrets.toml's [auth] has what st.login needs: redirect_uri, cookie_secret, and a provider's client id,
    secret and metadata URL (in [auth] itself, or in an [auth.<provider>] table)."""
    try:
        auth = tomllib.loads(Path(secrets).read_text(encoding="utf-8")).get("auth") or {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    if not (auth.get("redirect_uri") and auth.get("cookie_secret")):
        return False
    providers = [auth] + [v for v in auth.values() if isinstance(v, dict)]
    return any(all(p.get(k) for k in OIDC_KEYS) for p in providers)


def sign_in_mode(host: str, no_auth: bool | None = None, secrets: Path = SECRETS) -> str:
    """"none" (loopback), "oidc", "password" or "open" (shared without sign-in, asked for with --no-auth); a
    ValueError, in one line, when the app would be shared with nobody asked to sign in."""
    if is_loopback(host):
        return "none"
    if oidc_configured(secrets):
        return "oidc"
    if os.environ.get(PASSWORD_ENV):
        return "password"
    if no_auth if no_auth is not None else os.environ.get(NO_AUTH_ENV) == "1":
        return "open"
    raise ValueError(f"sign-in: the app would listen on {host}, where anyone who reaches the port could train, stop "
                     f"and delete runs; set {PASSWORD_ENV}, configure [auth] in .streamlit/secrets.toml (st.login), "
                     "or pass --no-auth (make run NO_AUTH=1) to share it without sign-in on purpose")


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def password_matches(given: str, expected: str | None = None) -> bool:
    """Constant time: both sides are hashed to the same length first, so neither a prefix nor the length leaks."""
    expected = os.environ.get(PASSWORD_ENV, "") if expected is None else expected
    return bool(expected) and hmac.compare_digest(_digest(given or ""), _digest(expected))


class Throttle:
    """Each failed attempt from one client waits longer before it is answered: 1 s, 2 s, 4 s, ... up to `cap`,
    counted over the last `window` seconds. Guessing a password becomes slow; a typo costs a second."""

    def __init__(self, cap: float = 30.0, window: float = 900.0):
        self.cap, self.window = cap, window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def delay(self, client: str) -> float:
        """How long the next answer to `client` waits, from its recent failures."""
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if time.time() - t < self.window]
            self._failures[client] = recent
        return 0.0 if not recent else min(self.cap, 2.0 ** (len(recent) - 1))

    def failed(self, client: str) -> None:
        with self._lock:
            self._failures.setdefault(client, []).append(time.time())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def check_password(given: str, client: str, throttle: Throttle, sleep=time.sleep) -> bool:
    """The password compared, after this client's wait for its earlier failures; a failure is counted."""
    sleep(throttle.delay(client))
    if password_matches(given):
        throttle.succeeded(client)
        return True
    throttle.failed(client)
    return False
