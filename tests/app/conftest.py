"""Fixtures of the app's tests: a study whose strings are crafted markdown, and the
server its markdown would fetch from."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import write_study


class Beacon:
    """An HTTP server on another 127.0.0.1 port that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        beacon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                beacon.requests.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Beacon":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def beacon():
    with Beacon() as running:
        yield running


def crafted_strings(url: str) -> dict[str, str]:
    """Markdown a study could hold in its name, a method name and a caption: each would
    make a browser fetch ``url`` if it were rendered rather than shown."""
    return {
        "study": f"![study]({url}/study.png) # Study",
        "method": f"![method]({url}/method.png)**m**",
        "caption": f'![caption]({url}/caption.png) <img src="{url}/html.png"> :red[x] $y$',
    }


@pytest.fixture
def crafted_study(tmp_path, image_folder, tiny_clip, beacon):
    """A finished study (fixed captions, solid-colour images, CLIP scores) whose name,
    method name and captions are markdown images pointing at ``beacon``."""
    from semcomp.study import Study

    strings = crafted_strings(beacon.url)
    methods = (
        f'[[methods]]\nname = {json.dumps(strings["method"])}\ncaptioner = "fixed"\n'
        f"captioner_params = {{ text = {json.dumps(strings['caption'])} }}\n"
        'reconstructor = "solid-colour"\n'
    )
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    toml = (root / "study.toml").read_text()
    (root / "study.toml").write_text(
        toml.replace('name = "test"', f"name = {json.dumps(strings['study'])}", 1)
    )
    with Study.open(root) as study:
        summary = study.run(progress=False)
    assert summary.status == "finished" and not summary.failures, summary.failures
    return root, strings
