"""The double on its own event loop in a daemon thread: for synchronous tests, and for bots in other processes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from .server import DiscordDouble

T = TypeVar("T")


class BackgroundDouble:
    """Runs a ``DiscordDouble`` in a thread; drive it with ``call`` and read it with ``wait_for``.

    For example, with a bot in a subprocess::

        with BackgroundDouble() as background:
            double = background.double
            bot = subprocess.Popen([...], env={**os.environ, **double.bot_env()})
            background.wait_for(lambda: double.connected)
            interaction = background.call(double.slash("imagine", {"prompt": "a fox"}))
            background.wait_for(lambda: interaction.original)
    """

    def __init__(self, double: DiscordDouble | None = None) -> None:
        self.double = double or DiscordDouble()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="discord-double", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        self.call(self.double.start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call(self.double.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def call(self, coroutine: Coroutine[Any, Any, T], *, timeout: float = 30.0) -> T:
        """Run a coroutine of the double (``double.slash(...)``, ``double.react(...)``) on its loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def wait_for(self, predicate: Callable[[], T | None], *, timeout: float = 10.0, what: str = "") -> T:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(self.double.describe(f"waited {timeout} s for {what or predicate}"))
            time.sleep(0.01)
