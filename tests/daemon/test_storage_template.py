"""The storage template (`media.md` §5): parsing, rendering, sanitising, paths. Pure logic, no I/O."""

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.errors import InvalidInput
from daemon.storage_template import (
    DEFAULT_TEMPLATE,
    PRESETS,
    TemplateValues,
    legacy_upload_path,
    normalize_extension,
    parse,
    relative_destination,
    render,
    resolve_zone,
    sanitize_component,
    user_root,
)

ASSET_ID = uuid.UUID("d587e44b-f8c0-4832-9ba3-43268bbf5d4e")
# 2023-03-05 16:07:09.045 in UTC+2: a Sunday in ISO week 9, 4 pm.
CAPTURED = datetime(2023, 3, 5, 14, 7, 9, 45_000, tzinfo=UTC)


def values(**changes) -> TemplateValues:
    base = {
        "original_file_name": "IMG_0001.JPG",
        "asset_id": ASSET_ID,
        "asset_type": "IMAGE",
        "album_name": "Holidays",
        "captured_at": CAPTURED,
        "time_zone": "UTC+2",
    }
    base.update(changes)
    return TemplateValues(**base)


def rendered(template: str, **changes) -> str:
    return render(parse(template), values(**changes))


# --- variables ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("filename", "IMG_0001"),
        ("ext", "jpg"),
        ("filetype", "IMG"),
        ("filetypefull", "IMAGE"),
        ("assetId", "d587e44b-f8c0-4832-9ba3-43268bbf5d4e"),
        ("assetIdShort", "43268bbf5d4e"),
        ("album", "Holidays"),
    ],
)
def test_asset_variables(variable, expected):
    assert rendered("{{" + variable + "}}") == expected


def test_video_file_types():
    assert (
        rendered("{{filetype}}-{{filetypefull}}", asset_type="VIDEO", original_file_name="a.mov")
        == "VID-VIDEO"
    )


def test_album_is_empty_without_one():
    assert rendered("[{{album}}]", album_name=None) == "[]"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("y", "2023"),
        ("yy", "23"),
        ("M", "3"),
        ("MM", "03"),
        ("MMM", "Mar"),
        ("MMMM", "March"),
        ("W", "9"),
        ("WW", "09"),
        ("d", "5"),
        ("dd", "05"),
        ("h", "4"),
        ("hh", "04"),
        ("H", "16"),
        ("HH", "16"),
        ("m", "7"),
        ("mm", "07"),
        ("s", "9"),
        ("ss", "09"),
        ("SSS", "045"),
    ],
)
def test_date_tokens(token, expected):
    assert rendered("{{" + token + "}}") == expected


@pytest.mark.parametrize(
    ("hour", "twelve"),
    [(0, "12"), (1, "1"), (11, "11"), (12, "12"), (13, "1"), (23, "11")],
)
def test_twelve_hour_clock(hour, twelve):
    moment = datetime(2023, 3, 5, hour, tzinfo=UTC)
    assert rendered("{{h}}|{{hh}}", captured_at=moment, time_zone="UTC") == f"{twelve}|{int(twelve):02d}"


def test_iso_week_belongs_to_the_iso_year():
    # 1 January 2021 is a Friday: ISO week 53 of 2020; luxon's W says 53 too.
    moment = datetime(2021, 1, 1, 12, tzinfo=UTC)
    assert rendered("{{y}}-{{W}}-{{WW}}", captured_at=moment, time_zone="UTC") == "2021-53-53"


def test_two_digit_year_is_padded():
    moment = datetime(2005, 6, 1, 12, tzinfo=UTC)
    assert rendered("{{yy}}", captured_at=moment, time_zone="UTC") == "05"


def test_every_month_name():
    names = [rendered("{{MMM}} {{MMMM}}", captured_at=datetime(2023, month, 10, tzinfo=UTC), time_zone="UTC")
             for month in range(1, 13)]  # fmt: skip
    assert names[0] == "Jan January"
    assert names[4] == "May May"
    assert names[8] == "Sep September"
    assert names[11] == "Dec December"


# --- time zones ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", "2023-03-05 14:07"),
        ("UTC+2", "2023-03-05 16:07"),
        ("UTC-7", "2023-03-05 07:07"),
        ("UTC+5:30", "2023-03-05 19:37"),
        ("UTC+05:30", "2023-03-05 19:37"),
        ("UTC-11", "2023-03-05 03:07"),
        ("UTC+14", "2023-03-06 04:07"),
        ("Europe/Zurich", "2023-03-05 15:07"),
        ("America/Los_Angeles", "2023-03-05 06:07"),
    ],
)
def test_dates_are_rendered_in_the_asset_zone(zone, expected):
    assert rendered("{{y}}-{{MM}}-{{dd}} {{HH}}:{{mm}}", time_zone=zone) == expected


def test_iana_zone_follows_daylight_saving():
    summer = datetime(2023, 7, 1, 2, 30, tzinfo=UTC)
    assert rendered("{{dd}} {{HH}}", captured_at=summer, time_zone="America/New_York") == "30 22"


@pytest.fixture
def tokyo_is_local(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("zone", [None, "", "Mars/Olympus", "UTC+25", "../../etc/passwd", "not a zone"])
def test_no_or_unreadable_zone_means_the_server_zone(tokyo_is_local, zone):
    assert resolve_zone(zone) is None
    assert rendered("{{dd}} {{HH}}", time_zone=zone) == "05 23"


def test_naive_capture_time_is_taken_as_utc():
    naive = datetime(2023, 3, 5, 14, 7)
    assert rendered("{{HH}}", captured_at=naive, time_zone="UTC+1") == "15"


# --- #if blocks ---------------------------------------------------------------------------------------------

ALBUM_PRESET = "{{y}}/{{#if album}}{{album}}{{else}}Other/{{MM}}{{/if}}/{{filename}}"


def test_if_album_takes_the_album_branch():
    assert rendered(ALBUM_PRESET) == "2023/Holidays/IMG_0001"


def test_if_album_takes_the_else_branch_without_album():
    assert rendered(ALBUM_PRESET, album_name=None) == "2023/Other/03/IMG_0001"


def test_an_album_name_that_sanitises_to_nothing_is_no_album():
    assert rendered(ALBUM_PRESET, album_name="...") == "2023/Other/03/IMG_0001"


def test_if_without_else():
    assert rendered("{{#if album}}A/{{/if}}{{filename}}") == "A/IMG_0001"
    assert rendered("{{#if album}}A/{{/if}}{{filename}}", album_name=None) == "IMG_0001"


def test_nested_blocks():
    template = "{{#if album}}{{#if filename}}both{{else}}album{{/if}}{{else}}none{{/if}}"
    assert rendered(template) == "both"
    assert rendered(template, original_file_name=".. .jpg") == "album"
    assert rendered(template, album_name=None) == "none"


def test_whitespace_inside_tags_is_allowed():
    assert rendered("{{ y }}/{{#if  album }}{{ album }}{{ else }}x{{/if }}") == "2023/Holidays"


def test_uses_album():
    assert parse(ALBUM_PRESET).uses_album
    assert parse("{{album}}/{{filename}}").uses_album
    assert not parse(DEFAULT_TEMPLATE).uses_album


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{y}}/{{nope}}", "unknown variable {{nope}}"),
        ("{{Y}}", "unknown variable {{Y}}"),
        ("{{}}", "unknown variable {{}}"),
        ("{{#if nope}}x{{/if}}", "unknown variable 'nope'"),
        ("{{#if album}}x", "{{#if album}} is never closed with {{/if}}"),
        ("{{#if album}}{{#if filename}}x{{/if}}", "never closed"),
        ("x{{/if}}", "{{/if}} without an open {{#if}}"),
        ("x{{else}}y", "{{else}} without an open {{#if}}"),
        ("{{#if album}}a{{else}}b{{else}}c{{/if}}", "a second {{else}}"),
        ("{{#each album}}x{{/each}}", "unsupported tag {{#each album}}"),
        ("{{#if}}x{{/if}}", "unsupported tag {{#if}}"),
        ("{{#unless album}}x{{/unless}}", "unsupported tag"),
        ("{{{y}}}", "unsupported tag"),
        ("{{> partial}}", "unsupported tag"),
        ("{{! comment }}", "unsupported tag"),
        ("{{~y~}}", "unsupported tag"),
        ("{{&y}}", "unsupported tag"),
        ("{{y}", "stray brace"),
        ("{{y}}}", "stray brace"),
        ("{y}}", "stray brace"),
        ("a}b", "stray brace"),
        ("a{b", "stray brace"),
        ("{{y}}\0/x", "control character"),
        ("{{y}}\n{{filename}}", "control character"),
        ("", "the template is empty"),
        ("   ", "the template is empty"),
    ],
)
def test_invalid_templates(template, reason):
    with pytest.raises(InvalidInput) as raised:
        parse(template)
    message = str(raised.value)
    assert message.startswith("Invalid storage template: ")
    assert reason in message
    assert raised.value.message == message


def test_every_preset_is_valid_and_the_default_comes_first():
    assert PRESETS[0] == DEFAULT_TEMPLATE == "{{y}}/{{y}}-{{MM}}-{{dd}}/{{filename}}"
    assert ALBUM_PRESET in PRESETS
    for preset in PRESETS:
        assert render(parse(preset), values())


# --- sanitising (§5.4) --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("album", "expected"),
    [
        ("../../etc", "etc"),
        ("a/b\\c", "abc"),
        ("Trip...", "Trip"),
        ("v1.2 release", "v12 release"),
        ("sp ace  ", "sp ace"),
        ('x\0y\nz\tw\x7f\x85"q', "xyzwq"),
        ('what?<>:*|"', "what"),
        ("Café 日本 🎉", "Café 日本 🎉"),
        ("..", ""),
        ("/", ""),
    ],
)
def test_hostile_album_names(album, expected):
    assert rendered("{{album}}", album_name=album) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../evil.jpg", "evil"),
        ("dir/sub/photo.jpg", "photo"),
        ("my:photo?.JPG", "myphoto"),
        ("back\\slash.jpg", "backslash"),
        ("name. .jpg", "name"),
        ("trailing....jpg", "trailing"),
        ("nul\0and\nnewline.jpg", "nulandnewline"),
        ("archive.tar.jpg", "archive.tar"),
        ("日本語の写真.heic", "日本語の写真"),
        ("a\udcff.jpg", "a"),
        ("... .jpg", ""),
        ("..jpg", "..jpg"),  # like os.path.splitext and media_types: leading dots are not an extension
        ("noextension", "noextension"),
    ],
)
def test_hostile_file_names(name, expected):
    assert rendered("{{filename}}", original_file_name=name) == expected


def test_sanitize_component_removes_exactly_the_listed_characters():
    assert sanitize_component('a/b\\c?d<e>f:g*h|i"j') == "abcdefghij"
    assert sanitize_component("keep-these_(){}[]!@#$%^&=+,;'~`") == "keep-these_(){}[]!@#$%^&=+,;'~`"
    assert sanitize_component(" leading kept, trailing . . ") == " leading kept, trailing"


@pytest.mark.parametrize(
    ("extension", "expected"),
    [
        ("jpeg", "jpg"), ("JPE", "jpg"), (".JPG", "jpg"), ("tif", "tiff"), ("TIFF", "tiff"), ("3gpp", "3gp"),
        ("mpeg", "mpg"), ("mpe", "mpg"), ("m2ts", "mts"), ("m2t", "mts"), ("HEIC", "heic"), ("NEF", "nef"),
        ("", ""),
    ],
)  # fmt: skip
def test_extension_normalisation(extension, expected):
    assert normalize_extension(extension) == expected
    assert (
        rendered("{{ext}}", original_file_name="x." + extension.lstrip(".") if extension else "x") == expected
    )


# --- relative destination (§5.1) ----------------------------------------------------------------------------


def destination(template: str, extension: str = "JPG", **changes) -> str:
    return relative_destination(parse(template), values(**changes), extension)


def test_default_template_destination():
    assert destination(DEFAULT_TEMPLATE) == "2023/2023-03-05/IMG_0001.jpg"


def test_extension_is_normalised_on_the_stored_file():
    assert destination("{{filename}}", "jpeg") == "IMG_0001.jpg"
    assert destination("{{filename}}", ".TIF") == "IMG_0001.tiff"


def test_repeated_slashes_and_dot_segments_are_dropped():
    assert destination("/{{y}}//./../{{MM}}/.//{{filename}}") == "2023/03/IMG_0001.jpg"


def test_missing_album_does_not_leave_an_empty_folder():
    assert destination("{{album}}/{{filename}}", album_name=None) == "IMG_0001.jpg"


def test_empty_file_name_falls_back_to_the_asset_id():
    assert destination("{{y}}/{{filename}}", original_file_name="... .jpg") == f"2023/{ASSET_ID}.jpg"
    assert destination("{{album}}", album_name=None) == f"{ASSET_ID}.jpg"
    assert destination("{{y}}/") == f"2023/{ASSET_ID}.jpg"


def test_nothing_left_falls_back_to_the_asset_id():
    assert destination("/./../") == f"{ASSET_ID}.jpg"


def test_hostile_values_cannot_climb_out():
    result = destination("{{album}}/{{filename}}", album_name="../../..", original_file_name="../../../x.jpg")
    assert result == "x.jpg"


def test_long_names_fit_the_filesystem():
    long_album = "é" * 300
    result = destination(
        "{{album}}/{{filename}}", album_name=long_album, original_file_name="ß" * 300 + ".jpg"
    )
    folder, name = result.split("/")
    assert len(folder.encode()) <= 255
    assert folder == "é" * 127  # cut at a character boundary
    assert len(name.encode()) + len("+12345") <= 255
    assert name.endswith(".jpg")


# --- roots --------------------------------------------------------------------------------------------------


def test_user_root_prefers_the_storage_label(tmp_path):
    assert user_root(tmp_path, "alice", "u-1") == tmp_path / "library" / "alice"
    assert user_root(str(tmp_path), None, ASSET_ID) == tmp_path / "library" / str(ASSET_ID)
    assert user_root(tmp_path, "", "u-1") == tmp_path / "library" / "u-1"


@pytest.mark.parametrize("label", ["..", "../../etc", "a/b", "."])
def test_user_root_sanitises_the_label(tmp_path, label):
    root = user_root(tmp_path, label, "u-1")
    assert root.parent == tmp_path / "library"
    assert root.name not in ("", ".", "..")


def test_legacy_upload_path(tmp_path):
    path = legacy_upload_path(tmp_path, "user-1", ASSET_ID, ".JPEG")
    assert path == tmp_path / "upload" / "user-1" / "d5" / "87" / f"{ASSET_ID}.jpeg"
    assert legacy_upload_path(tmp_path, "user-1", ASSET_ID, "mp4").name == f"{ASSET_ID}.mp4"


# --- properties ---------------------------------------------------------------------------------------------

any_text = st.text(st.characters(codec="utf-8"), max_size=80) | st.text(max_size=80)


@settings(max_examples=300, deadline=None)
@given(
    album=st.none() | any_text, name=any_text, template=st.sampled_from(PRESETS), zone=st.none() | any_text
)
def test_any_values_give_a_safe_relative_path(album, name, template, zone):
    result = relative_destination(
        parse(template), values(album_name=album, original_file_name=name, time_zone=zone), "jpg"
    )
    assert not result.startswith("/")
    segments = result.split("/")
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert all(len(segment.encode("utf-8", "surrogateescape")) <= 255 for segment in segments)
    assert "\0" not in result
    assert result.endswith(".jpg")
    root = "/data/library/user"
    assert os.path.normpath(os.path.join(root, result)).startswith(root + "/")
    assert PurePosixPath(result).name == segments[-1]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}#/ifelsalbumyMd\\ \0.")), max_size=40) | st.text(max_size=40))
def test_parse_accepts_or_refuses_cleanly(template):
    try:
        parsed = parse(template)
    except InvalidInput as error:
        assert str(error).startswith("Invalid storage template: ")
    else:
        render(parsed, values())


PIECES = {
    "{{y}}": "2023",
    "{{MM}}": "03",
    "{{album}}": "Holidays",
    "{{filename}}": "IMG_0001",
    "/": "/",
    "x": "x",
}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(sorted(PIECES)), min_size=1, max_size=12))
def test_concatenated_valid_pieces_always_parse(pieces):
    expected = "".join(PIECES[piece] for piece in pieces)
    assert render(parse("".join(pieces)), values()) == expected


def test_path_helpers_return_paths(tmp_path):
    assert isinstance(user_root(tmp_path, None, "u"), Path)
    assert isinstance(legacy_upload_path(tmp_path, "u", ASSET_ID, "jpg"), Path)
