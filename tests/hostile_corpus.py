"""A hostile input corpus, generated: one MSD-layout task where good cases sit next to files made to
read what they should not, crash, hang or blow up a build (issue: untrusted inputs).

`make_corpus(base)` lays out

    base/secret.raw                     a secret next to the dataset (outside the source root)
    base/other_dataset/stolen.nii.gz    a volume of another dataset (outside the root)
    base/data/Task01_Hostile/...        the source root: dataset.json, imagesTr/, labelsTr/

and returns the root, the expected reason of each case id (None: builds) and the secret strings no
output byte may contain.
"""

from __future__ import annotations

import gzip
import json
import os

import nibabel as nib
import numpy as np

from tests.conftest import write_nifti
from tests.formats import write_itk
from transforms.errors import Reason
from transforms.phantoms import Cuboid, centred_affine, rasterize

TASK = "Task01_Hostile"
SHAPE, SPACING = (32, 28, 10), (0.8, 0.9, 2.0)
SECRET_FILE_TEXT = b"SECRET-FILE-5d1c0e7b"
# Runs the CLI in a fresh interpreter and reports its peak RSS (VmHWM) on the last stderr line.
CLI_WITH_PEAK = (
    "import sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
    "print(f'peak_kib={hwm}', file=sys.stderr); sys.exit(rc)"
)
# A label name that would inject a heading and a script into the dataset card if copied as markup.
MARKUP_LABEL = "organ\n# Injected heading\n<script>alert('card')</script><img src=x onerror=alert(1)>"
SECRET_ENV = {"AWS_SECRET_ACCESS_KEY": "SECRET-AWS-0a9f3c", "GOOGLE_OAUTH_TOKEN": "SECRET-GCP-77e2b1"}


def phantom():
    affine = centred_affine(SHAPE, "LPS", SPACING)
    labels = rasterize(SHAPE, affine, (Cuboid(1, (-6.0, -5.0, -4.0), (6.0, 5.0, 4.0)),))
    return (labels.astype(np.int16) * 300 - 100), labels.astype(np.uint8), affine


def _nifti_bytes(array, affine, header_edit=None, compress=True) -> bytes:
    """A single-file NIfTI-1 written by hand (voxels at byte 352), so a header may be edited to lie."""
    image = nib.Nifti1Image(array, affine, dtype=np.asanyarray(array).dtype)
    image.set_qform(affine, code=1)
    image.header["vox_offset"] = 352
    if header_edit:
        header_edit(image.header)
    blob = image.header.binaryblock + b"\x00" * 4 + np.asanyarray(array).tobytes(order="F")
    return gzip.compress(blob, mtime=0) if compress else blob


class Corpus:
    """Writes files under the task folder and records dataset.json entries and expected reasons."""

    def __init__(self, base: str):
        self.base = base
        self.root = os.path.join(base, "data")
        self.task = os.path.join(self.root, TASK)
        self.entries: list[dict] = []
        self.expected: dict[str, str | None] = {}
        for folder in ("imagesTr", "labelsTr"):
            os.makedirs(os.path.join(self.task, folder), exist_ok=True)
        self.image, self.labels, self.affine = phantom()
        self.good_mask = self.write("labelsTr/good_mask.nii.gz", _nifti_bytes(self.labels, self.affine))

    def path(self, relative: str) -> str:
        return os.path.join(self.task, *relative.split("/"))

    def write(self, relative: str, data: bytes) -> str:
        with open(self.path(relative), "wb") as handle:
            handle.write(data)
        return relative

    def add(self, name: str, image: str, reason: Reason | None, label: str | None = None) -> None:
        self.entries.append({"image": f"./{image}", "label": f"./{label or self.good_mask}"})
        self.expected[f"{TASK}/{name}"] = reason.value if reason else None

    def mask_case(self, name: str, mask, reason: Reason | None, suffix: str = ".nii.gz") -> None:
        """A good image (its own copy: a case is named by its image) with a bad mask (bytes or an array)."""
        data = mask if isinstance(mask, bytes) else _nifti_bytes(mask, self.affine)
        image = self.write(f"imagesTr/{name}.nii.gz", _nifti_bytes(self.image, self.affine))
        self.add(name, image, reason, self.write(f"labelsTr/{name}{suffix}", data))

    def nifti(
        self,
        name: str,
        reason: Reason | None,
        array=None,
        header_edit=None,
        compress=True,
        cut_bytes: int | None = None,
    ) -> None:
        data = _nifti_bytes(self.image if array is None else array, self.affine, header_edit, compress)
        suffix = ".nii.gz" if compress else ".nii"
        self.add(name, self.write(f"imagesTr/{name}{suffix}", data[:cut_bytes] if cut_bytes else data), reason)

    def header_text(self, name: str, suffix: str, text: str, reason: Reason | None) -> None:
        self.add(name, self.write(f"imagesTr/{name}{suffix}", text.encode()), reason)

    def dataset_json(self) -> None:
        meta = {
            "name": "hostile",
            "modality": {"0": "CT"},
            "labels": {"0": "background", "1": MARKUP_LABEL},
            "training": self.entries,
        }
        with open(os.path.join(self.task, "dataset.json"), "w") as handle:
            json.dump(meta, handle)
        broken = os.path.join(self.root, "Task03_BrokenIndex")  # a listing that is not JSON: its task only
        os.makedirs(broken)
        with open(os.path.join(broken, "dataset.json"), "w") as handle:
            handle.write('{"training": [')
        self.expected["Task03_BrokenIndex"] = Reason.BAD_LISTING.value


NRRD_HEADER = (
    "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 32 28 10\n"
    "space directions: (0.8,0,0) (0,0.9,0) (0,0,2)\nkinds: domain domain domain\nendian: little\n"
    "encoding: raw\nspace origin: (0,0,0)\n"
)
META_HEADER = (
    "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
    "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nElementSpacing = 0.8 0.9 2\n"
    "DimSize = 32 28 10\nElementType = MET_SHORT\n"
)


def _confinement_cases(corpus: Corpus, links: bool) -> None:
    """Files whose header, link or kind would make a reader open something outside the root."""
    with open(os.path.join(corpus.base, "secret.raw"), "wb") as handle:
        handle.write(SECRET_FILE_TEXT * 1000)
    other = os.path.join(corpus.base, "other_dataset")
    os.makedirs(other, exist_ok=True)
    write_nifti(os.path.join(other, "stolen.nii.gz"), corpus.image, corpus.affine)
    # detached headers kept inside their folder are read (hashed with their data file)
    write_itk(corpus.path("imagesTr/good_nhdr.nhdr"), corpus.image, corpus.affine)
    corpus.add("good_nhdr", "imagesTr/good_nhdr.nhdr", None)
    write_itk(corpus.path("imagesTr/good_mhd.mhd"), corpus.image, corpus.affine)
    corpus.add("good_mhd", "imagesTr/good_mhd.mhd", None)
    unsafe = Reason.UNSAFE_PATH
    corpus.header_text("nhdr_environ", ".nhdr", NRRD_HEADER + "data file: /proc/self/environ\n\n", unsafe)
    corpus.header_text("nhdr_stdin", ".nhdr", NRRD_HEADER + "data file: /dev/stdin\n\n", unsafe)
    corpus.header_text("nrrd_dotdot", ".nrrd", NRRD_HEADER + "data file: ../../../secret.raw\n\n", unsafe)
    corpus.header_text("nrrd_list", ".nrrd", NRRD_HEADER + "data file: LIST\n/etc/passwd\n\n", unsafe)
    corpus.header_text("nhdr_pattern", ".nhdr", NRRD_HEADER + "datafile: /etc/passwd%d 0 9 1\n\n", unsafe)
    corpus.header_text("mhd_passwd", ".mhd", META_HEADER + "ElementDataFile = /etc/passwd\n", unsafe)
    corpus.header_text("mha_secret", ".mha", META_HEADER + "ElementDataFile = ../../../secret.raw\n", unsafe)
    if links:
        _link_cases(corpus, other)


def _link_cases(corpus: Corpus, other: str) -> None:
    """Links out of the root, to a device, a FIFO (object stores have none of these)."""
    unsafe = Reason.UNSAFE_PATH
    os.symlink(os.path.join(other, "stolen.nii.gz"), corpus.path("imagesTr/link_out.nii.gz"))
    corpus.add("link_out", "imagesTr/link_out.nii.gz", unsafe)
    os.symlink("/dev/zero", corpus.path("imagesTr/zero_link.nii"))
    corpus.add("zero_link", "imagesTr/zero_link.nii", unsafe)
    os.mkfifo(corpus.path("imagesTr/fifo.nii.gz"))
    corpus.add("fifo", "imagesTr/fifo.nii.gz", unsafe)
    os.symlink("/etc", corpus.path("imagesTr/etc_series"))
    corpus.entries.append({"image": "./imagesTr/etc_series/", "label": f"./{corpus.good_mask}"})
    corpus.expected[f"{TASK}/etc_series"] = unsafe.value
    # a task whose dataset.json is a link to /dev/zero: that task is refused, the listing goes on
    index = os.path.join(corpus.root, "Task02_ZeroIndex", "dataset.json")
    os.makedirs(os.path.dirname(index))
    os.symlink("/dev/zero", index)
    corpus.expected["Task02_ZeroIndex"] = Reason.BAD_LISTING.value
    # a link that stays inside the root is followed (policy: README "Reliability and security")
    os.symlink("good_nifti.nii.gz", corpus.path("imagesTr/link_inside.nii.gz"))
    corpus.add("link_inside", "imagesTr/link_inside.nii.gz", None)


def _set(field, value):
    def edit(header):
        header[field] = value

    return edit


def _decode_cases(corpus: Corpus) -> None:
    """Files that are cut short, lie about their size or are not what their name says."""
    corpus.nifti("good_nifti", None)
    corpus.nifti("truncated_nii", Reason.TRUNCATED_FILE, compress=False, cut_bytes=2000)
    corpus.nifti("lying_gz", Reason.TRUNCATED_FILE, header_edit=lambda h: h.set_data_shape((32, 28, 40)))
    corpus.nifti("offset_past_end", Reason.TRUNCATED_FILE, compress=False, header_edit=_set("vox_offset", 10**6))
    truncated_mask = _nifti_bytes(corpus.labels, corpus.affine, compress=False)[:1500]
    corpus.mask_case("truncated_mask", truncated_mask, Reason.TRUNCATED_FILE, ".nii")
    corpus.mask_case("not_dicom_mask", b"this is not DICOM" * 40, Reason.UNREADABLE, ".dcm")


def _cost_cases(corpus: Corpus) -> None:
    """Tiny files that declare enormous work."""
    stretched = corpus.affine @ np.diag([1.0, 1.0, 5e5, 1.0])  # a slice gap of 1e6 mm, mask on the same grid
    image = corpus.write("imagesTr/huge_spacing.nii.gz", _nifti_bytes(corpus.image, stretched))
    mask = corpus.write("labelsTr/huge_spacing.nii.gz", _nifti_bytes(corpus.labels, stretched))
    corpus.add("huge_spacing", image, Reason.IMPLAUSIBLE_GEOMETRY, mask)
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int8)
    header.set_data_shape((1024, 1024, 1024))
    header.set_qform(corpus.affine, code=1)
    bomb = gzip.compress(header.binaryblock + b"\x00" * 4 + b"\x00" * (8 << 20), mtime=0)  # 1 Gvoxel declared
    corpus.add("zeros_bomb", corpus.write("imagesTr/zeros_bomb.nii.gz", bomb), Reason.TOO_LARGE)
    corpus.nifti("big_extensions", Reason.TOO_LARGE, header_edit=_set("vox_offset", 2**31))
    huge_label = corpus.labels.astype(np.int32)
    huge_label[huge_label == 1] = 2**26
    corpus.mask_case("label_2_26", huge_label, Reason.UNKNOWN_LABEL)
    # loads, but each slice's label is in over MAX_COMPONENTS_PER_LABEL pieces: refused slice by slice
    corpus.mask_case("checkerboard", (np.indices(SHAPE).sum(axis=0) % 2).astype(np.uint8), None)


def _wrong_data_cases(corpus: Corpus) -> None:
    """Headers that used to be guessed at, or refused with the wrong reason."""

    def no_forms_zero_pixdim(header):
        header.set_sform(None, code=0)
        header.set_qform(None, code=0)
        header["pixdim"] = [1, 0, 0, 0, 1, 1, 1, 1]

    corpus.nifti("pixdim_zero", Reason.BAD_AFFINE, header_edit=no_forms_zero_pixdim)

    def nan_quaternion(header):
        header.set_sform(None, code=0)
        header["quatern_b"] = np.nan

    corpus.nifti("nan_quaternion", Reason.BAD_AFFINE, header_edit=nan_quaternion)
    corpus.nifti("complex_image", Reason.UNSUPPORTED_PIXEL_TYPE, array=corpus.image.astype(np.complex64))
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    corpus.nifti("rgb_image", Reason.UNSUPPORTED_PIXEL_TYPE, array=rgb)
    corpus.nifti("nan_image", Reason.NONFINITE_IMAGE, array=np.full(SHAPE, np.nan, np.float32))

    def overflowing_slope(header):
        header["scl_slope"], header["scl_inter"] = 1e38, 0.0

    corpus.nifti("slope_overflow", Reason.NONFINITE_IMAGE, header_edit=overflowing_slope)
    corpus.nifti("five_d", Reason.BAD_SHAPE, array=np.zeros(SHAPE + (1, 2), np.int16))
    corpus.nifti("negative_dim", Reason.BAD_SHAPE, header_edit=_set("dim", [3, 32, -28, 10, 1, 1, 1, 1]))
    corpus.mask_case("uint64_mask", corpus.labels.astype(np.uint64), None)
    corpus.mask_case("two_channel_mask", np.stack([corpus.labels] * 2, axis=-1), Reason.BAD_SHAPE)
    corpus.mask_case("float_label_2_31", corpus.labels.astype(np.float32) * 2.0**31, Reason.UNKNOWN_LABEL)
    header = nib.Nifti2Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((2**31, 2**31, 2**31))
    header.set_qform(corpus.affine, code=1)
    overflow = gzip.compress(header.binaryblock + b"\x00" * 4 + b"\x00" * 4096, mtime=0)
    corpus.add("nifti2_overflow", corpus.write("imagesTr/nifti2_overflow.nii.gz", overflow), Reason.TOO_LARGE)


def make_corpus(base: str, links: bool = True) -> tuple[str, dict[str, str | None], list[bytes]]:
    """The corpus under `base`: (source root, expected reason per case id, secrets). `links`: also the
    symlinks, FIFO and device cases (a local disk has them, an object store does not)."""
    corpus = Corpus(base)
    _decode_cases(corpus)  # first: writes good_nifti, which the link cases point at
    _confinement_cases(corpus, links)
    _cost_cases(corpus)
    _wrong_data_cases(corpus)
    corpus.dataset_json()
    secrets = [SECRET_FILE_TEXT, b"root:x:0:0", *(value.encode() for value in SECRET_ENV.values())]
    return corpus.root, corpus.expected, secrets
