"""Regenerates docs/screenshot.svg: `biasmon` on the default preset, 60 steps after pressing f."""
import asyncio
from pathlib import Path

from biasmon.tui.app import create_live_app


async def main():
    app = create_live_app("gradient", pause_at=1500)
    async with app.run_test(size=(140, 40)) as pilot:
        while not (app.current and app.current.last_step == 1499 and app.state == "paused"):
            await pilot.pause(0.05)
        await pilot.press("f")
        app.source.pause_at = 1560
        await pilot.press("space")
        while not (app.current.last_step == 1559 and app.state == "paused"):
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        app.save_screenshot("screenshot.svg", str(Path(__file__).parent))


asyncio.run(main())
