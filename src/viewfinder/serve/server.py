"""``viewfinder serve``: load the runs, then run the app on uvicorn (one process: the models are
loaded once and shared by every request; batching, not worker processes, uses the cores)."""

from __future__ import annotations

import os
from pathlib import Path

from viewfinder.errors import UserError
from viewfinder.serve.app import ServeSettings, create_app
from viewfinder.serve.predictor import ServedRun, load_served

API_KEY_ENV = "VIEWFINDER_API_KEY"


def load_runs(specs: list[str], runtime: str = "torch") -> list[ServedRun]:
    """``PATH`` or ``NAME=PATH`` per run, ``NAME=PATH,PATH`` for an ensemble; names (default:
    the first folder's) must differ."""
    if not specs:
        raise UserError("name at least one run folder: viewfinder serve RUN [NAME=RUN ...]")
    runs: list[ServedRun] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or Path(spec).exists():
            name, path = None, spec
        parts = [path] if Path(path).exists() else [p for p in path.split(",") if p]
        served = load_served(parts, name=name, runtime=runtime)
        if any(r.name == served.name for r in runs):
            raise UserError(f"two runs are named {served.name!r}; name them: NAME={path}")
        runs.append(served)
    return runs


def serve(specs: list[str], *, host: str, port: int, runtime: str, settings: ServeSettings) -> None:
    import uvicorn

    if settings.api_key is None:
        settings.api_key = os.environ.get(API_KEY_ENV) or None
    runs = load_runs(specs, runtime)
    app = create_app(runs, settings)
    names = ", ".join(f"{r.name} ({r.task.name})" for r in runs)
    where = f"http://{host}:{port}"
    print(f"serving {names} at {where}  (page: /, API: /v1/predict, schema: /openapi.json)")
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print(f"note: {host} is reachable from other machines and no API key is set "
              f"(--api-key or {API_KEY_ENV})")  # fmt: skip
    # lifespan off: nothing to start (batchers start with their first request), and uvicorn's
    # lifespan task would print a traceback for Ctrl-C
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=5)  # fmt: skip
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after shutting down
        pass
    print("stopped")
