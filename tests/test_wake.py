"""Wake-up sockets: how a SQLite deployment's processes tell each other that rows were queued."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from bot.wake import WakeSockets


def test_it_wakes_every_other_listener_once_per_burst_and_never_itself(tmp_path: Path):
    async def scenario() -> dict[str, int]:
        loop = asyncio.get_running_loop()
        wakes = {"other": 0, "self": 0}
        other = WakeSockets(tmp_path)
        other.own = other.folder / "111.sock"  # another process's socket, as far as this one can tell
        assert other.listen(loop, lambda: wakes.__setitem__("other", wakes["other"] + 1))
        this = WakeSockets(tmp_path)
        assert this.listen(loop, lambda: wakes.__setitem__("self", wakes["self"] + 1))
        wakes["sent"] = sum(this.wake_others() for _ in range(5))  # a burst of five commits
        await asyncio.sleep(0.2)
        other.close(loop)
        this.close(loop)
        return wakes

    wakes = asyncio.run(scenario())
    assert wakes["sent"] == 5  # one datagram a commit, to the one other socket
    assert 1 <= wakes["other"] <= 2  # the burst is read together (or in two reads), one wake-up each
    assert wakes["self"] == 0
    assert list((tmp_path / "wake").glob("*.sock")) == []  # each removes its socket when it stops


def test_it_removes_the_socket_a_killed_process_left_behind(tmp_path: Path):
    folder = tmp_path / "wake"
    folder.mkdir()
    dead = folder / "999999.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    leftover.bind(str(dead))
    leftover.close()  # the file stays, with no one reading: what kill -9 leaves

    sender = WakeSockets(tmp_path)
    assert sender.wake_others() == 0
    sender.close()
    assert not dead.exists()


def test_it_polls_instead_when_the_var_path_is_too_long_for_a_socket(tmp_path: Path):
    deep = tmp_path / ("d" * 120)
    assert not listens(WakeSockets(deep))


def test_it_polls_instead_when_the_var_directory_cannot_hold_a_socket(tmp_path: Path):
    (tmp_path / "wake").write_text("a file where the folder should be")
    assert not listens(WakeSockets(tmp_path))
    sender = WakeSockets(tmp_path)
    assert sender.wake_others() == 0
    sender.close()


def listens(sockets: WakeSockets) -> bool:
    loop = asyncio.new_event_loop()
    try:
        return sockets.listen(loop, lambda: None)
    finally:
        sockets.close(loop)
        loop.close()
