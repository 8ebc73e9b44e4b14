"""One output directory, one run at a time: a second `mimo run` is refused at once. (A run
killed with kill -9 and recovered by the next: the shared run of tests/pipeline/runners/
test_local.py.)"""

import json
import os
import time

from conftest import MOVIES_FIXTURE_SPEC
from helpers import cli_run

from pipeline.runners.local import RunLockedError, output_lock, run_paths
from pipeline.spec import load_spec


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(tmp_path):
    spec = load_spec(MOVIES_FIXTURE_SPEC)
    paths = run_paths(spec, str(tmp_path / "runs"))
    with output_lock(paths):
        lock = os.path.join(os.path.dirname(paths.metadata_path), "run.lock")
        with open(lock) as f:
            holder = json.load(f)
        assert holder["pid"] == os.getpid()
        # In this process too (flock is per open file).
        try:
            with output_lock(paths):
                raise AssertionError("a second lock was granted")
        except RunLockedError as e:
            assert f'"pid": {os.getpid()}' in str(e)
        start = time.monotonic()
        result = cli_run(MOVIES_FIXTURE_SPEC, tmp_path / "runs", timeout=300)
        seconds = time.monotonic() - start
    assert result.returncode == 4, result.stderr[-2000:]
    assert f"{tmp_path / 'runs'} is in use by another run of this pipeline" in result.stderr
    assert f'"pid": {os.getpid()}' in result.stderr and "Traceback" not in result.stderr
    assert seconds < 120  # refused before any component runs
    assert not os.path.exists(paths.pipeline_root)
    # Released with the run: the next one gets it.
    with output_lock(paths):
        pass
