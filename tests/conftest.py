"""Shared fixtures: NIfTI phantom writers, a tiny MSD-layout dataset and the demo data."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline import storage
from pipeline.sources import demo
from transforms.phantoms import Cuboid, Ellipsoid, centred_affine, intensities, rasterize

REPO = pathlib.Path(__file__).resolve().parents[1]  # the repository root

# --- NIfTI files ------------------------------------------------------------------------------


def write_nifti(path, array, affine) -> str:
    """Write a .nii.gz with sform and qform set; returns the path as str."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(demo.nifti_gz_bytes(array, affine))
    return str(path)


BRAIN_MSD_LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}


def brain_case(seed: int, orientation: str = "LPS", spacing=(1.0, 1.2, 1.5)):
    """A 4-channel brain-tumour-like 4D image (channels last) and its 3-label map."""
    shape = (40, 36, 30)
    affine = centred_affine(shape, orientation, spacing)
    structures = (
        Ellipsoid(1, (0.0, 0.0, 0.0), (12.0, 10.0, 9.0)),
        Cuboid(2, (-4.0, -4.0, -4.0), (4.0, 4.0, 4.0)),
        Cuboid(3, (-2.0, -2.0, -2.0), (2.0, 2.0, 2.0)),
    )
    labels = rasterize(shape, affine, structures)
    channels = [intensities(labels, {1: 300.0 + 50 * c, 2: 600.0, 3: 900.0}, 100.0, 10.0, seed + c) for c in range(4)]
    return np.stack(channels, axis=-1).astype(np.int16), labels, affine


def make_msd_task(root, n_cases: int = 3, broken: str | None = None) -> str:
    """An MSD BrainTumour-style task folder (4D images, dataset.json, macOS '._' debris).

    `broken` = 'unknown_label' puts label 7 (not in dataset.json) into the last case's mask.
    """
    task = os.path.join(str(root), "Task01_BrainTumour")
    training = []
    for index in range(n_cases):
        name = f"BRATS_{index + 1:03d}.nii.gz"
        image, labels, affine = brain_case(seed=10 * index)
        if broken == "unknown_label" and index == n_cases - 1:
            labels[labels == 3] = 7
        write_nifti(os.path.join(task, "imagesTr", name), image, affine)
        write_nifti(os.path.join(task, "labelsTr", name), labels, affine)
        with open(os.path.join(task, "imagesTr", "._" + name), "wb") as handle:
            handle.write(b"\x00\x05\x16\x07 macOS resource fork")
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {
        "name": "BRATS",
        "licence": "CC-BY-SA 4.0",
        "tensorImageSize": "4D",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": BRAIN_MSD_LABELS,
        "numTraining": n_cases,
        "training": training,
        "test": [],
    }
    with open(os.path.join(task, "dataset.json"), "w") as handle:
        json.dump(meta, handle)
    return task


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> str:
    """The demo dataset, generated once per test session at the demo's default root.

    The default root follows XDG_CACHE_HOME, pointed here at a temporary folder so tests
    never write into the user's cache.
    """
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    root = demo.DemoSource().default_root()
    demo.generate(root)
    return root


@pytest.fixture
def msd_task(tmp_path) -> str:
    return make_msd_task(tmp_path / "msd", broken="unknown_label")


# --- storage servers (real emulators on 127.0.0.1, started by the tests) ---------------------------

# What the session's storage fixtures configured; every test starts from it.
SESSION_STORAGE: dict = {}


@pytest.fixture(autouse=True)
def process_storage_restored():
    """Each test starts from the storage access the session's fixtures set (gcsfs settings, Beam's S3
    options): a CLI run in this process, in a test or a module fixture, reconfigures it from its own
    arguments."""
    from apache_beam.io.filesystems import FileSystems

    if "settings" in SESSION_STORAGE:
        storage.configure(SESSION_STORAGE["settings"])
    if "s3_options" in SESSION_STORAGE:
        FileSystems.set_options(SESSION_STORAGE["s3_options"])
    yield


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """A gcp-storage-emulator server; exported as STORAGE_EMULATOR_HOST for this process and its children."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    SESSION_STORAGE["settings"] = storage.StorageSettings(gcs_anonymous=True, gcs_project="medvision-test")
    storage.configure(SESSION_STORAGE["settings"])
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server; returns the Beam options that reach it (set for this process too)."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = [
        f"--s3_endpoint_url=http://127.0.0.1:{port}",
        "--s3_access_key_id=testing",
        "--s3_secret_access_key=testing",
        "--s3_region_name=us-east-1",
    ]
    SESSION_STORAGE["s3_options"] = PipelineOptions(options)
    FileSystems.set_options(SESSION_STORAGE["s3_options"])
    yield options
    server.stop()


def s3_client(s3_options: list[str]):
    """A boto3 client of the `s3_server` that these Beam options reach."""
    import boto3

    endpoint = next(option for option in s3_options if option.startswith("--s3_endpoint_url="))
    return boto3.client(
        "s3",
        endpoint_url=endpoint.split("=", 1)[1],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def upload_tree(local_root: str, uri_root: str) -> None:
    """Copy every file under a local folder to the same relative paths under a URI."""
    for folder, _, names in os.walk(local_root):
        for name in names:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, local_root).replace(os.sep, "/")
            with open(path, "rb") as handle:
                storage.write_bytes(storage.join(uri_root, relative), handle.read())


def wait_for_port(port: int, process, timeout_s: float) -> None:
    """Until something listens on 127.0.0.1:port; fails early if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s: {process.args}")


@pytest.fixture(scope="session")
def portable_runner_options():
    """Beam's local job service and an EXTERNAL worker pool on loopback: the Flink submission path.

    The pool starts SDK workers as `python` from PATH, so this project's interpreter goes first
    on PATH (otherwise workers die on import and the job hangs). Returns the Beam options.
    """
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    job_port, pool_port = free_port(), free_port()
    commands = (
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"],
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"],
    )
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for command in commands
    ]
    try:
        for port, process in zip((job_port, pool_port), processes):
            wait_for_port(port, process, timeout_s=60)
        yield [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def real_cases(tmp_path_factory):
    """The real clinical cases of ../shared/reference/realdata built in both conventions, once per module."""
    from tests import realdata_fixtures

    return realdata_fixtures.build_real_cases(tmp_path_factory)
