"""/metrics under gunicorn: prometheus-client's multiprocess mode, as the Procfile sets it up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics_state import registry_for
from tests.integration.test_web_cli import free_port, local_site, wait_for


def test_gunicorn_conf_sets_the_directory_before_prometheus_client_is_loaded(tmp_path):
    code = (
        "import bot.gunicorn_conf, os, prometheus_client.values as v;"
        "print(os.environ['PROMETHEUS_MULTIPROC_DIR']); print(v.ValueClass.__qualname__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )

    assert done.returncode == 0, done.stderr
    directory, value_class = done.stdout.split()
    assert "tipjar-metrics-" in directory and "MultiProcess" in value_class


def test_the_counts_of_every_web_worker_are_added_up(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    code = "from bot.metrics import observe_webhook; observe_webhook('invoice.paid', 'applied')"
    for _worker in range(2):
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)

    registry = registry_for(None, multiprocess_dir=str(directory))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }

    assert (
        samples[("tipjar_webhook_events_total", (("result", "applied"), ("type", "invoice.paid")))]
        == 2
    )


@pytest.mark.slow
def test_gunicorn_as_the_procfile_runs_it_serves_metrics_from_any_worker(tmp_path):
    procfile = (Path(__file__).parents[2] / "Procfile").read_text().splitlines()
    (web,) = [line.removeprefix("web:").strip() for line in procfile if line.startswith("web:")]
    port = free_port()
    env = local_site(
        tmp_path,
        f"http://127.0.0.1:{port}",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        SECRET_KEY="a-test-key-of-enough-length-for-the-app-0123456789",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {web}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        for _ in range(6):
            requests.get(f"http://127.0.0.1:{port}/claim", timeout=5)
        answers = [requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5) for _ in range(4)]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)

    for answer in answers:
        assert answer.status_code == 200
        families = list(text_string_to_metric_families(answer.text))
        names = {f.name for f in families}
        assert {"tipjar_database_up", "tipjar_escrow_held_minor", "tipjar_outbox_rows"} <= names
        # Six pages served by two workers, counted once each, whichever worker is asked.
        claims = [
            s.value
            for f in families
            for s in f.samples
            if s.name == "tipjar_http_requests_total"
            and s.labels == {"route": "/claim", "status": "200"}
        ]
        assert claims == [6]
    assert (tmp_path / "metrics").is_dir()
