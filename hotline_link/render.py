"""Render the Asterisk configuration of one centre from the templates in ``dialplan/``.

The service config is the single source of the keys, agents, targets and ARI credentials; the
templates hold everything an admin would tune by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from contracts.sip import HEADERS
from contracts.vocab import DecisionAction

from .settings import Hotline, Settings, project_home

MODULES = [
    # core plumbing
    "res_timing_timerfd.so", "res_sorcery_config.so", "res_sorcery_memory.so",
    "res_sorcery_astdb.so", "pbx_config.so", "func_channel.so", "func_callerid.so",
    "func_strings.so", "func_global.so", "func_logic.so", "func_uuid.so", "func_hangupcause.so",
    "func_dialplan.so",
    "app_dial.so", "app_playback.so", "app_echo.so", "app_stasis.so",
    "app_verbose.so", "app_exec.so", "app_stack.so", "app_queue.so", "app_mixmonitor.so",
    "res_speech.so", "res_agi.so", "res_musiconhold.so",
    # call detail records (degraded-mode calls are counted from them)
    "func_cdr.so", "res_cdrel_custom.so", "cdr_custom.so",
    # media
    "res_rtp_asterisk.so", "codec_ulaw.so", "codec_alaw.so", "codec_gsm.so", "codec_a_mu.so",
    "format_gsm.so", "format_wav.so", "format_wav_gsm.so", "format_pcm.so", "format_sln.so",
    "bridge_simple.so", "bridge_softmix.so", "bridge_holding.so", "bridge_native_rtp.so",
    "bridge_builtin_features.so", "chan_bridge_media.so",
    # SIP
    "res_pjproject.so", "res_pjsip.so", "res_pjsip_session.so", "chan_pjsip.so",
    "res_pjsip_authenticator_digest.so", "res_pjsip_outbound_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_ip.so", "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_registrar.so", "res_pjsip_sdp_rtp.so", "res_pjsip_dtmf_info.so",
    "res_pjsip_caller_id.so", "res_pjsip_header_funcs.so", "res_pjsip_pubsub.so",
    "res_pjsip_refer.so", "res_pjsip_nat.so", "res_pjsip_rfc3326.so", "res_pjsip_logger.so",
    "res_pjsip_history.so",
    "func_pjsip_endpoint.so", "func_pjsip_contact.so", "func_pjsip_aor.so",
    # ARI
    "res_http_websocket.so", "res_websocket_client.so", "res_stasis.so", "res_stasis_answer.so", "res_stasis_playback.so",
    "res_stasis_recording.so", "res_stasis_snoop.so", "res_stasis_device_state.so", "res_ari.so",
    "res_ari_model.so", "res_ari_applications.so", "res_ari_asterisk.so", "res_ari_bridges.so",
    "res_ari_channels.so", "res_ari_device_states.so", "res_ari_endpoints.so",
    "res_ari_events.so", "res_ari_playbacks.so", "res_ari_recordings.so", "res_ari_sounds.so",
]

CONF_FILES = [
    "asterisk.conf", "modules.conf", "logger.conf", "http.conf", "ari.conf", "rtp.conf",
    "musiconhold.conf", "indications.conf", "cdr.conf", "cdr_custom.conf", "features.conf", "queues.conf",
    "manager.conf", "pjsip.conf", "extensions.conf",
]
# What `hotline-link dialplan render` writes for an existing Asterisk: the product's contexts,
# keys, queue, ARI and AMI users. Phones, trunks and the core files stay the site's own.
PRODUCT_FILES = ["extensions.conf", "features.conf", "queues.conf", "ari.conf", "manager.conf",
                 "http.conf"]
DECISION_ACTIONS = frozenset(DecisionAction)


@dataclass(frozen=True)
class Account:
    """A SIP phone account on one centre's PBX."""

    role: str            # agent | overflow | citizen
    hotline: str
    username: str
    password: str
    number: str          # caller ID number the PBX presents for it
    display: str
    context: str
    dials: str | None = None


@dataclass(frozen=True)
class PbxView:
    id: str
    sip_host: str
    sip_port: int
    rtp_low: int
    rtp_high: int
    http_host: str
    http_port: int
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038


@dataclass(frozen=True)
class Feature:
    """One features.conf applicationmap entry: a key that runs the AGI ``key`` command."""

    name: str
    key: str
    action: str


def features(settings: Settings, hotline_id: str) -> list[Feature]:
    """The keys an agent may press on a Queue()-bridged call. Decision keys are left out: they
    only mean something in a three-way call, which the application bridges itself."""
    out = []
    for key, action in settings.key_bindings(hotline_id).items():
        if action not in DECISION_ACTIONS:
            out.append(Feature("hotline_" + action.replace(":", "_"), key, action))
    return out


_TRUNK_DIAL = re.compile(r"^PJSIP/([A-Za-z0-9_.+-]+)@trunk-([A-Za-z0-9_.-]+)$")


def responders(settings: Settings, pbx_id: str) -> list[str]:
    """Lab only: extensions of this PBX that stand in for services other centres dial over the
    trunk (provincial 12345, 119, 120, 122, utilities), answered by an echo responder."""
    out = []
    for hid, h in settings.hotlines.items():
        for tid, t in h.targets.items():
            m = _TRUNK_DIAL.match(t.dial or "")
            if tid not in settings.hotlines and m and m.group(2) == pbx_id and m.group(1) not in out:
                out.append(m.group(1))
    return out


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(project_home() / "dialplan")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _context(settings: Settings, hotline: Hotline, ari_password: str | None,
             ami_secret: str | None) -> dict:
    http_host, http_port = hotline.ari.host_port
    ami_host, ami_port = ((hotline.ami.host, hotline.ami.port) if hotline.ami
                          else ("127.0.0.1", 5038))
    # The lab's PBX addresses, when rendering the lab; the product's files use none of them.
    me = settings.lab.pbx.get(hotline.id) if settings.lab is not None else None
    sip = (me.sip_host, me.sip_port, *me.rtp_ports) if me else ("", 0, 0, 0)
    agi_host, agi_port = settings.agi.servers[0]
    return {
        "pbx": PbxView(hotline.id, *sip, http_host, http_port, ami_host, ami_port),
        "hotline": hotline, "keys": settings.keys, "features": features(settings, hotline.id),
        "agi": f"{agi_host}:{agi_port}", "agent_ring": settings.timeouts.agent_ring,
        "agi_servers": [f"{h}:{p}" for h, p in settings.agi.servers],
        "ari": {"username": hotline.ari.username, "password": ari_password},
        "ami": ({"username": hotline.ami.username, "secret": ami_secret}
                if hotline.ami else None),
        "lab": False, "responders": [], "trunk_headers": HEADERS,
    }


def render_product(settings: Settings, hotline: Hotline, out_dir: Path) -> list[Path]:
    """The files an admin adds to an existing Asterisk (see dialplan/README.md)."""
    context = _context(settings, hotline, hotline.ari.password,
                       hotline.ami.secret if hotline.ami else None)
    return _write(context, PRODUCT_FILES, out_dir)


def render_pbx(settings: Settings, hotline: Hotline, accounts: list[Account], ari_password: str,
               ami_secret: str | None, out_dir: Path, *, root: str, moddir: str) -> list[Path]:
    """Write every Asterisk file of ``hotline``'s centre in the lab into ``out_dir``."""
    context = _context(settings, hotline, ari_password, ami_secret)
    context.update(
        lab=True, responders=responders(settings, hotline.id), modules=MODULES, root=root,
        moddir=moddir, accounts=[a for a in accounts if a.hotline == hotline.id],
        peers=[PbxView(pid, p.sip_host, p.sip_port, *p.rtp_ports, "", 0)
               for pid, p in settings.lab.pbx.items() if pid != hotline.id])
    return _write(context, CONF_FILES, out_dir)


def _write(context: dict, names: list[str], out_dir: Path) -> list[Path]:
    env = environment()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        text = env.get_template(f"{name}.j2").render(**context)
        path = out_dir / name
        path.write_text(text)
        path.chmod(0o600)
        written.append(path)
    return written
