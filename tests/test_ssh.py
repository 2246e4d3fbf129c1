"""The SSH layer against in-process asyncssh servers: reuse, reconnects, bounds, timeouts."""

from __future__ import annotations

import asyncio

import pytest
from conftest import public_key
from waiting import eventually_async

from backend.demo.sshd import LocalSSHServer
from backend.health.checkshell import OUTPUT_LIMIT
from backend.transport.connections import ConnectionPool
from backend.transport.ssh import Endpoint, HostKeyRefused, SSHFailure


@pytest.fixture
async def server(tmp_path, client_key):
    server = LocalSSHServer(tmp_path / "w", authorized_keys=[public_key(client_key)])
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def pool():
    pool = ConnectionPool(connect_timeout=5, login_timeout=5)
    yield pool
    await pool.close()


def endpoint(server, client_key, **kwargs):
    return Endpoint(host=server.host, port=server.port, key_path=str(client_key),
                    pinned_key=server.host_public_key, **kwargs)


async def test_concurrent_commands_share_one_connection(server, pool, client_key):
    target = endpoint(server, client_key)
    results = await asyncio.gather(*(pool.run("w", target, f"echo {i}", timeout=10)
                                     for i in range(20)))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(20)]
    assert all(r.exit_status == 0 for r in results)
    assert sum(r.connect_ms is not None for r in results) == 1
    assert len(server._connections) == 1 and len(pool) == 1


async def test_dropped_connection_is_replaced(server, pool, client_key):
    target = endpoint(server, client_key)
    await pool.run("w", target, "true", timeout=10)
    for conn in list(server._connections):
        conn.close()
    await eventually_async(lambda: pool._connections["w"].closed.is_set(),
                           what="the client seeing its connection drop")
    result = await pool.run("w", target, "echo back", timeout=10)
    assert result.stdout == b"back\n" and result.connect_ms is not None


async def test_exit_status_and_stderr_are_kept(server, pool, client_key):
    result = await pool.run("w", endpoint(server, client_key), "echo oops >&2; exit 3",
                            timeout=10)
    assert (result.exit_status, result.stderr) == (3, b"oops\n")


async def test_output_is_bounded(server, pool, client_key):
    result = await pool.run("w", endpoint(server, client_key),
                            "head -c 3000000 /dev/zero", timeout=20)
    assert len(result.stdout) == OUTPUT_LIMIT and result.truncated


async def test_a_hanging_command_times_out_and_is_killed(server, pool, client_key):
    with pytest.raises(SSHFailure, match="timed out after 1s"):
        await pool.run("w", endpoint(server, client_key), "sleep 30", timeout=1)
    # The remote process ends with its channel.
    await eventually_async(lambda: not server._processes, what="the remote process gone")


async def test_an_unpinned_key_is_refused_with_its_fingerprint(server, pool, client_key):
    target = Endpoint(host=server.host, port=server.port, key_path=str(client_key))
    with pytest.raises(HostKeyRefused) as refused:
        await pool.run("w", target, "true", timeout=10)
    assert not refused.value.changed
    assert server.fingerprint in str(refused.value)
    assert server.sessions == 0


async def test_trust_on_first_use_pins_what_was_presented(server, pool, client_key):
    target = Endpoint(host=server.host, port=server.port, key_path=str(client_key),
                      trust_host_key=True)
    result = await pool.run("w", target, "true", timeout=10)
    assert result.accepted_from == "first use"
    assert result.accepted_key == server.host_public_key


async def test_no_key_means_a_clear_refusal(server, pool, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
    target = Endpoint(host=server.host, port=server.port, pinned_key=server.host_public_key)
    with pytest.raises(SSHFailure, match="no SSH key to log in with"):
        await pool.run("w", target, "true", timeout=10)


async def test_check_shell_is_reused_and_keeps_no_state(server, pool, client_key):
    target = endpoint(server, client_key)
    first = await pool.run_script("w", target, "x=1; echo $$", timeout=10)
    second = await pool.run_script("w", target, "echo ${x:-unset} $$; false", timeout=10)
    assert first.exit_status == 0 and second.exit_status == 1
    pid = first.stdout.split()[0]
    # Same shell (no new session per check); variables are the script's own business.
    assert second.stdout.split() == [b"1", pid]
    assert server.sessions == 1


async def test_check_shell_gets_its_functions_once_and_writes_kept_output(
        server, pool, client_key):
    # A check sends its functions to a shell once and then only the call; output a script
    # leaves in __wd_o goes out with the end marker, as one write.
    target = endpoint(server, client_key)
    definitions = 'n=$((${n:-0} + 1)); f() { __wd_o="defined $n time(s) in a shell:$__wd_shell"; }'
    results = [await pool.run_script("w", target, "f", timeout=10, definitions=definitions)
               for _ in range(3)]
    assert [r.stdout for r in results] == [b"defined 1 time(s) in a shell:1"] * 3
    plain = await pool.run_script("w", target, "echo plain", timeout=10)
    assert plain.stdout == b"plain\n"  # nothing kept from the last check
    with pytest.raises(SSHFailure, match="lost"):
        await pool.run_script("w", target, "exit 0", timeout=10)
    again = await pool.run_script("w", target, "f", timeout=10, definitions=definitions)
    assert again.stdout == b"defined 1 time(s) in a shell:1"  # a new shell is given them


async def test_check_shell_output_cannot_fake_the_end(server, pool, client_key):
    target = endpoint(server, client_key)
    result = await pool.run_script(
        "w", target, "printf '\\n@@workdeck-end 0000 0\\n'; echo after; exit_code=3", timeout=10)
    assert b"after" in result.stdout and result.exit_status == 0


async def test_check_shell_bounds_output_and_survives(server, pool, client_key):
    target = endpoint(server, client_key)
    result = await pool.run_script("w", target, "head -c 3000000 /dev/zero", timeout=20)
    assert result.truncated and len(result.stdout) <= OUTPUT_LIMIT
    again = await pool.run_script("w", target, "echo ok", timeout=10)
    assert again.stdout.strip() == b"ok"


async def test_a_hung_check_shell_is_replaced(server, pool, client_key):
    target = endpoint(server, client_key)
    with pytest.raises(SSHFailure, match="timed out"):
        await pool.run_script("w", target, "sleep 30", timeout=1)
    result = await pool.run_script("w", target, "echo fresh", timeout=10)
    assert result.stdout.strip() == b"fresh" and server.sessions == 2


async def test_an_exiting_check_shell_is_reopened(server, pool, client_key):
    target = endpoint(server, client_key)
    with pytest.raises(SSHFailure, match="lost"):
        await pool.run_script("w", target, "exit 0", timeout=10)
    result = await pool.run_script("w", target, "echo back", timeout=10)
    assert result.stdout.strip() == b"back"
