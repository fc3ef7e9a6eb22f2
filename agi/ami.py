"""The one AMI action hotline-link needs: Redirect a bridged caller and agent together.

ARI cannot take hold of a channel that is not in a Stasis application, so a call bridged by
the centre's own Queue() reaches the application through the Asterisk Manager Interface:
``Redirect`` with ``ExtraChannel`` moves both parties of a bridge at once, without the bridge
hanging up the one left behind. pyst2's ``Manager`` speaks the protocol; a connection is opened
per action (key presses are rare) with a socket timeout, so a PBX that stops answering costs
a key press a few seconds, never a stuck AGI thread.
"""

from __future__ import annotations

import socket
import threading

from asterisk.manager import Manager, ManagerException

from hotline_link.settings import AmiSettings

TIMEOUT = 3.0


class AmiError(Exception):
    pass


class _Manager(Manager):
    def connect(self, host: str, port: int = 5038):     # pyst2's, with a timeout
        if self._connected.is_set():
            raise ManagerException("Already connected to manager")
        sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        self._sock = sock.makefile(mode="rwb", buffering=0)
        sock.close()
        self._connected.set()
        self._running.set()
        self.message_thread.start()
        self.event_dispatch_thread.start()
        return self._response_queue.get(timeout=TIMEOUT)


class Ami:
    def __init__(self, settings: AmiSettings):
        self.settings = settings
        self._lock = threading.Lock()      # pyst2's Manager is not safe for concurrent actions

    def redirect_pair(self, channel: str, extra: str, context: str, exten: str,
                      extra_exten: str) -> None:
        """Send ``channel`` to context/exten and ``extra`` to context/extra_exten, priority 1."""
        self._action({
            "Action": "Redirect", "Channel": channel, "Context": context, "Exten": exten,
            "Priority": "1", "ExtraChannel": extra, "ExtraContext": context,
            "ExtraExten": extra_exten, "ExtraPriority": "1",
        })

    def ping(self) -> None:
        """Connect, log in and ping: what ``hotline-link doctor`` checks."""
        self._action({"Action": "Ping"})

    def _action(self, action: dict) -> None:
        s = self.settings
        with self._lock:
            manager = _Manager()
            try:
                manager.connect(s.host, s.port)
                manager.login(s.username, s.secret or "")
                response = manager.send_action(action)
            except Exception as exc:       # pyst2 raises its own, socket and queue errors
                raise AmiError(f"AMI {s.host}:{s.port}: {exc or type(exc).__name__}") from exc
            finally:
                try:
                    manager.close()
                except Exception:          # noqa: BLE001 - the answer is in; closing is best effort
                    pass
        if response.get_header("Response") != "Success":
            raise AmiError(f"AMI {action['Action']} refused: {response.get_header('Message')}")
