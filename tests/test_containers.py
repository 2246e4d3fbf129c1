"""Steps in a container image on the worker, through a real engine (podman with runc).

Nothing can be pulled here: the image is built from busybox-static's applets and
imported into podman once per session. On CI, where .ci/run installs podman, a missing
or silent engine fails these tests rather than skipping them.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import pytest
from busybox_image import IMAGE, engine_answers, ensure_image
from conftest import ON_CI, start_workdeck
from test_runs import import_runbook, launch, log_lines, printed, wait_run
from waiting import eventually

from backend.transport.remote import new_marker, step_command


@pytest.fixture(scope="session")
def image() -> str:
    if not engine_answers():
        if ON_CI:
            pytest.fail("the container tests need a podman that answers (.ci/run installs "
                        "it)")
        pytest.skip("no podman that answers here")
    return ensure_image()


def containers() -> list[str]:
    """The step containers that exist on this machine, running or not."""
    listed = subprocess.run(["podman", "ps", "-a", "--filter", "label=workdeck.marker",
                             "--format", "{{.Names}}"], capture_output=True, text=True,
                            check=True)
    return listed.stdout.split()


@pytest.fixture
def builtin(workdeck):
    """The built-in worker (this machine, where podman runs), in environment Test."""
    workdeck.cli("settings", "--builtin-worker", "on")
    workdeck.cli("env", "add", "Test")
    assert workdeck.cli("check").code == 0
    # The check found the engine, which the steps then use without asking again.
    shown = workdeck.cli("worker", "show", "built-in-worker")
    version = subprocess.run(["podman", "info", "--format", "{{.Version.Version}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert f"Containers  podman {version}" in shown.out, shown.out
    return workdeck


def contained(image: str, script: str, extra: str = "") -> str:
    return f"""
name = "Contained"
[variables]
who = "ops"
[[steps]]
name = "Inside"
container = "{image}"
{extra}
script = '''
{script}
'''
"""


def test_a_container_step_runs_in_its_image_in_the_work_folder(builtin, image, tmp_path):
    workdeck = builtin
    import_runbook(workdeck, tmp_path, contained(image, """
echo "hello $who from $(pwd)"
test -e /etc/os-release && echo "the host's files" || echo "only the image's files"
echo made > made-inside.txt
echo "to stderr" >&2
exit 3
"""))
    run = launch(workdeck, "Contained")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    [step] = done["steps"]
    assert (done["status"], step["exit_status"]) == ("failed", 3)
    assert step["reason"] == "exit status 3: to stderr"
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    work = workdeck.home / ".workdeck" / "work"
    assert f"hello ops from {work}" in texts
    assert "only the image's files" in texts  # busybox has no /etc/os-release
    assert (work / "made-inside.txt").read_text() == "made\n"  # the folder was mounted
    assert containers() == []  # --rm: gone with its end


def test_cancel_and_timeout_leave_no_container(builtin, image, tmp_path):
    workdeck = builtin
    import_runbook(workdeck, tmp_path, contained(image, "echo started; sleep 391"))
    run = launch(workdeck, "Contained")
    printed(workdeck, run["id"], "started")
    assert len(containers()) == 1
    assert workdeck.cli("runs", "cancel", str(run["id"])).code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "cancelled"
    assert containers() == [], "the step's container outlived the cancel"

    import_runbook(workdeck, tmp_path, contained(image, "echo started; sleep 392",
                                                 extra="timeout = 2"), name="short.toml")
    run = launch(workdeck, "Contained")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "failed" and "timed out after 2s" in done["steps"][0]["reason"]
    assert "its processes were killed" in done["steps"][0]["reason"]
    assert containers() == [], "the step's container outlived its timeout"


def test_kill_9_of_the_server_leaves_no_container(builtin, image, tmp_path):
    workdeck = builtin
    import_runbook(workdeck, tmp_path, contained(image, "echo started; sleep 393"))
    run = launch(workdeck, "Contained")
    printed(workdeck, run["id"], "started")
    workdeck.process.send_signal(signal.SIGKILL)
    workdeck.process.wait(10)
    assert len(containers()) == 1  # a crash leaves it running
    _data, workdeck.process = start_workdeck(workdeck.data_dir.root.parent, workdeck.home,
                                            database=workdeck.database)
    eventually(lambda: containers() == [], timeout=30, what="the orphaned container removed")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "interrupted"

    def slot_free():
        with workdeck.client() as client:
            return client.get("/api/workers/built-in-worker")["leased"] == 0

    eventually(slot_free, what="the slot given back once the container was gone")


def test_a_missing_image_fails_the_step_with_the_engines_word(builtin, image, tmp_path):
    workdeck = builtin
    import_runbook(workdeck, tmp_path, contained("localhost/workdeck-no-such-image:1",
                                                 "echo never"))
    run = launch(workdeck, "Contained")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=60)
    reason = done["steps"][0]["reason"]
    assert done["status"] == "failed" and reason.startswith("exit status 125: ")
    assert "workdeck-no-such-image" in reason
    assert containers() == []


def test_a_worker_with_no_engine_that_answers_says_so(tmp_path):
    # Only the shell's builtins and the docker client, which has no daemon to answer.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_docker = bin_dir / "docker"
    fake_docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake_docker.chmod(0o755)
    done = subprocess.run(["/bin/sh", "-c", step_command(new_marker(), IMAGE, "work")],
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
                          capture_output=True, text=True, input="echo never\n", timeout=30)
    assert done.returncode == 127
    assert done.stderr.strip() == ("no container engine answers on this worker (tried podman "
                                   "and docker): the step needs one to run in its image")


@pytest.mark.openssh
def test_over_openssh_as_root_a_container_step_runs_and_a_cancel_removes_it(
        workdeck, openssh, image, tmp_path):
    from test_openssh_runs import add_worker

    sshd = openssh()
    add_worker(workdeck, sshd, sshd.user)
    import_runbook(workdeck, tmp_path, contained(image, "echo started in $(pwd); sleep 394")
                   .replace('container =', 'pool = "Web Pool"\ncontainer ='))
    run = launch(workdeck, "Contained")
    printed_line = eventually(lambda: next(
        (line["text"] for line in log_lines(workdeck, run["id"])
         if line["text"].startswith("started in ")), None), what="the step under way")
    assert printed_line.endswith("/.workdeck/work")
    assert len(containers()) == 1
    assert workdeck.cli("runs", "cancel", str(run["id"])).code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "cancelled"
    assert containers() == [], "the step's container outlived the cancel"


def test_the_advisor_flags_container_steps_where_no_engine_answers(tmp_path):
    import json

    from sqlalchemy import update

    from backend import fleet
    from backend.fleet import advisor
    from backend.runs import runbooks
    from backend.store.db import Store
    from backend.store.models import Worker
    from wire.runbook import parse_toml
    from wire.workers import WorkerCreate

    store = Store(tmp_path / "advice.db")
    engines = {"p-web-local-worker-01": "podman 4.3.1", "p-web-local-worker-02": "",
               "p-db-local-worker-01": "", "p-db-local-worker-02": "",
               "p-app-local-worker-01": None, "p-app-local-worker-02": None}
    systems = {"p-app-local-worker-01": "Debian GNU/Linux 12 (bookworm)",
               "p-app-local-worker-02": "Ubuntu 22.04.4 LTS"}
    pool_of = {"web": "Local Production Web Worker Pool",
               "db": "Local Production Database Worker Pool",
               "app": "Local Production App Worker Pool"}
    fleet.add_workers(store, [WorkerCreate(name=name, host="127.0.0.1", port=9,
                                           pools=[pool_of[name.split("-")[1]]])
                              for name in engines], "test")
    with store.write() as session:
        for name, engine in engines.items():
            facts = {"os": systems.get(name, "Debian GNU/Linux 12 (bookworm)")}
            if engine is not None:
                facts["container_engine"] = engine
            session.exec(update(Worker).where(Worker.name == name)
                         .values(facts=json.dumps(facts)))
    runbooks.save(store, parse_toml(f"""
name = "Deploy"
[pools.Web]
Production = "{pool_of['web']}"
[[steps]]
name = "Build"
pool = "Web"
container = "{IMAGE}"
script = "make"
[[steps]]
name = "Migrate"
pool = "{pool_of['db']}"
container = "{IMAGE}"
script = "migrate"
""", "deploy.toml"), "test")
    found = {(f["check"], f["name"]): f for f in advisor.advise(store)}
    web = found["container-engine", pool_of["web"]]
    assert web["severity"] == "warning" and "p-web-local-worker-02 has no" in web["finding"]
    assert "'Deploy', step 'Build'" in web["finding"]
    db = found["container-engine", pool_of["db"]]  # no member can run the step at all
    assert db["severity"] == "critical" and "step 'Migrate'" in db["finding"]
    app = found["container-suggested", pool_of["app"]]  # different systems, no containers
    assert "Debian GNU/Linux 12 (bookworm) on 1; Ubuntu 22.04.4 LTS on 1" in app["finding"]
    assert ("container-engine", pool_of["app"]) not in found  # engines not read yet: no word


def secrets_folders() -> list[str]:
    return sorted(path.name for path in Path("/tmp").glob("workdeck-secrets-*"))


def holding(value: str) -> list[str]:
    """The processes on this machine with `value` in their arguments or environment."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        for part in ("cmdline", "environ"):
            with contextlib.suppress(OSError):
                if value.encode() in (proc / part).read_bytes():
                    found.append(f"{proc.name}/{part}")
    return found


@pytest.mark.parametrize("in_image", [True, False], ids=["in-a-container", "plainly"])
def test_variables_reach_the_programs_a_step_starts_and_secrets_only_as_files(
        builtin, image, tmp_path, in_image):
    workdeck = builtin
    script = """
sh -c 'echo "child: who=$who secret=${secret:-unset}"'
sh -c 'echo "child reads: $(cat "$WORKDECK_SECRETS/secret")"'
ls -ld "$WORKDECK_SECRETS" "$WORKDECK_SECRETS/secret" | cut -c1-10
echo "script: $secret"
echo started
sleep 395
"""
    text = contained(image, script).replace('who = "ops"', 'who = "ops"\n[variables.secret]\n'
                                                          'sensitive = true')
    if not in_image:
        text = text.replace(f'container = "{image}"', "")
    import_runbook(workdeck, tmp_path, text)
    secret = "hunter2-long-enough"
    run = launch(workdeck, "Contained", variables={"secret": secret})
    printed(workdeck, run["id"], "started")
    # Neither in a process's arguments nor in its environment (`ps e`), here or in the
    # container (whose processes are this machine's).
    assert holding(secret) == []
    assert len(secrets_folders()) == (0 if in_image else 1)  # in the container's own /tmp
    assert workdeck.cli("runs", "cancel", str(run["id"])).code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "cancelled"
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    # Exported: what the script starts sees it. A secret stays the script's own (and is
    # masked where it is printed); a program it starts reads it from its file.
    assert "child: who=ops secret=unset" in texts
    assert "child reads: ********" in texts
    assert texts.count("drwx------") == 1 and texts.count("-rw-------") == 1
    assert "script: ********" in texts
    assert secrets_folders() == [], "the step's secrets outlived it"
    assert containers() == []


def test_a_step_that_exits_on_its_own_leaves_no_secrets_behind(builtin, tmp_path):
    workdeck = builtin
    import_runbook(workdeck, tmp_path, """
name = "Secretive"
[variables.token]
sensitive = true
[[steps]]
name = "Leaves"
script = '''
trap 'echo "its own trap ran"' EXIT
test -s "$WORKDECK_SECRETS/token" && echo "the file is there"
exit 6
'''
""")
    run = launch(workdeck, "Secretive", variables={"token": "a-long-enough-token"})
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["steps"][0]["exit_status"] == 6  # the script's own status, kept
    texts = [line["text"] for line in log_lines(workdeck, run["id"])]
    assert "the file is there" in texts and "its own trap ran" in texts
    assert secrets_folders() == []


@pytest.mark.openssh
def test_a_worker_set_to_an_engine_uses_that_one_and_no_other(workdeck, openssh, image,
                                                             tmp_path):
    sshd = openssh()
    for name, engine in (("t-web-local-worker-01", "docker"),
                         ("t-web-local-worker-02", "podman")):
        added = workdeck.cli("worker", "add", name, "--host", sshd.host, "--port",
                             str(sshd.port), "--user", sshd.user, "--key-path",
                             str(sshd.client_key), "--pool", f"{engine} Pool",
                             "--trust-host-key", "--engine", engine)
        assert added.code == 0, added.err
    assert workdeck.cli("check").code in (0, 1)
    workdeck.cli("env", "add", "Test")
    shown = workdeck.cli("worker", "show", "t-web-local-worker-01").out
    assert "(set to use docker)" in shown
    for engine in ("docker", "podman"):
        import_runbook(workdeck, tmp_path, contained(image, "echo inside").replace(
            'name = "Contained"', f'name = "On {engine}"').replace(
            "container =", f'pool = "{engine} Pool"\ncontainer ='), name=f"{engine}.toml")
    # docker is installed here without a daemon: the worker set to it does not fall back.
    done = wait_run(workdeck, launch(workdeck, "On docker")["id"], lambda r: r["finished_at"])
    assert done["status"] == "failed"
    assert done["steps"][0]["reason"] == ("exit status 127: the worker or its pool is set to "
                                          "run steps in an image with docker, which does not "
                                          "answer here")
    done = wait_run(workdeck, launch(workdeck, "On podman")["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded", done["steps"][0]["reason"]
    refused = workdeck.cli("worker", "add", "t-web-local-worker-03", "--host", sshd.host,
                           "--engine", "lxc")
    assert refused.code != 0 and "lxc" in refused.err
    # A pool set to an engine: its members set to none use that one.
    assert workdeck.cli("pool", "add", "Docker Web Worker Pool", "--engine", "docker").code == 0
    with workdeck.client() as client:
        assert client.get("/api/pools/Docker Web Worker Pool")["engine"] == "docker"
    assert workdeck.cli("worker", "add", "t-web-local-worker-04", "--host", sshd.host,
                        "--port", str(sshd.port), "--user", sshd.user, "--key-path",
                        str(sshd.client_key), "--pool", "Docker Web Worker Pool",
                        "--trust-host-key").code == 0
    workdeck.cli("check", "--worker", "t-web-local-worker-04")
    import_runbook(workdeck, tmp_path, contained(image, "echo inside").replace(
        'name = "Contained"', 'name = "On the pool"').replace(
        "container =", 'pool = "Docker Web Worker Pool"\ncontainer ='), name="pool.toml")
    done = wait_run(workdeck, launch(workdeck, "On the pool")["id"],
                    lambda r: r["finished_at"])
    assert "set to run steps in an image with docker" in done["steps"][0]["reason"]
    # Changed after they were added: the pool to any engine, the first worker to podman.
    changed = workdeck.cli("pool", "set", "Docker Web Worker Pool", "--engine", "any")
    assert changed.code == 0 and "the first engine that answers" in changed.out
    done = wait_run(workdeck, launch(workdeck, "On the pool")["id"],
                    lambda r: r["finished_at"])
    assert done["status"] == "succeeded", done["steps"][0]["reason"]
    changed = workdeck.cli("worker", "set", "t-web-local-worker-01", "--engine", "podman",
                           "--capacity", "2")
    assert changed.code == 0, changed.err
    assert changed.out.strip() == ("Worker t-web-local-worker-01: 2 slots, containers with "
                                   "podman.")
    done = wait_run(workdeck, launch(workdeck, "On docker")["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded", done["steps"][0]["reason"]
    refused = workdeck.cli("worker", "set", "t-web-local-worker-01")
    assert refused.code != 0 and "Say what to change" in refused.err
    with workdeck.client() as client:
        changes = [(e["action"], e["detail"]) for e in client.get("/api/audit")]
    assert ("worker.set", "capacity 4 to 2; engine docker to podman") in changes
    assert ("pool.set", "engine docker to any") in changes


def test_an_image_the_engine_must_fetch_shows_its_progress_in_the_log(builtin, image,
                                                                      tmp_path):
    # Nothing can be pulled from a registry here: the engine fetches the image from an
    # archive instead, which it reports as it would a pull.
    archive = tmp_path / "image.tar"
    subprocess.run(["podman", "save", "--format", "oci-archive", "-o", str(archive), image],
                   check=True, capture_output=True)
    workdeck = builtin
    import_runbook(workdeck, tmp_path, contained(f"oci-archive:{archive}", "echo inside"))
    run = launch(workdeck, "Contained")
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=60)
    assert done["status"] == "succeeded", done["steps"][0]["reason"]
    lines = log_lines(workdeck, run["id"])
    texts = [line["text"] for line in lines]
    progress = [t for t in texts if t.startswith(("Getting image source", "Copying blob"))]
    assert progress, texts
    assert texts.index("inside") > texts.index(progress[-1])  # fetched, then run
    assert containers() == []
