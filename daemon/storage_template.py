"""The storage template (`media.md` §5): where an upload's original lives on disk. Pure logic, no I/O.

A template is Handlebars-style text such as `{{y}}/{{y}}-{{MM}}-{{dd}}/{{filename}}`. `parse` validates it
strictly (unknown variables, unbalanced blocks and stray braces are refused), `render` fills it in for one asset,
and `relative_destination` turns the result into a safe path relative to the owner's root (`user_root`).
Moving the file there is `storage_moves`' job.

Only what Immich's templates use is supported: `{{variable}}`, and `{{#if variable}}…{{else}}…{{/if}}` (else
optional, blocks may nest). No helpers, partials, comments, triple braces or whitespace control.
"""

from __future__ import annotations

import os
import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput

DEFAULT_TEMPLATE = "{{y}}/{{y}}-{{MM}}-{{dd}}/{{filename}}"

PRESETS: tuple[str, ...] = (
    DEFAULT_TEMPLATE,
    "{{y}}/{{MM}}-{{dd}}/{{filename}}",
    "{{y}}/{{MMMM}}-{{dd}}/{{filename}}",
    "{{y}}/{{MM}}/{{filename}}",
    "{{y}}/{{#if album}}{{album}}{{else}}Other/{{MM}}{{/if}}/{{filename}}",
    "{{y}}/{{MMM}}/{{filename}}",
    "{{y}}/{{MMMM}}/{{filename}}",
    "{{y}}/{{MM}}/{{dd}}/{{filename}}",
    "{{y}}/{{MMMM}}/{{dd}}/{{filename}}",
    "{{y}}/{{y}}-{{MM}}/{{y}}-{{MM}}-{{dd}}/{{filename}}",
    "{{y}}-{{MM}}-{{dd}}/{{filename}}",
    "{{y}}-{{MMM}}-{{dd}}/{{filename}}",
    "{{y}}-{{MMMM}}-{{dd}}/{{filename}}",
    "{{y}}/{{y}}-{{MM}}/{{filename}}",
    "{{y}}/{{y}}-{{WW}}/{{filename}}",
    "{{y}}/{{y}}-{{MM}}-{{dd}}/{{assetId}}",
    "{{y}}/{{y}}-{{MM}}/{{assetId}}",
    "{{y}}/{{y}}-{{WW}}/{{assetId}}",
    "{{album}}/{{filename}}",
)
"""Immich's preset list (the default first); `/api/system-config/storage-template-options` reports it."""

ERROR_PREFIX = "Invalid storage template: "

ASSET_VARIABLES = ("filename", "ext", "filetype", "filetypefull", "assetId", "assetIdShort", "album")
DATE_TOKENS = {
    "yearOptions": ("y", "yy"),
    "monthOptions": ("M", "MM", "MMM", "MMMM"),
    "weekOptions": ("W", "WW"),
    "dayOptions": ("d", "dd"),
    "hourOptions": ("h", "hh", "H", "HH"),
    "minuteOptions": ("m", "mm"),
    "secondOptions": ("s", "ss", "SSS"),
}
"""Luxon format tokens by Immich's option group names."""
VARIABLES = frozenset(ASSET_VARIABLES).union(*DATE_TOKENS.values())

EXTENSION_ALIASES = {"jpeg": "jpg", "jpe": "jpg", "tif": "tiff", "3gpp": "3gp", "mpeg": "mpg", "mpe": "mpg",
                     "m2ts": "mts", "m2t": "mts"}  # fmt: skip

NAME_MAX_BYTES = 255
"""The longest file or folder name Linux filesystems take, in bytes."""
COLLISION_RESERVE_BYTES = 12
"""Room left in a file name for a collision suffix such as `+12345`."""

_FORBIDDEN = frozenset('/\\?<>:*|"')
_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_IF_TAG = re.compile(r"#if\s+(\S+)")
_UTC_OFFSET = re.compile(r"UTC(?:([+-])([0-9]{1,2})(?::?([0-9]{2}))?)?")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip


# --- the parsed template ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class IfBlock:
    """`{{#if condition}}then{{else}}otherwise{{/if}}`: `then` when the condition's value is not empty."""

    condition: str
    then: tuple[Node, ...]
    otherwise: tuple[Node, ...]


Node = Text | Variable | IfBlock


@dataclass(frozen=True)
class Template:
    """A validated template. Make one with `parse`."""

    source: str
    nodes: tuple[Node, ...]

    @property
    def variables(self) -> frozenset[str]:
        """Every variable the template reads (conditions included)."""
        found: set[str] = set()
        pending = list(self.nodes)
        while pending:
            node = pending.pop()
            if isinstance(node, Variable):
                found.add(node.name)
            elif isinstance(node, IfBlock):
                found.add(node.condition)
                pending.extend(node.then + node.otherwise)
        return frozenset(found)

    @property
    def uses_album(self) -> bool:
        """Whether rendering needs the album name (callers can skip the album look-up otherwise)."""
        return "album" in self.variables


def _invalid(reason: str) -> InvalidInput:
    return InvalidInput(ERROR_PREFIX + reason)


def _check_literal(text: str) -> None:
    for character in text:
        if character in "{}":
            raise _invalid(f"stray brace {character!r} in {text!r}")
        if unicodedata.category(character) in ("Cc", "Cs"):
            raise _invalid(f"control character {character!r} in {text!r}")


def parse(template: str) -> Template:
    """Validate `template` and return it parsed.

    Raises InvalidInput `Invalid storage template: <reason>` for an empty template, an unknown variable, an
    unsupported tag, an `{{else}}`/`{{/if}}` without its `{{#if}}`, an unclosed block, a brace outside a tag, or a
    control character.
    """
    if not template.strip():
        raise _invalid("the template is empty")
    # One frame per open block: (condition, nodes of the then branch, nodes of the else branch or None).
    root: list[Node] = []
    stack: list[tuple[str, list[Node], list[Node] | None]] = []

    def current() -> list[Node]:
        if not stack:
            return root
        _, then, otherwise = stack[-1]
        return then if otherwise is None else otherwise

    position = 0
    for match in _TAG.finditer(template):
        literal = template[position : match.start()]
        _check_literal(literal)
        if literal:
            current().append(Text(literal))
        position = match.end()
        content = match.group(1).strip()
        if_match = _IF_TAG.fullmatch(content)
        if content in VARIABLES:
            current().append(Variable(content))
        elif if_match:
            condition = if_match.group(1)
            if condition not in VARIABLES:
                raise _invalid(f"unknown variable {condition!r} in {match.group(0)}")
            stack.append((condition, [], None))
        elif content == "else":
            if not stack:
                raise _invalid("{{else}} without an open {{#if}}")
            if stack[-1][2] is not None:
                raise _invalid("a second {{else}} in one {{#if}}")
            condition, then, _ = stack.pop()
            stack.append((condition, then, []))
        elif content == "/if":
            if not stack:
                raise _invalid("{{/if}} without an open {{#if}}")
            condition, then, otherwise = stack.pop()
            current().append(IfBlock(condition, tuple(then), tuple(otherwise or ())))
        elif content.startswith(("#", "/", "^", "!", ">", "{", "&", "~")):
            raise _invalid(f"unsupported tag {match.group(0)}")
        else:
            raise _invalid(f"unknown variable {match.group(0)}")
    _check_literal(template[position:])
    if template[position:]:
        current().append(Text(template[position:]))
    if stack:
        raise _invalid(f"{{{{#if {stack[-1][0]}}}}} is never closed with {{{{/if}}}}")
    return Template(template, tuple(root))


# --- values -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateValues:
    """What a template can say about one asset."""

    original_file_name: str
    """The name the file was uploaded with (`originalFileName`)."""
    asset_id: uuid.UUID
    asset_type: Literal["IMAGE", "VIDEO"]
    album_name: str | None
    """The oldest album containing the asset, None when there is none."""
    captured_at: datetime
    """`dateTimeOriginal`, else `fileCreatedAt`. Aware; a naive value is taken as UTC."""
    time_zone: str | None
    """`UTC+2`, `UTC-7`, `UTC+5:30` or an IANA name; None (or a zone that cannot be read) means the server's."""


def sanitize_component(value: str) -> str:
    """A variable's value made safe inside one path segment (§5.4).

    Removes `/ \\ ? < > : * | "`, control characters (NUL included) and lone surrogates, then trailing dots and
    spaces. `..` and `.` therefore become empty.
    """
    kept = "".join(
        character
        for character in value
        if character not in _FORBIDDEN and unicodedata.category(character) not in ("Cc", "Cs")
    )
    return kept.rstrip(". ")


def normalize_extension(extension: str) -> str:
    """`.JPEG` → `jpg`: no dot, lower case, Immich's aliases (§5.2), sanitised."""
    lowered = sanitize_component(extension.lstrip(".").lower())
    return EXTENSION_ALIASES.get(lowered, lowered)


def _split_name(original_file_name: str) -> tuple[str, str]:
    """(name without extension, extension without dot) of the last `/`-separated part, like Node's path.parse."""
    stem, extension = os.path.splitext(original_file_name.rsplit("/", 1)[-1])
    return stem, extension.lstrip(".")


def resolve_zone(time_zone: str | None) -> tzinfo | None:
    """The zone named by an asset's `timeZone`: a fixed offset for `UTC±H[:MM]`, an IANA zone, or None (the
    server's local zone) when absent or unreadable."""
    if not time_zone:
        return None
    offset = _UTC_OFFSET.fullmatch(time_zone)
    if offset:
        sign, hours, minutes = offset.groups()
        if sign is None:
            return UTC
        if int(hours) > 23 or int(minutes or 0) > 59:
            return None
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _twelve_hour(moment: datetime) -> int:
    return moment.hour % 12 or 12


_DATE_FORMATTERS: dict[str, Callable[[datetime], str]] = {
    "y": lambda moment: str(moment.year),
    "yy": lambda moment: f"{moment.year % 100:02d}",
    "M": lambda moment: str(moment.month),
    "MM": lambda moment: f"{moment.month:02d}",
    "MMM": lambda moment: _MONTHS[moment.month - 1][:3],
    "MMMM": lambda moment: _MONTHS[moment.month - 1],
    "W": lambda moment: str(moment.isocalendar().week),
    "WW": lambda moment: f"{moment.isocalendar().week:02d}",
    "d": lambda moment: str(moment.day),
    "dd": lambda moment: f"{moment.day:02d}",
    "h": lambda moment: str(_twelve_hour(moment)),
    "hh": lambda moment: f"{_twelve_hour(moment):02d}",
    "H": lambda moment: str(moment.hour),
    "HH": lambda moment: f"{moment.hour:02d}",
    "m": lambda moment: str(moment.minute),
    "mm": lambda moment: f"{moment.minute:02d}",
    "s": lambda moment: str(moment.second),
    "ss": lambda moment: f"{moment.second:02d}",
    "SSS": lambda moment: f"{moment.microsecond // 1000:03d}",
}
"""Luxon's meanings (en-US month names, ISO week numbers, 12-hour clock 1-12)."""


def substitutions(values: TemplateValues) -> dict[str, str]:
    """Every variable's sanitised value for one asset."""
    stem, extension = _split_name(values.original_file_name)
    asset_id = str(values.asset_id)
    image = values.asset_type == "IMAGE"
    captured = values.captured_at
    if captured.tzinfo is None:
        captured = captured.replace(tzinfo=UTC)
    local = captured.astimezone(resolve_zone(values.time_zone))
    result = {
        "filename": sanitize_component(stem),
        "ext": normalize_extension(extension),
        "filetype": "IMG" if image else "VID",
        "filetypefull": "IMAGE" if image else "VIDEO",
        "assetId": asset_id,
        "assetIdShort": asset_id[-12:],
        "album": sanitize_component((values.album_name or "").replace(".", "")),
    }
    result.update((token, format_token(local)) for token, format_token in _DATE_FORMATTERS.items())
    return result


def _render_nodes(nodes: tuple[Node, ...], values: dict[str, str], into: list[str]) -> None:
    for node in nodes:
        if isinstance(node, Text):
            into.append(node.text)
        elif isinstance(node, Variable):
            into.append(values[node.name])
        else:
            _render_nodes(node.then if values[node.condition] else node.otherwise, values, into)


def render(template: Template, values: TemplateValues) -> str:
    """The template filled in for one asset: literal text as written, variables sanitised (§5.4).

    The result may still hold empty, `.` or `..` segments from the literal text; `relative_destination` is what
    makes it a path.
    """
    pieces: list[str] = []
    _render_nodes(template.nodes, substitutions(values), pieces)
    return "".join(pieces)


# --- paths --------------------------------------------------------------------------------------------------


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` bytes of UTF-8, at a character boundary."""
    encoded = text.encode("utf-8", "surrogateescape")
    if len(encoded) <= max_bytes:
        return text
    return encoded[: max(max_bytes, 1)].decode("utf-8", "ignore")


def relative_destination(template: Template, values: TemplateValues, extension: str) -> str:
    """Where the asset belongs under its owner's root: rendered template + `.` + normalised `extension` (§5.1).

    Empty, `.` and `..` segments are dropped (so repeated `/` collapse and nothing climbs out), and the result
    never starts with `/`. The last segment is the file name: when it renders empty (e.g. `{{album}}` with no
    album) the asset id stands in for it, so a file never takes its folder's name. Names are cut to fit 255 bytes,
    the file name leaving room for the extension and a `+N` collision suffix.
    """
    *folders, name = render(template, values).split("/")
    kept = [_truncate_utf8(folder, NAME_MAX_BYTES) for folder in folders if folder not in ("", ".", "..")]
    if name in ("", ".", ".."):
        name = str(values.asset_id)
    normalized = normalize_extension(extension)
    suffix = "." + normalized if normalized else ""
    name = _truncate_utf8(name, NAME_MAX_BYTES - len(suffix.encode()) - COLLISION_RESERVE_BYTES)
    return "/".join([*kept, name + suffix])


def user_root(data_dir: str | os.PathLike[str], storage_label: str | None, user_id: str | uuid.UUID) -> Path:
    """`<data>/library/<storageLabel or userId>`: the root every templated path of one user lives under.

    The label is sanitised like a variable; a label that sanitises to nothing falls back to the user id.
    """
    label = sanitize_component(storage_label or "")
    return Path(data_dir) / "library" / (label or str(user_id))


def legacy_upload_path(
    data_dir: str | os.PathLike[str], user_id: str | uuid.UUID, asset_id: uuid.UUID, extension: str
) -> Path:
    """`<data>/upload/<userId>/<id[0:2]>/<id[2:4]>/<id>.<ext>`: where an upload lands before metadata is known,
    and stays while the template is disabled. `extension` is lower-cased (dot optional), not aliased."""
    text = str(asset_id)
    lowered = sanitize_component(extension.lstrip(".").lower())
    name = f"{text}.{lowered}" if lowered else text
    return Path(data_dir) / "upload" / str(user_id) / text[0:2] / text[2:4] / name
