"""Fetch Swagger UI's browser files for the offline /docs page.

The REST service serves /docs from api/static/vendor/swagger-ui/, so the
page works on a host without internet. The bundle is 1.7 MB of generated
JavaScript; it is a build input, not source, so the repository keeps only
its license, notice and version note and `make` fetches the files from the
npm registry: one pinned tarball, checked against its sha256 before
anything is written. Unmodified files; nothing else from the package.

    python3 tools/fetch_swagger_ui.py [DEST]
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import urllib.request

VERSION = "5.35.0"
SHA256 = "1b8e891893404ea4c3558b6a87e2a3e494e7eedba41168c2ece5800a391a6ea6"
URL = f"https://registry.npmjs.org/swagger-ui-dist/-/swagger-ui-dist-{VERSION}.tgz"
FILES = ("swagger-ui-bundle.js", "swagger-ui-bundle.js.LICENSE.txt", "swagger-ui.css", "favicon-32x32.png")
DEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api", "static", "vendor", "swagger-ui")


def fetch(dest: str) -> None:
    with urllib.request.urlopen(URL, timeout=60) as r:
        blob = r.read()
    got = hashlib.sha256(blob).hexdigest()
    if got != SHA256:
        sys.exit(f"fetch_swagger_ui: {URL} has sha256 {got}, expected {SHA256}; nothing written")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        data = {name: tar.extractfile(f"package/{name}").read() for name in FILES}
    os.makedirs(dest, exist_ok=True)
    for name, body in data.items():
        tmp = os.path.join(dest, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, os.path.join(dest, name))
    print(f"swagger-ui-dist {VERSION}: {', '.join(FILES)} -> {os.path.normpath(dest)}")


if __name__ == "__main__":
    fetch(sys.argv[1] if len(sys.argv) > 1 else DEST)
