"""Sentiment Transfer Lab: the Streamlit router. Pages live in pages/, all work in core/."""

from __future__ import annotations

import os

import streamlit as st

from core import jobs
from core.auth import Throttle, check_password, sign_in_mode
from core.backends import describe, submitted, summary
from core.config import OFFLINE_DATA
from core.modeling import device_summary
from core.paths import hub_reachable, resolve_local
from core.runs import ACTIVE_STATES
from core.tracking import set_tracking, tracking_on, tracking_uri
from pages.common import PAGES, ROUTED_KEY, STATE_ICONS, WANTED_KEY, live, runs_table

st.set_page_config(page_title="Sentiment Transfer Lab", page_icon="🔁", layout="wide")


@st.cache_resource
def failed_sign_ins() -> Throttle:  # one per server: every session's failures count against their client
    return Throttle()


def sign_in() -> str:
    """On any address but 127.0.0.1, nothing of the lab until the visitor has signed in (core/auth.py decides how).
    Returns who is signed in ("" where nobody needs to)."""
    try:
        mode = sign_in_mode(st.get_option("server.address") or "0.0.0.0")  # no address: every interface
    except ValueError as exc:  # a server started around `python -m core app`, shared with nobody asked
        st.error(str(exc), icon="🔒")
        st.session_state.pop(ROUTED_KEY, None)
        st.stop()
    if mode in ("none", "open"):
        return ""
    if mode == "oidc":
        if st.user.is_logged_in:
            return str(st.user.get("email") or st.user.get("name") or "signed in")
        st.title("Sentiment Transfer Lab")
        st.button("Sign in", on_click=st.login, type="primary", key="oidc_sign_in")
        st.session_state.pop(ROUTED_KEY, None)  # a page run on its own goes through here again (through_router)
        st.stop()
    if st.session_state.get("signed_in"):
        return "password"
    st.title("Sentiment Transfer Lab")
    with st.form("sign_in"):
        password = st.text_input("Password", type="password", key="sign_in_password")
        if st.form_submit_button("Sign in", type="primary"):
            ip = st.context.ip_address  # None behind some proxies: their visitors then share one count
            if check_password(password, ip if isinstance(ip, str) else "unknown", failed_sign_ins()):
                st.session_state["signed_in"] = True
                st.rerun()
            st.error("Wrong password.", icon="🔒")
    st.session_state.pop(ROUTED_KEY, None)
    st.stop()


def sign_out(who: str) -> None:
    st.caption(f"Signed in: {who}" if who != "password" else "Signed in with the lab's password")
    if st.button("Sign out", key="sign_out"):
        if who == "password":
            st.session_state.pop("signed_in", None)
            st.rerun()
        st.logout()


@st.cache_data(ttl=60, show_spinner=False)
def machine() -> dict:
    info = device_summary()
    info["hub"] = hub_reachable(max_age=60)
    offline = resolve_local(OFFLINE_DATA)
    info["datasets"] = sorted(p.name for p in offline.iterdir() if p.is_dir()) if offline else []
    try:
        from core.modeling import offline_model_path

        offline_model_path()
        info["models"] = ["minilm-offline"]
    except ValueError:
        info["models"] = []
    return info


def sidebar(pages: list, who: str) -> None:
    info = machine()
    with st.sidebar:
        for p in pages:  # our own links: Streamlit's automatic list would also show pages/common.py
            st.page_link(p, label=p.title, icon=p.icon)
        st.markdown("### Machine")
        if info["device"] == "cuda":
            st.write(f"GPU: {info['gpu']} × {info['gpu_count']} ({info['gpu_memory_gb']} GB)")
        else:
            st.write(f"CPU only: {info['cpu_count']} cores, {info['memory_gb']} GB RAM")
        st.write("Hugging Face Hub: " + ("reachable ✅" if info["hub"] else "unreachable (offline) ⚠️"))
        st.caption("Offline data: " + (", ".join(info["datasets"]) or "none") + " · offline models: "
                   + (", ".join(info["models"]) or "none"))
        tracking()
        st.markdown("### Queue")
        backend()
        busy = bool(active_runs())
        live(queue, busy)()  # live while something runs
        if who:
            sign_out(who)


def tracking() -> None:
    """The lab-wide MLflow switch: runs started from now on are mirrored (or not)."""
    forced = os.environ.get("SENTIMENT_LAB_TRACKING")
    on = st.toggle("Track runs in MLflow", value=tracking_on(), key="tracking_on", disabled=bool(forced),
                   help=f"Mirror every run into {tracking_uri()} (its own folder stays the record). "
                        + (f"Set by SENTIMENT_LAB_TRACKING={forced}." if forced else "`make mlflow` shows them."))
    if not forced and on != tracking_on():
        set_tracking(on)


@st.cache_data(ttl=10, show_spinner=False)
def cluster(backend: str | None, address: str | None) -> dict:  # cached per backend and address
    return describe()


def backend() -> None:
    """Where queued runs go: this machine, or a Ray cluster (its address and what it has free)."""
    info = cluster(os.environ.get("SENTIMENT_LAB_BACKEND"), os.environ.get("RAY_ADDRESS"))
    text = summary(info).removeprefix("backend: ")
    if "error" in info:
        st.warning(f"Runs go to **{info['backend']}**: {info['error']}")
    else:
        st.caption(f"Runs go to {text}")
    unsent = [r for r in jobs.queued_runs() if not submitted(r.status())] if info["backend"] == "ray" else []
    if unsent and st.button(f"Send {len(unsent)} queued run(s) to the cluster", key="send_queued",
                            help="Runs queued while the cluster could not be reached wait here until sent."):
        try:
            jobs.send_queued()
            cluster.clear()
        except ValueError as exc:
            st.error(str(exc))


def active_runs() -> list[dict]:
    return [r for r in runs_table() if r["state"] in ACTIVE_STATES and not r.get("parent")]


def queue() -> None:
    active = active_runs()
    if not active:
        st.caption("Nothing running or queued.")
    for r in active:  # the progress first: a narrow sidebar cuts the end of a label, and the id's end is least needed
        progress = f"{round(100 * r['progress'])}% · " if r.get("progress") is not None else ""
        st.page_link("pages/runs.py", label=f"{STATE_ICONS[r['state']]} {progress}{r['id']}",
                     query_params={"run": r["id"]}, help=f"{r['id']}: {r['state']}")


who = sign_in()
pages = [st.Page(file, title=title, icon=icon, url_path=url, default=not url) for file, title, icon, url in PAGES]
page = st.navigation(pages, position="hidden")
st.session_state[ROUTED_KEY] = True  # pages check it: see pages.common.through_router
wanted = st.session_state.pop(WANTED_KEY, None)
if wanted is not None and wanted[0] != page.url_path:
    target = next((p for p in pages if p.url_path == wanted[0]), None)
    if target is not None:
        st.switch_page(target, query_params=wanted[1])
sidebar(pages, who)
page.run()
