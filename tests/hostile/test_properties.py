"""Properties of the pure parts that hostile names and files reach: exclusion globs (against wcmatch itself), the
storage template (any album or file name stays a safe relative path under the owner's root), the FUSE view's
names (valid and unique, suffixes stable), and XMP sidecars (only BadMedia, whatever the bytes)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import strategies as st
from wcmatch import glob

from daemon.errors import BadMedia
from daemon.exclusions import GLOB_FLAGS, ExclusionMatcher
from daemon.paths import is_within
from daemon.storage_moves import choose_destination
from daemon.storage_template import PRESETS, TemplateValues, parse, relative_destination
from daemon.xmp import parse_sidecar
from fsview.tree import NAME_MAX, make_file, safe_name, unique_names

# --- exclusion globs ------------------------------------------------------------------------------------------

NAME_PIECES = [
    "raw",
    "Raw",
    "a",
    "B",
    "*",
    "?",
    "[ab]",
    "[!a]",
    "{x,y}",
    ".",
    "@eaDir",
    "#",
    "é",
    "*.tif",
    "jpg",
]
name_pattern = st.lists(st.sampled_from(NAME_PIECES), min_size=1, max_size=4).map("".join)
pattern = st.one_of(
    name_pattern.map(lambda name: "**/" + name),  # the basename fast path
    name_pattern.map(lambda name: "**/" + name + "/**"),  # the directory fast path
    st.lists(name_pattern | st.just("**"), min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    st.lists(name_pattern | st.just("**"), min_size=1, max_size=4).map("/".join),
)
# A crawled path never holds `.` or `..` components (directory listings do not return them), so neither does this.
odd_byte_component = st.binary(min_size=1, max_size=6).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)
path_component = st.one_of(
    st.sampled_from(
        [
            "raw",
            "RAW",
            "Raw",
            "a",
            "b",
            "x",
            "y",
            "@eaDir",
            "é",
            "É",
            "#",
            ".hidden",
            "a.tif",
            "A.TIF",
            "ab",
            "x.jpg",
            "[ab]",
            "*",
            "raw2",
        ]
    ).map(str.encode),
    odd_byte_component,
)
file_path = st.lists(path_component, min_size=1, max_size=5).map(lambda parts: b"/" + b"/".join(parts))


def wcmatch_says(patterns: list[str], path: bytes) -> bool:
    """Plain `glob.globmatch` with the matcher's flags on the file and on each folder above it (a folder is
    matched with and without its trailing `/`)."""
    parts = path.split(b"/")
    folders = [b"/".join(parts[:depth]) for depth in range(2, len(parts))]
    encoded = [p.encode() for p in patterns]
    return any(
        glob.globmatch(folder, encoded, flags=GLOB_FLAGS)
        or glob.globmatch(folder + b"/", encoded, flags=GLOB_FLAGS)
        for folder in folders
    ) or glob.globmatch(path, encoded, flags=GLOB_FLAGS)


def test_exclusions_agree_with_wcmatch_on_odd_paths(depth):
    def body(patterns: list[str], path: bytes) -> None:
        assert ExclusionMatcher(patterns).excludes_path(path) == wcmatch_says(patterns, path), (
            patterns,
            path,
        )

    depth.explore(body, 400, patterns=st.lists(pattern, min_size=1, max_size=3), path=file_path)


# --- the storage template -------------------------------------------------------------------------------------

VARIABLE_TAGS = [
    "{{filename}}",
    "{{album}}",
    "{{ext}}",
    "{{y}}",
    "{{MM}}",
    "{{assetIdShort}}",
    "{{filetype}}",
]
LITERALS = ["/", "//", "..", ".", " ", "-", "x", "../", "/..", "./", "é", "~", "\\", ":", "%2e%2e"]
template_piece = st.sampled_from(VARIABLE_TAGS + LITERALS) | st.sampled_from(
    ["{{#if album}}{{album}}{{else}}../Other{{/if}}", "{{#if filename}}..{{/if}}"]
)
generated_template = (
    st.lists(template_piece, min_size=1, max_size=10).map("".join).filter(lambda text: text.strip() != "")
)
hostile_text = st.one_of(
    st.text(max_size=60),
    st.text(st.characters(codec="utf-8"), max_size=300),
    st.lists(
        st.sampled_from(["..", "/", ".", "\\", "\0", "\n", " ", "é", "\udcff", "a", ":", "*"]), max_size=20
    ).map("".join),
)


@pytest.fixture(scope="module")
def library_root(tmp_path_factory) -> Path:
    """An owner's root with a link leading out of it: a template that renders `escape/…` must not follow it."""
    base = tmp_path_factory.mktemp("template")
    root = base / "library" / "user"
    (root / "2023").mkdir(parents=True)
    (base / "elsewhere").mkdir()
    (root / "escape").symlink_to(base / "elsewhere")
    (root / "2023" / "up").symlink_to("../..")
    return root


def test_any_names_render_to_a_confined_relative_path(library_root, depth):
    extra = ["escape/{{filename}}", "{{y}}/up/{{filename}}", "{{album}}/../../{{filename}}"]

    def body(template: str, album: str | None, name: str) -> None:
        try:
            parsed = parse(template)
        except (
            Exception
        ) as error:  # generated templates may be invalid: only the documented refusal is allowed
            assert type(error).__name__ == "InvalidInput", template
            return
        values = TemplateValues(
            original_file_name=name,
            asset_id=uuid.UUID(int=7),
            asset_type="IMAGE",
            album_name=album,
            captured_at=datetime(2023, 3, 5, tzinfo=UTC),
            time_zone=None,
        )
        relative = relative_destination(parsed, values, "jpg")
        segments = relative.split("/")
        assert not relative.startswith("/")
        assert all(segment not in ("", ".", "..") for segment in segments), relative
        assert all(len(segment.encode("utf-8", "surrogateescape")) <= NAME_MAX for segment in segments)
        assert "\0" not in relative and segments[-1].endswith(".jpg")
        # variables never add a level: only the template's own `/` can
        literal_slashes = sum(1 for _ in template.replace("{{/if}}", "").split("/")) - 1
        assert len(segments) <= literal_slashes + 1, (template, relative)
        chosen = choose_destination(library_root, relative, None, asset_id="property")
        if chosen is not None:
            assert is_within(
                os.fsencode(os.path.realpath(chosen.parent)), os.fsencode(os.path.realpath(library_root))
            )
            assert chosen.name not in ("", ".", "..")

    depth.explore(
        body,
        300,
        template=generated_template | st.sampled_from(PRESETS + tuple(extra)),
        album=st.none() | hostile_text,
        name=hostile_text,
    )


# --- the FUSE view's names ------------------------------------------------------------------------------------

raw_name = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.binary(min_size=250, max_size=400),  # longer than NAME_MAX, often not UTF-8
    st.lists(st.integers(0x80, 0xBF), min_size=250, max_size=300).map(
        bytes
    ),  # long, nothing but continuations
    st.lists(
        st.sampled_from([b".", b"/", b"\0", b"\x80", b"\xc3", b"\xa9", b"a", b".jpg"]), max_size=200
    ).map(b"".join),
)


def valid(name: bytes) -> bool:
    return b"/" not in name and b"\0" not in name and name not in (b"", b".", b"..") and len(name) <= NAME_MAX


def test_safe_names_are_valid_names(depth):
    def body(name: str | bytes) -> None:
        assert valid(safe_name(name)), name

    depth.explore(body, 500, name=raw_name)


def test_folder_names_are_unique_and_suffixes_stable(depth):
    ident = st.integers(0, 2**128 - 1).map(lambda n: uuid.UUID(int=n))
    # Few distinct names and ids that share their last 8 hex digits, so collisions and suffix clashes happen.
    clashing_ident = st.integers(0, 7).map(lambda n: uuid.UUID(int=(n << 64) | 0xABCDEF00))
    entry = st.tuples(
        st.sampled_from([b"IMG.jpg", b"IMG (abcdef00).jpg", b"a", b"x" * 255]) | raw_name,
        ident | clashing_ident,
    )

    def body(entries: list[tuple[bytes, uuid.UUID]], extra: tuple[bytes, uuid.UUID]) -> None:
        entries = list({i: (n, i) for n, i in entries}.values())  # ids are unique in a folder
        nodes = {i: make_file(i, i, 1, 0) for _, i in [*entries, extra]}
        wanted = [(safe_name(n), i.bytes, nodes[i]) for n, i in entries]
        names = unique_names(wanted)
        assert len(names) == len(entries)  # one name per entry: unique, nothing lost
        assert all(valid(name) for name in names), names
        assert set(map(id, names.values())) == {id(node) for _, _, node in wanted}
        extra_name, extra_id = extra
        if extra_id in {i for _, i in entries}:
            return
        wanted_names = {name for name, _, _ in wanted}
        if safe_name(extra_name) in wanted_names or safe_name(extra_name) in names:
            return  # not unrelated: it wants a name that is taken
        grown = unique_names([*wanted, (safe_name(extra_name), extra_id.bytes, nodes[extra_id])])
        assert {name: node for name, node in grown.items() if node is not nodes[extra_id]} == names

    depth.explore(body, 300, entries=st.lists(entry, max_size=12), extra=entry)


# --- XMP sidecars ---------------------------------------------------------------------------------------------

XMP_NAMESPACES = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "exifEX": "http://cipa.jp/exif/1.0/",
}
TAGS = [
    "rdf:RDF",
    "rdf:Description",
    "rdf:Seq",
    "rdf:Alt",
    "rdf:Bag",
    "rdf:li",
    "exif:GPSLatitude",
    "exif:GPSLongitude",
    "exif:FNumber",
    "exif:ExposureTime",
    "exif:DateTimeOriginal",
    "tiff:Make",
    "xmp:Rating",
    "dc:description",
    "exifEX:LensModel",
    "x",
]
VALUES = [
    "47,3.25N",
    "8,30,15W",
    "1/0",
    "0/0",
    "1e999",
    "-1e999/1e-999",
    "nan",
    "inf",
    "",
    " ",
    "28/10",
    "2000-09-27T14:35:33+02:00",
    "99999999999999999999999",
    "&amp;",
    "&lt;x&gt;",
    "\u00e9",
    "1,2,3,4N",
]


def element(children) -> st.SearchStrategy[str]:
    def build(tag, attributes, text, kids) -> str:
        attrs = "".join(f' {name}="{value}"' for name, value in attributes)
        return f"<{tag}{attrs}>{text}{''.join(kids)}</{tag}>"

    attribute = st.tuples(
        st.sampled_from([t for t in TAGS if ":" in t] + ["xml:lang"]), st.sampled_from(VALUES)
    )
    return st.builds(
        build,
        st.sampled_from(TAGS),
        st.lists(attribute, max_size=3, unique_by=lambda a: a[0]),
        st.sampled_from(VALUES),
        st.lists(children, max_size=3),
    )


xml_tree = st.recursive(st.sampled_from(VALUES), element, max_leaves=12)
declarations = st.sampled_from(
    [
        "",
        '<?xml version="1.0"?>',
        '<?xml version="1.0" encoding="utf-16"?>',
        '<?xml version="1.0" encoding="no-such-codec"?>',
        '<?xml version="1.1"?>',
        "<!DOCTYPE x>",
        "<!DOCTYPE x [<!ELEMENT x ANY>]>",
    ]
)


def document(declaration: str, body: str) -> bytes:
    namespaces = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in XMP_NAMESPACES.items())
    return f'{declaration}<x:xmpmeta xmlns:x="adobe:ns:meta/" {namespaces}>{body}</x:xmpmeta>'.encode()


def mutate(data: bytes, position: int, junk: bytes) -> bytes:
    cut = position % (len(data) + 1)
    return data[:cut] + junk + data[cut:]


def test_sidecars_parse_or_fail_with_bad_media_only(depth):
    def body(declaration: str, tree: str, position: int, junk: bytes, mutated: bool) -> None:
        data = document(declaration, tree)
        if mutated:
            data = mutate(data, position, junk)
        try:
            found = parse_sidecar(data, "/lib/a.jpg.xmp")
        except BadMedia as error:
            assert error.message.startswith("/lib/a.jpg.xmp: ")
        else:
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in found.items())

    depth.explore(
        body,
        400,
        declaration=declarations,
        tree=xml_tree,
        position=st.integers(0, 10_000),
        junk=st.binary(max_size=8),
        mutated=st.booleans(),
    )


def test_arbitrary_bytes_are_bad_media_at_worst(depth):
    def body(data: bytes) -> None:
        try:
            parse_sidecar(data, "s.xmp")
        except BadMedia:
            pass

    depth.explore(body, 300, data=st.binary(max_size=200))
