"""Print (or, with --write, put into README.md) the table of every setting, generated from the
Settings model and the comments beside each field in src/forkyard/config.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "forkyard" / "config.py"
README = ROOT / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"
_FIELD = re.compile(r"^    ([a-z][a-z0-9_]*): [^=]+?(?:= (.+?))?\s*(?:#\s*(.*))?$")
_SECTION = re.compile(r"^    # --- (.+) ---$")


def _humanize(name: str) -> str:
    words = name
    for suffix, unit in (
        ("_per_min", " (per minute)"),
        ("_ttl_s", " lifetime (seconds)"),
        ("_s", " (seconds)"),
        ("_mb", " (MB)"),
    ):
        if words.endswith(suffix):
            words = words[: -len(suffix)].replace("_", " ") + unit
            break
    else:
        words = words.replace("_", " ")
    return words[0].upper() + words[1:] + "."


def rows() -> list[tuple[str, str, str]]:
    sys.path.insert(0, str(ROOT / "src"))
    from forkyard.config import Settings

    fields = Settings.model_fields
    comments: dict[str, str] = {}
    sections: dict[str, str] = {}
    section, above = "", []
    for line in CONFIG.read_text().splitlines():
        if m := _SECTION.match(line):
            section, above = m.group(1), []
            continue
        if line.strip().startswith("#"):
            above.append(line.strip().lstrip("#").strip())
            continue
        m = _FIELD.match(line)
        if m and m.group(1) in fields:
            comments[m.group(1)] = (m.group(3) or " ".join(above)).strip()
            sections[m.group(1)] = section
        above = []
    out = []
    for name, field in fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(unset)" if default is None else f"`{default}`"
        if isinstance(default, list) and not default:
            shown = "`[]`"
        meaning = comments.get(name) or _humanize(name)
        meaning = meaning[0].upper() + meaning[1:]
        out.append((f"`FORKYARD_{name.upper()}`", shown, f"{sections.get(name, '')}: {meaning}"))
    return out


def table() -> str:
    lines = ["| Setting | Default | Meaning |", "|---|---|---|"]
    lines += [f"| {n} | {d} | {m.replace('|', '/')} |" for n, d, m in rows()]
    return "\n".join(lines)


def write_readme() -> None:
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{table()}\n{END}{tail}")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme()
    else:
        print(table())
