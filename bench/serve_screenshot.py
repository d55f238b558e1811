"""`biasmon --serve` in a real headless browser: start the server on a free port, open the page in headless
chromium (driven over the DevTools protocol, with aiohttp, which the serve extra installs), wait until the
app has drawn, save a PNG, and say whether the page shows the app.

    python bench/serve_screenshot.py [-o serve.png] [--size 1280x800] [--wait 4] [--timeout 40]
                                     [--chromium PATH] [--keys f [--after 3]] [-- BIASMON ARGS...]

The page shows the app when (1) the page's terminal got the app's first bytes over its websocket (the
page adds the class -first-byte to its body) and the session did not end (-closed), and (2) the screenshot
holds a band of one of the direction strip's colours (green: a layer training right, red: uphill; drawn by
biasmon itself) and is not all background. Exit 0: it does; 1: it does not (the reason on stderr); 2: no chromium or no textual-serve.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline: float, server: subprocess.Popen) -> None:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"biasmon --serve exited with status {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"biasmon --serve did not listen on port {port} in time")


def png_pixels(data: bytes) -> tuple[int, int, list[bytearray]]:
    """Width, height and the RGB(A) rows of an 8-bit, non-interlaced PNG (what chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace or colour_type not in (2, 6):
                raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour_type}, interlace {interlace})")
            bpp = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, [r if bpp == 3 else bytearray(b for i, b in enumerate(r) if i % 4 != 3) for r in rows]


def judge(png: bytes) -> tuple[bool, str]:
    """Whether the screenshot shows biasmon: a solid run of one of the strip's colours (a value's bar) at
    least a tenth of the page wide (a plot's braille line never makes one), and not all one colour."""
    from biasmon.tui.direction_strip import colour

    strip = {colour(q / 10) for q in range(-10, 11)}
    width, height, rows = png_pixels(png)
    counts: dict[tuple, int] = {}
    longest, longest_colour = 0, None
    for row in rows[::2]:  # every other row: enough to judge, twice as fast
        run, last = 0, None
        for i in range(0, len(row), 3):
            px = (row[i], row[i + 1], row[i + 2])
            counts[px] = counts.get(px, 0) + 1
            run = run + 1 if px == last and px in strip else 1 if px in strip else 0
            last = px
            if run > longest:
                longest, longest_colour = run, px
    background = max(counts.values()) / sum(counts.values())
    what = (f"{width}x{height} px, {len(counts)} colours, background {background:.0%}, "
            f"longest run of a strip colour {longest} px (rgb{longest_colour})")
    if longest < width // 10:
        return False, f"no direction strip band in the screenshot ({what})"
    if background > 0.97:
        return False, f"the screenshot is nearly all one colour ({what})"
    return True, what


async def cdp(ws, state: dict, method: str, **params) -> dict:
    """One DevTools call; its result (events in between are skipped)."""
    state["id"] += 1
    await ws.send_str(json.dumps({"id": state["id"], "method": method, "params": params}))
    while True:
        message = json.loads((await ws.receive()).data)
        if message.get("id") == state["id"]:
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            return message.get("result", {})


async def press(ws, state: dict, keys: str) -> None:
    """Type keys into the page's terminal, as a person would (its hidden textarea has the focus)."""
    await cdp(ws, state, "Runtime.evaluate", expression="document.querySelector('.xterm-helper-textarea').focus()")
    for key in keys:
        for kind in ("keyDown", "keyUp"):
            await cdp(ws, state, "Input.dispatchKeyEvent", type=kind, key=key, text=key if kind == "keyDown" else "",
                      code=f"Key{key.upper()}" if key.isalpha() else "", windowsVirtualKeyCode=ord(key.upper()))
        await asyncio.sleep(0.1)


async def shoot(devtools_port: int, url: str, size: tuple[int, int], wait: float, deadline: float,
                keys: str = "", after: float = 0.0) -> tuple[bytes, str]:
    """Open url in the browser's page, wait for the app's first bytes and then `wait` seconds (and, given
    keys, press them and wait `after` seconds more); the PNG and the body's classes."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            targets = await response.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            state = {"id": 0}
            await cdp(ws, state, "Page.enable")
            await cdp(ws, state, "Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                      deviceScaleFactor=1, mobile=False)
            await cdp(ws, state, "Page.navigate", url=url)
            classes = ""
            while time.monotonic() < deadline:
                result = await cdp(ws, state, "Runtime.evaluate", returnByValue=True,
                                   expression="document.body ? document.body.className : ''")
                classes = result.get("result", {}).get("value", "")
                if "-first-byte" in classes or "-closed" in classes:
                    break
                await asyncio.sleep(0.25)
            if "-first-byte" in classes:
                await asyncio.sleep(wait)  # let it train and draw a few batches
                if keys:
                    await press(ws, state, keys)
                    await asyncio.sleep(after)
                result = await cdp(ws, state, "Runtime.evaluate", returnByValue=True,
                                   expression="document.body.className")
                classes = result.get("result", {}).get("value", "")
            shot = await cdp(ws, state, "Page.captureScreenshot", format="png")
            return base64.b64decode(shot["data"]), classes


def find_chromium(given: str | None) -> str | None:
    if given:
        return given
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                None)


def stop(process: subprocess.Popen | None) -> None:
    """End a process we started and everything it started (its own session)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="serve.png", help="the PNG to write (default: serve.png)")
    p.add_argument("--size", default="1280x800", help="the browser window, WxH (default: 1280x800)")
    p.add_argument("--wait", type=float, default=4.0, help="seconds to let the app train once it has drawn")
    p.add_argument("--timeout", type=float, default=40.0, help="give up after this many seconds in all")
    p.add_argument("--chromium", help="the browser (default: chromium on the PATH)")
    p.add_argument("--keys", default="", help="keys to press in the page once it has drawn (f: the sign bug)")
    p.add_argument("--after", type=float, default=3.0, help="seconds to wait after pressing --keys")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("serve_screenshot: no chromium found (apt-get install chromium, or --chromium PATH)", file=sys.stderr)
        return 2
    try:
        import aiohttp  # noqa: F401  (comes with textual-serve)
        import textual_serve  # noqa: F401
    except ImportError:
        print("serve_screenshot: textual-serve is not installed (pip install 'biasmon[serve]')", file=sys.stderr)
        return 2

    deadline = time.monotonic() + args.timeout
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = browser = None
    profile = tempfile.mkdtemp(prefix="biasmon-chromium-")
    try:
        server = subprocess.Popen([sys.executable, "-m", "biasmon", *extra, "--serve", "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True, text=True)
        wait_for_port(port, deadline, server)
        browser = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                    "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                    f"--window-size={width},{height}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        active = Path(profile) / "DevToolsActivePort"
        while not active.exists() or not active.read_text().strip():
            if time.monotonic() > deadline or browser.poll() is not None:
                print("serve_screenshot: chromium did not start its DevTools endpoint", file=sys.stderr)
                return 1
            time.sleep(0.1)
        devtools_port = int(active.read_text().split()[0])
        png, classes = asyncio.run(shoot(devtools_port, url, (width, height), args.wait, deadline, args.keys,
                                         args.after))
        Path(args.output).write_bytes(png)
        print(f"serve_screenshot: {url} -> {args.output} (page body: {classes!r})")
        if "-first-byte" not in classes:
            print("serve_screenshot: the page never got the app's output", file=sys.stderr)
            return 1
        if "-closed" in classes:
            print("serve_screenshot: the app's session ended (biasmon exited in the page)", file=sys.stderr)
            return 1
        ok, what = judge(png)
        print(f"serve_screenshot: {'the page shows biasmon' if ok else 'the page does not show biasmon'}: {what}",
              file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    except (RuntimeError, OSError) as exc:
        print(f"serve_screenshot: {exc}", file=sys.stderr)
        return 1
    finally:
        stop(browser)
        stop(server)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
