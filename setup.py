"""Packaging that pyproject.toml cannot say on its own.

- The REST layer lives in the repository's api/ folder but is installed as
  ``xdpctl.api``: an installed xdpctl puts no generic top-level ``api``
  module into site-packages. The mapping works for wheels and for editable
  installs alike.
- Test-only code is not shipped (xdpctl.testing, if present in the tree).
- A wheel must carry the compiled BPF objects (xdpctl/bpf/*.o, built by
  ``make bpf``) and the C helpers (xdpctl/native/libxcnative.so.1, ``make
  native``): building one without them is an error, not a wheel that
  fails at the first attach or imports lists at numpy speed. The library
  makes the wheel one for this platform. Editable installs are exempt (``make deps``
  installs before ``make bpf``, and they read the objects from the tree).
  Likewise Swagger UI's bundle for /docs, which `make deps` fetches
  (tools/fetch_swagger_ui.py) instead of keeping it in git.
"""

from __future__ import annotations

import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution
from setuptools.errors import FileError

HERE = os.path.dirname(os.path.abspath(__file__))
API = "xdpctl.api"
BPF_OUT = os.path.join("xdpctl", "bpf")
NATIVE_SO = os.path.join("xdpctl", "native", "libxcnative.so.1")
SWAGGER_UI = os.path.join("api", "static", "vendor", "swagger-ui", "swagger-ui-bundle.js")


def expected_objects() -> list[str]:
    """Object names `make bpf` builds from the sources (bpf/xdp, bpf/tc)."""
    names = []
    for kind in ("xdp", "tc"):
        src = os.path.join(HERE, "bpf", kind)
        if os.path.isdir(src):
            names += [f"{kind}_{f[: -len('.bpf.c')]}.o" for f in sorted(os.listdir(src)) if f.endswith(".bpf.c")]
    return names


def missing_objects() -> list[str]:
    out = os.path.join(HERE, BPF_OUT)
    present = {f for f in os.listdir(out) if f.endswith(".o")} if os.path.isdir(out) else set()
    if not present and not expected_objects():
        return ["*.o"]
    return [name for name in expected_objects() if name not in present]


class BuildPyWithObjects(build_py):
    def run(self) -> None:
        if not self.editable_mode:
            missing = missing_objects()
            if missing:
                raise FileError(
                    f"{BPF_OUT} lacks the compiled BPF objects ({', '.join(missing)}): "
                    "run `make bpf` before building a wheel")
            if not os.path.exists(os.path.join(HERE, NATIVE_SO)):
                raise FileError(f"{NATIVE_SO} is missing: run `make native` before building a wheel")
            if not os.path.exists(os.path.join(HERE, SWAGGER_UI)):
                raise FileError(f"{SWAGGER_UI} is missing (fetched, not kept in git): run `make deps` "
                                "before building a wheel")
        super().run()


class WithNativeCode(Distribution):
    """The wheel holds a shared library built for this machine: it is
    tagged for this interpreter and platform, not as pure Python."""

    def has_ext_modules(self) -> bool:
        return True


setup(
    distclass=WithNativeCode,
    packages=find_packages(include=["xdpctl", "xdpctl.*"], exclude=["xdpctl.testing", "xdpctl.testing.*"])
    + ["xdpctl.bpf", API]
    + [f"{API}.{name}" for name in find_packages("api")],
    package_dir={API: "api"},
    package_data={"xdpctl.bpf": ["*.o"], "xdpctl.native": ["libxcnative.so.*"],
                  API: ["static/**/*"]},  # the /ui page and the vendored uPlot and Swagger UI
    cmdclass={"build_py": BuildPyWithObjects},
)
