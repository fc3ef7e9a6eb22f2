"""The main job: one ARI application per configured hotline, until cancelled."""

from __future__ import annotations

import asyncio
import signal

import structlog

from ari_app.app import HotlineApp

from .settings import Settings

log = structlog.get_logger("service")


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly (returns normally)."""
    apps = [HotlineApp(settings, h) for h in settings.hotlines.values()]
    log.info("service starting", hotlines=list(settings.hotlines), config=list(settings.sources))
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    try:
        async with asyncio.TaskGroup() as tg:
            for app in apps:
                tg.create_task(app.run(), name=f"ari-{app.hotline.id}")
    except asyncio.CancelledError:
        log.info("service stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
