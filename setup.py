"""medvision-pipeline: a Beam pipeline that builds quantitative medical-imaging pairs for VLMs."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', Path("pipeline/version.py").read_text()).group(1)
BEAM = "apache-beam>=2.77,<2.78"

setup(
    name="medvision-pipeline",
    version=VERSION,
    description="Distributed build of quantitative medical-imaging image-annotation pairs (MedVision tasks)",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(
        include=[
            "pipeline",
            "pipeline.*",
            "transforms",
            "transforms.*",
            "schemas",
            "schemas.*",
            "consumers",
            "consumers.*",
        ]
    ),
    package_data={"schemas": ["snapshots/*.txt"]},
    install_requires=[
        BEAM,
        "pyarrow>=16,<26",  # Beam 2.77 pins pyarrow<26
        "numpy>=1.26,<2.5",  # Beam 2.77 pins numpy<2.5
        "SimpleITK>=2.3,<3",
        "nibabel>=5.2,<6",
        "pydicom>=3,<4",
        "pylibjpeg>=2",  # with pylibjpeg-libjpeg: JPEG Lossless and JPEG-LS DICOM pixel data
        "pylibjpeg-libjpeg>=2",
        "scikit-image>=0.22,<0.27",
        "pillow>=10,<13",
        "opencv-python-headless>=4.9,<6",  # PNG encoding (chosen by measurement: benchmarks/png_encoders.py)
        "matplotlib>=3.8,<4",  # dataset card figures
        "pyyaml>=5.1",  # dataset card front matter (also a Beam dependency)
        "duckdb>=1.1",  # mix: selection over every pair's metadata, spilling to disk (consumers/mix.py)
        # Object storage works right after `pip install .`: gs:// through gcsfs (newer gcsfs
        # releases build on google-cloud-storage), s3:// through Beam's S3 filesystem, which needs boto3.
        "gcsfs>=2024.2",
        "google-cloud-storage>=2.14,<4",
        "boto3>=1.9,<2",
    ],
    extras_require={
        # Beam's own GCP and AWS clients: Dataflow submission (the gcp extra) and its I/O connectors.
        "gcp": ["apache-beam[gcp]>=2.77,<2.78"],
        "aws": ["apache-beam[aws]>=2.77,<2.78"],
        "test": [
            "pytest>=8,<10",
            "ruff==0.17.6",  # lint and format check (pyproject.toml), run by run_tests.sh; pinned: its format changes
            "mypy==2.4.1",  # type check (pyproject.toml), run by run_tests.sh; pinned: new versions find new errors
            "hypothesis>=6.100,<7",
            "apache-beam[gcp,aws]>=2.77,<2.78",
            "gcsfs>=2024.2",
            "gcp-storage-emulator>=2024.8",
            "moto[server]>=5,<6",
            "nilearn>=0.10",  # its bundled MNI152 template is a real file for the tests
            "pydicom-data>=1",  # its liver.dcm is a real DICOM SEG for the tests
            "datasets>=3",  # the readers users open the output with
            "duckdb>=1",
            "polars>=1",
        ],
    },
    entry_points={"console_scripts": ["medvision-pipeline = pipeline.cli:console_main"]},
)
