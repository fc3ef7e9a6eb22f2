"""Render the Asterisk configuration of one centre from the templates in ``dialplan/``.

The service config is the single source of the keys, agents, targets and ARI credentials; the
templates hold everything an admin would tune by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .settings import Hotline, Settings, project_home

MODULES = [
    # core plumbing
    "res_timing_timerfd.so", "res_sorcery_config.so", "res_sorcery_memory.so",
    "res_sorcery_astdb.so", "pbx_config.so", "func_channel.so", "func_callerid.so",
    "func_strings.so", "func_global.so", "func_logic.so", "func_uuid.so", "func_hangupcause.so",
    "app_dial.so", "app_playback.so", "app_read.so", "app_echo.so", "app_senddtmf.so", "app_stasis.so",
    "app_verbose.so", "app_exec.so", "app_stack.so", "app_queue.so", "app_mixmonitor.so",
    "res_speech.so", "res_agi.so", "res_musiconhold.so",
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
    "musiconhold.conf", "indications.conf", "cdr.conf", "features.conf", "queues.conf", "pjsip.conf", "extensions.conf",
]


@dataclass(frozen=True)
class Account:
    """A SIP phone account on one centre's PBX."""

    role: str            # agent | citizen
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


def render_pbx(settings: Settings, hotline: Hotline, accounts: list[Account], ari_password: str,
               out_dir: Path, *, root: str, moddir: str) -> list[Path]:
    """Write every Asterisk file of ``hotline``'s centre into ``out_dir``."""
    lab = settings.lab
    me = lab.pbx[hotline.id]
    http_host, http_port = hotline.ari.host_port
    pbx = PbxView(hotline.id, me.sip_host, me.sip_port, me.rtp_ports[0], me.rtp_ports[1],
                  http_host, http_port)
    peers = [PbxView(pid, p.sip_host, p.sip_port, *p.rtp_ports, "", 0)
             for pid, p in lab.pbx.items() if pid != hotline.id]
    context = {
        "responders": responders(settings, hotline.id),
        "pbx": pbx, "hotline": hotline, "peers": peers, "modules": MODULES, "root": root,
        "moddir": moddir, "keys": settings.keys,
        "accounts": [a for a in accounts if a.hotline == hotline.id],
        "ari": {"username": hotline.ari.username, "password": ari_password},
    }
    env = environment()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONF_FILES:
        text = env.get_template(f"{name}.j2").render(**context)
        path = out_dir / name
        path.write_text(text)
        path.chmod(0o600)
        written.append(path)
    return written
