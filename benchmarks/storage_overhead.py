"""Wall time of the same build read from and written to local disk, the GCS emulator and a moto S3 server.

Starts both servers on 127.0.0.1, uploads the demo's MSD-layout CT task (5 cases, one of them
truncated on purpose) to each, then runs `medvision-pipeline build` three times side by side
(local -> local, gs -> gs, s3 -> s3) and prints times and ratios to local. Round-robin
repetitions keep the comparison fair on a noisy machine.

    python benchmarks/storage_overhead.py --repeat 2 [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import storage
from pipeline.sources import demo

TASK = "Task01_DemoCT"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_servers():
    """(GCS emulator, moto server, Beam options for S3); the emulator is exported for child processes."""
    from gcp_storage_emulator.server import create_server
    from moto.server import ThreadedMotoServer

    gcs_port, s3_port = free_port(), free_port()
    gcs = create_server("127.0.0.1", gcs_port, in_memory=True)
    gcs.start()
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{gcs_port}"
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    s3_options = [
        f"--s3_endpoint_url=http://127.0.0.1:{s3_port}",
        "--s3_access_key_id=bench",
        "--s3_secret_access_key=bench",
        "--s3_region_name=us-east-1",
    ]
    storage.configure(storage.StorageSettings(gcs_anonymous=True, gcs_project="bench"))
    FileSystems.set_options(PipelineOptions(s3_options))
    storage.gcs_filesystem().mkdir("bench")
    boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{s3_port}",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    ).create_bucket(Bucket="bench")
    return gcs, s3, s3_options


def upload(local_root: str, uri_root: str) -> None:
    for folder, _, names in os.walk(local_root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                storage.write_bytes(storage.join(uri_root, os.path.relpath(path, local_root)), handle.read())


def timed_build(source: str, output: str, extra: list[str]) -> float:
    command = [sys.executable, "-m", "pipeline.cli", "build", "--source", f"msd={source}", "--output", output, *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    if result.returncode != 0:
        raise SystemExit(f"build failed: {shlex.join(command)}\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    print("$", shlex.join([sys.executable, *sys.argv]))
    workdir = tempfile.mkdtemp(prefix="storage-bench-")
    demo.generate(os.path.join(workdir, "demo"))
    local_task = os.path.join(workdir, "demo", TASK)
    gcs, s3, s3_options = start_servers()
    try:
        upload(local_task, f"gs://bench/raw/{TASK}")
        upload(local_task, f"s3://bench/raw/{TASK}")
        workers = (
            ["--direct_num_workers", str(args.workers), "--direct_running_mode", "multi_processing"]
            if args.workers > 1
            else []
        )
        runs = {
            "local": lambda n: timed_build(local_task, os.path.join(workdir, f"out{n}"), workers),
            "gs": lambda n: timed_build(f"gs://bench/raw/{TASK}", f"gs://bench/out{n}", ["--gcs-anonymous", *workers]),
            "s3": lambda n: timed_build(f"s3://bench/raw/{TASK}", f"s3://bench/out{n}", [*s3_options, *workers]),
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for n in range(args.repeat):
            for name, run in runs.items():
                seconds[name].append(run(n))
    finally:
        gcs.stop()
        s3.stop()
    local = statistics.median(seconds["local"])
    print(f"{TASK}: 5 cases, {args.workers} worker process(es), median of {args.repeat} round-robin runs")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(
            f"{name:>6}: {median:6.1f} s  ({median / local:4.2f}x local)  runs: "
            + ", ".join(f"{v:.1f}" for v in values)
        )


if __name__ == "__main__":
    main()
