"""What `pip install .` ships: built as a wheel from a copy of the tree and
installed into a fresh virtualenv that holds only the runtime dependencies.

- every module of the installed package imports with those dependencies;
- no generic top-level ``api`` module lands in site-packages (the REST
  layer is ``xdpctl.api``);
- the wheel carries the compiled BPF objects and the C helpers (a wheel
  for this platform), and a tree without either does not build a wheel;
- a non-root user gets exit 77 (and root a clear exit 12) when the state
  database cannot be opened, from a world-readable installed copy, so the
  test works when the checkout itself lives in a 0700 directory.

The virtualenv is built once per session (about a minute: pip installs the
runtime dependencies); every step has a time limit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
BUILD_TIMEOUT = 300
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 120
# Not part of a source tree: the checkout's own environments and outputs.
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                              ".hypothesis", "results", "*.stamp")


@dataclass(frozen=True)
class Installed:
    root: Path      # mode 0755: readable by every user
    wheel: Path
    python: Path    # the fresh virtualenv's interpreter
    xdpctl: Path    # its console script


def run(cmd: list, timeout: float = RUN_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def expected_objects() -> list[str]:
    return sorted(f"{kind}_{src.name.removesuffix('.bpf.c')}.o"
                  for kind in ("xdp", "tc") for src in (REPO / "bpf" / kind).glob("*.bpf.c"))


NATIVE = Path("xdpctl") / "native" / "libxcnative.so.1"


def copy_tree(dst: Path, objects: bool = True, native: bool = True) -> Path:
    shutil.copytree(REPO, dst, ignore=SKIP)
    if not objects:
        for obj in (dst / "xdpctl" / "bpf").glob("*.o"):
            obj.unlink()
    if not native:
        (dst / NATIVE).unlink()
    return dst


def build_wheel(src: Path, out: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", "-w", out, src],
               timeout=BUILD_TIMEOUT)


def world_runnable(path: str) -> bool:
    """Every directory on the way has o+x and the file has o+x."""
    parts = Path(path).parents
    return all(os.stat(d).st_mode & 0o001 for d in parts) and bool(os.stat(path).st_mode & 0o001)


def base_python() -> str:
    """An interpreter every user may run (the venv's programs run as nobody,
    and a checkout's interpreter may live under a 0700 home)."""
    own = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (own, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        if os.path.exists(cand) and world_runnable(cand):
            return cand
    raise AssertionError(f"no {minor} that every user can run (tried {own}, /usr/bin, /usr/local/bin)")


def open_to_all(root: Path) -> None:
    """a+rX on the whole tree, whatever umask pip and venv ran under."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0))


@pytest.fixture(scope="session")
def installed() -> Iterator[Installed]:
    missing = [o for o in expected_objects() if not (REPO / "xdpctl" / "bpf" / o).exists()]
    assert not missing, f"BPF objects missing ({', '.join(missing)}): run `make bpf` first"
    assert (REPO / NATIVE).exists(), f"{NATIVE} missing: run `make native` first"
    root = Path(tempfile.mkdtemp(prefix="xdpctl-pkg-"))
    try:
        root.chmod(0o755)
        src = copy_tree(root / "src")
        built = build_wheel(src, root / "dist")
        assert built.returncode == 0, built.stdout + built.stderr
        (wheel,) = (root / "dist").glob("xdpctl-*.whl")
        venv = root / "venv"
        made = run([base_python(), "-m", "venv", venv], timeout=BUILD_TIMEOUT)
        assert made.returncode == 0, made.stderr
        python = venv / "bin" / "python"
        pip = run([python, "-m", "pip", "install", "-qq", wheel], timeout=INSTALL_TIMEOUT)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        shutil.rmtree(src)
        open_to_all(root)
        yield Installed(root, wheel, python, venv / "bin" / "xdpctl")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Run in the installed interpreter, isolated (-I: no checkout on sys.path).
WALK = """
import importlib, importlib.util, json, pkgutil, traceback
import xdpctl
failed, names = {}, ["xdpctl"]
# __main__ modules run their program when imported: entry points, not modules
names += [m.name for m in pkgutil.walk_packages(xdpctl.__path__, "xdpctl.") if not m.name.endswith(".__main__")]
for name in names:
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=3)
print(json.dumps({"file": xdpctl.__file__, "modules": names, "failed": failed,
                  "top_level_api": importlib.util.find_spec("api") is not None}))
"""


def test_every_module_imports_with_runtime_dependencies_only(installed: Installed) -> None:
    res = run([installed.python, "-I", "-c", WALK], cwd=installed.root)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["file"].startswith(str(installed.root / "venv")), got["file"]
    assert got["failed"] == {}, "\n".join(f"{k}:\n{v}" for k, v in got["failed"].items())
    for name in ("xdpctl.api.app", "xdpctl.api.routers.rules", "xdpctl.demo", "xdpctl.lab", "xdpctl.cli",
                 "xdpctl.kernel.libbpf", "xdpctl.kernel.netlink"):
        assert name in got["modules"], name
    # nothing beyond the runtime dependencies was installed
    freeze = run([installed.python, "-m", "pip", "list", "--format=json"]).stdout
    present = {p["name"].lower() for p in json.loads(freeze)}
    assert not present & {"httpx", "scapy", "pytest", "hypothesis"}, present


def test_no_top_level_api_module(installed: Installed) -> None:
    res = run([installed.python, "-I", "-c", WALK], cwd=installed.root)
    assert json.loads(res.stdout)["top_level_api"] is False
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
        top = {n.split("/", 1)[0] for n in names if not n.startswith("xdpctl-")}
        top_level = whl.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode().split()
    assert top == {"xdpctl"} and top_level == ["xdpctl"], (top, top_level)


def test_wheel_carries_the_bpf_objects(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        shipped = sorted(n.removeprefix("xdpctl/bpf/") for n in whl.namelist() if n.startswith("xdpctl/bpf/"))
        assert shipped == expected_objects()
        for name in shipped:
            assert whl.read(f"xdpctl/bpf/{name}")[:4] == b"\x7fELF", name


def test_wheel_carries_the_native_helpers_and_says_its_platform(installed: Installed) -> None:
    """The C helpers ship in the wheel, the installed package loads them,
    and the wheel is tagged for this platform (it holds machine code)."""
    with zipfile.ZipFile(installed.wheel) as whl:
        assert whl.read(NATIVE.as_posix())[:4] == b"\x7fELF"
    assert not installed.wheel.name.endswith("-none-any.whl"), installed.wheel.name
    res = run([installed.python, "-I", "-c", "from xdpctl import native; print(native.lib() is not None)"],
              cwd=installed.root)
    assert res.returncode == 0 and res.stdout.strip() == "True", res.stdout + res.stderr


@pytest.mark.parametrize("missing, says", [
    ({"objects": False}, ("lacks the compiled BPF objects", "make bpf")),
    ({"native": False}, ("libxcnative.so.1 is missing", "make native")),
])
def test_wheel_without_built_parts_does_not_build(tmp_path: Path, missing: dict, says: tuple) -> None:
    src = copy_tree(tmp_path / "src", **missing)
    res = build_wheel(src, tmp_path / "dist")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert all(w in out for w in says), out
    assert not list((tmp_path / "dist").glob("*.whl"))


def test_help_advertises_only_what_exists(installed: Installed) -> None:
    res = run([installed.xdpctl, "--help"], cwd=installed.root)
    assert res.returncode == 0, res.stderr
    serve = run([installed.xdpctl, "serve", "--help"], cwd=installed.root)
    assert "load balanc" not in serve.stdout.lower() and "VIP" not in serve.stdout, serve.stdout
    # the load balancer is advertised by its command, which exists with every verb
    assert "load balanc" in res.stdout.lower(), res.stdout
    for args, verbs in ((["lb"], ("vip", "backend", "stats")), (["lb", "vip"], ("add", "del", "list")),
                        (["lb", "backend"], ("add", "del", "set", "list"))):
        sub = run([installed.xdpctl, *args, "--help"], cwd=installed.root)
        assert sub.returncode == 0, sub.stderr
        assert all(v in sub.stdout for v in verbs), sub.stdout


@pytest.mark.root
def test_non_root_user_exits_77(installed: Installed) -> None:
    """`xdpctl rules` as nobody: the state directory is root's (0700)."""
    assert os.geteuid() == 0, "needs root to run the CLI as nobody"
    private = installed.root / "private"
    private.mkdir(mode=0o700)
    state = ["--state-dir", private / "state", "--pin-dir", private / "pins"]
    for args in ([*state, "rules"], [*state, "rules", "--json"], [*state, "status"],
                 [*state, "attach", "lo", "--mode", "generic"]):
        res = run([*NOBODY, installed.xdpctl, *args], cwd=installed.root)
        assert res.returncode == 77, (args, res.returncode, res.stderr)
        assert res.stderr.startswith("xdpctl: error: xdpctl needs root") and res.stderr.count("\n") == 1, res.stderr
        assert "Traceback" not in res.stderr and res.stdout == "", res.stdout
    # nothing was attached on the way to the refusal
    link = run(["ip", "-d", "link", "show", "lo"], cwd=installed.root)
    assert "prog/xdp" not in link.stdout, link.stdout


@pytest.mark.root
def test_unusable_state_directory_exits_12(installed: Installed) -> None:
    """Root, but the state directory is a regular file: a StateError."""
    blocker = installed.root / "not-a-directory"
    blocker.write_text("")
    res = run([installed.xdpctl, "--state-dir", blocker, "rules"], cwd=installed.root)
    assert res.returncode == 12, (res.returncode, res.stderr)
    assert res.stderr.startswith("xdpctl: error: cannot open the state database") and "--state-dir" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_and_api_do_not_import_each_other(installed: Installed) -> None:
    probe = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
             "print(sorted(m for m in sys.modules if m.startswith(sys.argv[2])))")
    for mod, other in (("xdpctl.cli", "xdpctl.api"), ("xdpctl.api.app", "xdpctl.cli")):
        res = run([installed.python, "-I", "-c", probe, mod, other], cwd=installed.root)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "[]", f"importing {mod} loaded {res.stdout.strip()}"


# The /ui page and /docs from the installed copy: the ASGI app is called
# directly (no server, no lifespan: nothing touches the kernel), because the
# runtime virtualenv has no HTTP client.
SERVE = """
import asyncio, json, re, sys
from xdpctl.api.app import create_app
from xdpctl.config import Settings

app = create_app(Settings(state_dir=sys.argv[1], pin_dir=sys.argv[2]), "pkg-token")

async def get(path, query=b""):
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": query, "headers": [(b"host", b"127.0.0.1")], "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    out, sent, done = {"body": b""}, [], asyncio.Event()
    async def receive():
        if sent:  # the request was read: the client waits for the answer
            await done.wait()
            return {"type": "http.disconnect"}
        sent.append(1)
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(msg):
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")
            if not msg.get("more_body"):
                done.set()
    await app(scope, receive, send)
    return out["status"], out["body"]

async def main():
    res = {}
    status, docs = await get("/docs")
    res["/docs"] = [status, len(docs)]
    login, _ = await get("/ui")
    res["/ui"] = [login, 0]
    refs = re.findall(r'(?:src|href)="([^"]+)"', docs.decode())
    page, _ = await get("/ui", b"token=pkg-token")
    res["/ui?token"] = [page, 0]
    for path in refs + sys.argv[3:]:
        status, body = await get(path)
        res[path] = [status, len(body)]
    print(json.dumps({"refs": refs, "served": res}))

asyncio.run(main())
"""

STATIC_FILES = ("ui/index.html", "ui/login.html", "ui/dashboard.js", "ui/dashboard.css",
                "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css", "vendor/uplot/LICENSE",
                "vendor/uplot/VERSION", "vendor/swagger-ui/swagger-ui-bundle.js", "vendor/swagger-ui/swagger-ui.css",
                "vendor/swagger-ui/LICENSE", "vendor/swagger-ui/NOTICE", "vendor/swagger-ui/VERSION")


def test_wheel_ships_and_serves_the_pages_assets(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        for name in STATIC_FILES:
            assert f"xdpctl/api/static/{name}" in names, name
            assert whl.read(f"xdpctl/api/static/{name}") == (REPO / "api" / "static" / name).read_bytes(), name
    state = Path(tempfile.mkdtemp(prefix="xdpctl-pkg-state-"))
    try:
        res = run([installed.python, "-I", "-c", SERVE, state, f"/sys/fs/bpf/xdpctl-pkg-{os.getpid()}",
                   *[f"/static/{name}" for name in STATIC_FILES]], cwd=installed.root)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert sorted(got["refs"]) == ["/static/vendor/swagger-ui/favicon-32x32.png",
                                   "/static/vendor/swagger-ui/swagger-ui-bundle.js",
                                   "/static/vendor/swagger-ui/swagger-ui.css"], got["refs"]
    sizes = {name: (REPO / "api" / "static" / name).stat().st_size for name in STATIC_FILES}
    for name in STATIC_FILES:
        assert got["served"][f"/static/{name}"] == [200, sizes[name]], name
    assert got["served"]["/docs"][0] == 200
    assert got["served"]["/ui"][0] == 401 and got["served"]["/ui?token"][0] == 303, got["served"]
