"""A command's `--help`, written from what defines the command rather than by hand: its config
groups (the defaults lists of `configs/<command>.yaml` and `configs/groups.yaml`, each group's
description the comment on its line there, its options the files in its folder) and its keys
(the schema's sections, each with its docstring's first sentence, and each key with its value
as composed and the comment above its field).

A group whose option is an interpolation (`recipe_dataset: ${recipe}_${dataset}`) is picked by
other choices, not by the user, and is left out. `centernet.cli` installs the text as Hydra's
help template (`hydra.help.template` in each command's YAML), so `--help` shows it with the
values of any overrides given beside it (`centernet train dataset=voc_xml --help`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional

from omegaconf import DictConfig, OmegaConf

WIDTH = 100
KEY_COLUMN = 34  # where a key's description starts
# a defaults-list entry that picks a group's option: `- [optional ]group: option  # description`
GROUP_ENTRY = re.compile(r"^\s*-\s*(?P<optional>optional\s+)?(?P<group>[A-Za-z_][\w/]*)\s*:\s*"
                         r"(?P<option>[^#\s]+)\s*(?:#\s*(?P<description>.*))?$")
# a dataclass field's line: `    name: type = default`
FIELD_LINE = re.compile(r"^    (?P<name>\w+)\s*:[^=]*=")
# a default taken from another dataclass: `= Decoding.k`
BORROWED_DEFAULT = re.compile(r"=\s*(?P<owner>[A-Z]\w*)\.(?P<field>\w+)\s*(?:#.*)?$")


class Group(NamedTuple):
    name: str
    default: str
    options: List[str]
    description: str


def command_groups(config_dir: Path, command: str) -> List[Group]:
    """The user-facing config groups of `configs/<command>.yaml`, in defaults-list order (a
    config the list includes, such as `groups`, read where it stands)."""
    return _groups_in(config_dir, config_dir / f"{command}.yaml")


def _groups_in(config_dir: Path, file: Path) -> List[Group]:
    groups: List[Group] = []
    for entry in _defaults_lines(file):
        match = GROUP_ENTRY.match(entry)
        if match is None:
            name = entry.strip().lstrip("-").split("#")[0].strip()
            if name and (config_dir / f"{name}.yaml").is_file():
                groups += _groups_in(config_dir, config_dir / f"{name}.yaml")
            continue
        if "${" in match["option"] or match["group"].startswith("hydra"):
            continue  # picked by other choices, or Hydra's own
        options = sorted(p.stem for p in (config_dir / match["group"]).glob("*.yaml"))
        groups.append(Group(match["group"], match["option"], options,
                            (match["description"] or "").strip()))
    return groups


def _defaults_lines(file: Path) -> List[str]:
    lines, inside = [], False
    for line in file.read_text().splitlines():
        if line.startswith("defaults:"):
            inside = True
        elif inside and line.strip().startswith("-"):
            lines.append(line)
        elif inside and line.strip() and not line.startswith((" ", "#")):
            break
    return lines


def key_descriptions(schema: type) -> Dict[str, str]:
    """`{field: description}` of a schema dataclass (and the dataclasses it extends): the comment
    lines right above each field in its source; for a field whose default is another
    dataclass's (`k: int = Decoding.k`), that field's description."""
    descriptions: Dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        comment: List[str] = []
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                comment.append(stripped.lstrip("#").strip())
                continue
            match = FIELD_LINE.match(line)
            borrowed = BORROWED_DEFAULT.search(line)
            if match and comment:
                descriptions[match["name"]] = " ".join(comment)
            elif match and borrowed:
                owner = getattr(sys.modules[cls.__module__], borrowed["owner"], None)
                if dataclasses.is_dataclass(owner):
                    found = key_descriptions(owner).get(borrowed["field"])
                    if found:
                        descriptions[match["name"]] = found
            comment = []
    return descriptions


def _is_section(item: dataclasses.Field) -> bool:
    """Whether a field is a section (`dataset`, `train`, ...): a dataclass made by default."""
    factory = item.default_factory
    return isinstance(factory, type) and dataclasses.is_dataclass(factory)


def summary(schema: type) -> str:
    """The first sentence of a schema class's docstring ("" without one)."""
    doc = inspect.cleandoc(schema.__doc__ or "")
    if doc.startswith(schema.__name__ + "("):  # the signature dataclasses write, no docstring
        return ""
    first = re.split(r"(?<!e\.g\.)(?<=\.)\s+", " ".join(doc.split()), maxsplit=1)[0]
    return first.strip()


def command_help(command: str, about: str, schema: type, cfg: DictConfig, config_dir: Path,
                 choices: Optional[Mapping[str, str]] = None) -> str:
    """The help page of `command`: `about` first (its docstring, re-wrapped by paragraph), then
    its groups and its keys, their values taken from the composed `cfg` (without its `hydra`
    node) and the groups' chosen options from `choices` (Hydra's `hydra.runtime.choices`;
    None: the defaults)."""
    lines = []
    for paragraph in inspect.cleandoc(about).split("\n\n"):
        lines += textwrap.wrap(" ".join(paragraph.split()), WIDTH) + [""]
    groups = command_groups(config_dir, command)
    if groups:
        lines.append("Config groups (group=option; * the default, < the one chosen here):")
        rows = []
        for group in groups:
            chosen = (choices or {}).get(group.name, group.default)
            rows.append((f"{group.name}:", ", ".join(
                o + ("*" if o == group.default else "") + ("<" if o == chosen != group.default
                                                         else "") for o in group.options),
                group.description))
        name_width = max(len(r[0]) for r in rows) + 1
        options_width = max(len(r[1]) for r in rows) + 2
        lines += [f"  {n:<{name_width}}{o:<{options_width}}{d}".rstrip() for n, o, d in rows]
        lines.append("")
    lines.append("Keys (key=value; the value shown is this command's as composed):")
    sections = []
    own = []
    for item in dataclasses.fields(schema):
        if _is_section(item):
            sections.append(item)
        else:
            own.append(item.name)
    descriptions = key_descriptions(schema)
    if own:
        lines += _wrapped(f"  {command}'s own: {summary(schema)}")
        lines += _key_lines("", own, descriptions, cfg)
    for item in sections:
        section = item.default_factory
        lines += _wrapped(f"  {item.name}.*: {summary(section)}")
        names = [f.name for f in dataclasses.fields(section)]
        lines += _key_lines(item.name + ".", names, key_descriptions(section), cfg.get(item.name))
    return "\n".join(lines)


def _wrapped(text: str) -> List[str]:
    return textwrap.wrap(text, WIDTH, subsequent_indent="      ")


def _key_lines(prefix: str, names: List[str], descriptions: Mapping[str, str],
               cfg: Optional[DictConfig]) -> List[str]:
    lines = []
    for name in names:
        key = f"    {prefix}{name}={_value(cfg, name)}"
        text = descriptions.get(name, "")
        if not text:
            lines.append(key)
            continue
        indent = " " * KEY_COLUMN
        if len(key) + 2 > KEY_COLUMN:
            lines.append(key)
            lines += textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)
        else:
            wrapped = textwrap.wrap(text, WIDTH - KEY_COLUMN)
            lines.append(f"{key:<{KEY_COLUMN}}{wrapped[0]}")
            lines += [indent + line for line in wrapped[1:]]
    return lines


def _value(cfg: Optional[DictConfig], name: str) -> str:
    if cfg is None or name not in cfg:
        return "?"
    if OmegaConf.is_missing(cfg, name):
        return "???"
    node = cfg._get_node(name)  # pylint: disable=protected-access
    if OmegaConf.is_interpolation(cfg, name):
        return str(node._value())  # pylint: disable=protected-access
    value = OmegaConf.to_container(cfg, resolve=False)[name]
    return _scalar(value)


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_scalar(v) for v in value) + "]"
    return str(value)
