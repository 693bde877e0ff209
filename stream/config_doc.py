"""The configuration reference (docs/configuration.md), generated from :class:`stream.settings.Settings`.

    uv run python -m stream.config_doc > docs/configuration.md
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from stream.settings import Settings

HEADER = """# Configuration reference

Every setting, read from `glassbox.toml` (or `--config`, or the file in `GLASSBOX_CONFIG`) and from
`GLASSBOX_*` environment variables (nested keys joined by `__`, e.g. `GLASSBOX_KAFKA__BOOTSTRAP`).
Environment wins over the file; secrets (`SecretStr`) are never printed. Generated from `stream/settings.py`
by `uv run python -m stream.config_doc`.
"""


def _type(annotation: object) -> str:
    t = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")
    t = re.sub(r"<class '([\w.]+)'>", r"\1", t)
    return t.replace(" | ", " or ").replace("|", " or ")


def _default(field: object) -> str:
    value = field.default if field.default_factory is None else field.default_factory()  # type: ignore[attr-defined]
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return ""
    return f"`{value!s}`" if not isinstance(value, str) else f'`"{value}"`'


def reference() -> str:
    """The whole reference as Markdown."""
    out = [HEADER]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows, subs = [], []
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                subs.append((name, ann))
                continue
            desc = (field.description or "").replace("|", "/")
            rows.append(f"| `{prefix}{name}` | {_type(ann)} | {_default(field)} | {desc} |")
        if rows:
            title = f"## `[{prefix.rstrip('.')}]`" if prefix else "## Top level"
            out.extend([title, "", "| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows, ""])
        for name, sub in subs:
            walk(sub, f"{prefix}{name}.")

    walk(Settings, "")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference(), end="")
