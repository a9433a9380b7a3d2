"""An unexpected exception told without its text: its type and where in the code it was raised.

Quarantine messages are an output of the build. An exception's text may quote input (a header
field, a name from a listing) and a traceback names the worker's file paths, so neither reaches
a message: the summary holds the exception type and `module:line in function` locations only.
The full text belongs in the worker's log.
"""

from __future__ import annotations

import os
import posixpath
import re
import sysconfig

# A frame line of a formatted traceback: `  File "/path/to/module.py", line 12, in function`.
_FRAME = re.compile(r'^\s*File "(?P<path>[^"\n]+)", line (?P<line>\d+), in (?P<function>[^\n]+)$', re.MULTILINE)
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))).replace(os.sep, "/") + "/"
_STDLIB = sysconfig.get_paths()["stdlib"].replace(os.sep, "/").rstrip("/") + "/"
_PROJECT_PACKAGES = ("transforms.", "pipeline.", "schemas.")


def module_of(path: str) -> str:
    """A source file's dotted module name, without the folders it sits in on this machine
    (`.../site-packages/pydicom/valuerep.py` -> `pydicom.valuerep`; an unknown place gives the file name)."""
    path = path.replace(os.sep, "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            path = path.rsplit(marker, 1)[1]
            break
    else:
        prefix = next((root for root in (_PROJECT_ROOT, _STDLIB) if path.startswith(root)), None)
        path = path[len(prefix) :] if prefix else posixpath.basename(path)
    return path.removesuffix(".py").replace("/", ".")


def describe_exception(exc_type: type, trace: list[str]) -> str:
    """`ValueError at pydicom.valuerep:1032 in __new__, from transforms.dicom:52 in _vector`.

    `trace`: the lines of `traceback.format_exception`. The location is the deepest frame, followed by
    the deepest frame of this project's code when that is another one; the type alone when `trace`
    holds no frame.
    """
    frames = [(module_of(m["path"]), m["line"], m["function"]) for m in _FRAME.finditer("".join(trace))]
    summary = exc_type.__name__
    if not frames:
        return summary
    summary += " at {}:{} in {}".format(*frames[-1])
    own = [frame for frame in frames if frame[0].startswith(_PROJECT_PACKAGES)]
    if own and own[-1] != frames[-1]:
        summary += ", from {}:{} in {}".format(*own[-1])
    return summary
