r"""Every closed window's full record, kept: gzipped JSON lines per model on local disk until they are uploaded
as the run's ``windows/<model>/part-NNNNNN.jsonl.gz`` artifacts, and read back from there.

Writing costs about 20 us a record and never waits for MLflow, so the live worker writes on its hot path and no
window is lost however many are thinned from the metrics. Each write is flushed (a gzip sync point), and the spool
folder names its run and process (``owner.json``): the spool of a worker killed before its upload is uploaded to its
run by :func:`recover_spools` when the next worker starts on that host.

>>> spool = WindowSpool()
>>> spool.write("churn", [{"index": 0}, {"index": 1}])
2
>>> path = spool.take()["churn"]
>>> path.name, gzip.decompress(path.read_bytes())
('part-000000.jsonl.gz', b'{"index":0}\n{"index":1}\n')
>>> path.unlink(); spool.close()
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from stream.evidence.window_metrics import KEY_BAD

log = logging.getLogger("glassbox.evidence")

PREFIX = "glassbox-windows-"


def artifact_name(model: str) -> str:
    """The folder name of ``model``'s records under ``windows/``."""
    return KEY_BAD.sub("_", model).replace("/", "_") or "model"


class WindowSpool:
    """Open parts per model; :meth:`take` closes them for upload (new records start new parts)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()  # never held around an MLflow call: the hot path writes here
        self.root = root  # where spool folders go (default: the system's temporary directory)
        self.owner: dict[str, str] = {}  # run_id and tracking_uri of the run the parts belong to
        self._dir: Path | None = None
        self._open: dict[str, tuple[Any, Path]] = {}  # model -> (open gzip file, its path)
        self._parts: dict[str, int] = {}

    def write(self, model: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Append ``records`` to ``model``'s open part; returns how many."""
        import orjson

        opt = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
        n = 0
        with self._lock:
            f = self._file(model)
            for rec in records:
                f.write(orjson.dumps(rec, option=opt, default=str))
                n += 1
            f.flush()  # a sync point: what was written survives a SIGKILL (see recover_spools)
        return n

    def take(self) -> dict[str, Path]:
        """Close the open parts and hand them over (model -> path); the caller uploads and deletes them."""
        with self._lock:
            closing, self._open = self._open, {}
            for f, _ in closing.values():
                f.close()
        return {model: path for model, (_, path) in closing.items()}

    def close(self) -> None:
        """Close the open parts; remove the spool folder unless a part is left (an upload failed)."""
        with self._lock:
            for f, _ in self._open.values():
                f.close()
            self._open = {}
            if self._dir is not None and not any(self._dir.rglob("*.gz")):
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _file(self, model: str) -> Any:
        got = self._open.get(model)
        if got is not None:
            return got[0]
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.root))
            (self._dir / "owner.json").write_text(json.dumps({**self.owner, "pid": os.getpid()}))
        part = self._parts.get(model, 0)
        self._parts[model] = part + 1
        folder = self._dir / artifact_name(model)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{part:06d}.jsonl.gz"
        f = gzip.open(path, "wb", compresslevel=1)  # noqa: SIM115 - open until taken
        self._open[model] = (f, path)
        return f


def read_window_records(artifact_dir: str | os.PathLike[str], model: str) -> Iterator[dict[str, Any]]:
    """The full window records of ``model`` from a run's artifacts (a local directory, e.g.
    ``local_path(run.artifact_uri)`` or ``client.download_artifacts(run_id, "windows")``'s parent), in order."""
    folder = Path(artifact_dir) / "windows" / artifact_name(model)
    for part in sorted(folder.glob("part-*.jsonl.gz")):
        with gzip.open(part, "rb") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def salvage(path: Path) -> int:
    """Rewrite a part cut short by a SIGKILL (no gzip trailer) as a complete gzip of its whole lines; returns them."""
    data = zlib.decompressobj(wbits=31).decompress(path.read_bytes())
    data = data[: data.rfind(b"\n") + 1]
    path.write_bytes(gzip.compress(data, compresslevel=1))
    return data.count(b"\n")


def recover_spools(tracking_uri: str, root: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """Upload the spools that dead processes left under ``root`` (default: the temporary directory) to their runs in
    the MLflow store at ``tracking_uri``, mark those runs FAILED with a note, and remove them; returns run_id ->
    window records uploaded. Spools of live processes and of other stores are left alone."""
    from mlflow.tracking import MlflowClient

    done: dict[str, int] = {}
    for folder in sorted(Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        try:
            owner = json.loads((folder / "owner.json").read_text())
        except (OSError, ValueError):
            continue
        run_id = owner.get("run_id")
        if not run_id or owner.get("tracking_uri") != tracking_uri or _alive(int(owner.get("pid", 0))):
            continue
        client = MlflowClient(tracking_uri)
        n = 0
        for part in sorted(folder.glob("*/part-*.jsonl.gz")):
            n += salvage(part)
            client.log_artifact(run_id, str(part), f"windows/{part.parent.name}")
        client.set_tag(run_id, "glassbox.note", f"worker (pid {owner.get('pid')}) killed; {n} window records "
                                                "uploaded from its spool by the next worker on this host")
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FAILED")
        shutil.rmtree(folder, ignore_errors=True)
        log.info("uploaded %d window records left by a killed worker to run %s", n, run_id)
        done[run_id] = n
    return done
