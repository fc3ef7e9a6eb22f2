"""The main job: one ARI application per configured hotline, until cancelled."""

from __future__ import annotations

import asyncio

import structlog

from ari_app.app import HotlineApp

from .settings import Settings

log = structlog.get_logger("service")


async def serve(settings: Settings) -> None:
    apps = [HotlineApp(settings, h) for h in settings.hotlines.values()]
    log.info("service starting", hotlines=list(settings.hotlines), config=list(settings.sources))
    async with asyncio.TaskGroup() as tg:
        for app in apps:
            tg.create_task(app.run(), name=f"ari-{app.hotline.id}")
