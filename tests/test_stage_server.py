"""avvp.benchmarks.stage_server: stages forked from a process that imported avvp give what fresh processes give.

The fresh process is the oracle: the same stages run both ways (AVVP_STAGE_PROCESSES=fresh|server), each into a
cache of the same relative name, must write the same weights, labels and predictions byte for byte. Every other
test of the tables and the label curve runs its stages through the server (the default here).
"""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from avvp.benchmarks.stage_server import StageServer, close_shared_server, served_script, server_applies
from avvp.benchmarks.tables import (
    StageCache,
    console_script,
    encoder_stage,
    finetune_stage,
    grounding_stage,
    select_rows,
)
from avvp.errors import AvvpError

pytestmark = pytest.mark.skipif(not server_applies([]), reason="the stage server runs on Linux only")


def stage_files(cache: Path) -> dict[str, bytes]:
    """Every file the stages wrote that holds no time and no path (weights, stores, labels, predictions), by stage
    name (without its key, which hashes files that hold paths) and path inside the stage."""
    kept = {}
    for path in sorted(cache.rglob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".h5", ".csv"):
            stage, *inside = path.relative_to(cache).parts
            kept["/".join([stage.rsplit("-", 1)[0], *inside])] = path.read_bytes()
    return kept


def test_stages_from_the_server_write_the_bytes_of_fresh_processes(tiny_llp, tmp_path, monkeypatch):
    written = {}
    for mode in ("fresh", "server"):
        monkeypatch.setenv("AVVP_STAGE_PROCESSES", mode)
        (tmp_path / mode).mkdir()
        monkeypatch.chdir(tmp_path / mode)  # the same relative cache path both ways: the configs record it
        cache = StageCache(Path("cache"), verbose=False)
        try:
            labels = grounding_stage(cache, tiny_llp / "pretrain.h5", "tiny")
            encoder_stage(cache, tiny_llp / "pretrain.h5", labels, "tiny", 0, "multi", pretrain_args=("--epochs", "1"))
            (base,) = select_rows(["Base (paper recipe)"])
            argv, inputs = finetune_stage(base, tiny_llp / "llp.h5", tiny_llp, "tiny", 0, epochs=1)
            cache.run("finetune-base-seed0", argv, inputs)
        finally:
            cache.close()
        written[mode] = stage_files(Path("cache"))
    names = sorted(written["server"])
    assert any(name.endswith("model.safetensors") for name in names) and any("pred_" in name for name in names)
    assert "grounding/avg.h5" in names and names == sorted(written["fresh"])
    assert [name for name in names if written["server"][name] != written["fresh"][name]] == []


def test_the_caches_of_a_process_share_its_server_and_each_stage_runs_in_its_callers_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("AVVP_STAGE_PROCESSES", "server")
    servers = []
    for caller in ("first", "second"):
        (tmp_path / caller).mkdir()
        monkeypatch.chdir(tmp_path / caller)
        cache = StageCache(Path("cache"), verbose=False)  # relative paths: the stage resolves them where it is called
        try:
            synth = [console_script("avvp"), "data", "synth", "--preset", "tiny", "--out", "{out}/x"]
            folder = cache.run("data", synth, {})
            servers.append(cache._stage_server)
        finally:
            cache.close()
        assert (tmp_path / caller / folder / "x" / "llp.h5").is_file()
    first, second = servers
    assert first is second and first.alive()
    assert first._error_log == tmp_path / "first" / "cache" / ".stage-server.log"  # the cache that started it
    close_shared_server()
    assert not first.alive() and not list(tmp_path.rglob(".stage-server.log"))  # an empty log is not left behind


def test_a_failing_or_interrupted_stage_in_the_server_ends_as_a_fresh_process_does(tiny_llp, tmp_path, monkeypatch):
    monkeypatch.setenv("AVVP_STAGE_PROCESSES", "server")
    cache = StageCache(tmp_path / "cache", verbose=False)
    finetune = console_script("avvp-finetune")
    assert served_script([finetune]) == "avvp-finetune" and served_script(["/bin/avvp-finetune"]) is None
    try:
        missing = [finetune, "--features", str(tmp_path / "absent.h5"), "--annotations", str(tiny_llp)]
        with pytest.raises(AvvpError, match=r"(?s)stage bad failed \(exit 1\); log .*\nerror: .*absent\.h5"):
            cache.run("bad", [*missing, "--out", "{out}/run"], {})

        # Ctrl-C while a stage runs: the stage is killed, as subprocess.run kills a fresh one.
        server = cache._stage_server
        started = {}

        def interrupt_once_running() -> None:
            while not server._pids:
                time.sleep(0.05)
            started["pid"] = next(iter(server._pids.values()))
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the command's main thread is waiting for its stage

        endless = [finetune, "--features", str(tiny_llp / "llp.h5"), "--annotations", str(tiny_llp), "--preset"]
        endless += ["tiny", "--epochs", "100000", "--out", str(tmp_path / "endless")]
        threading.Thread(target=interrupt_once_running, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            server.run(endless, tmp_path / "endless.log")
        with pytest.raises(ProcessLookupError):  # killed and reaped
            os.kill(started["pid"], 0)
    finally:
        cache.close()
    assert cache._stage_server is None


def test_a_server_that_dies_is_an_error_naming_its_log(tmp_path):
    server = StageServer(dict(os.environ), tmp_path / "server.log")
    server._process.kill()
    with pytest.raises(AvvpError, match=r"the stage server ended \(exit -9\); log .*server\.log"):
        server.run([console_script("avvp"), "--help"], tmp_path / "log")
    server.close()


def test_the_switch_takes_server_or_fresh(monkeypatch):
    monkeypatch.setenv("AVVP_STAGE_PROCESSES", "fresh")
    assert not server_applies([])
    monkeypatch.setenv("AVVP_STAGE_PROCESSES", "server")
    assert server_applies([]) and not server_applies(["0"])  # a GPU per stage: fresh processes
    monkeypatch.setenv("AVVP_STAGE_PROCESSES", "fork")
    with pytest.raises(AvvpError, match="AVVP_STAGE_PROCESSES='fork': expected server or fresh"):
        server_applies([])
