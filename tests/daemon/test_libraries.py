"""Library records and their rules (libraries.md §2, §3, §8, §9), against a real index."""

import os
from pathlib import Path

import pytest

from daemon.access import Principal
from daemon.errors import Forbidden, InvalidInput, NotFoundOrNoAccess
from daemon.libraries import DEFAULT_EXCLUSIONS
from daemon.scan import ScanMode


def test_defaults_for_external_and_upload(world):  # §2.2, §2.3
    external = world.services.libraries.create(world.principal)
    assert (external.type, external.name, external.import_paths, external.exclusion_patterns) == (
        "EXTERNAL", "New External Library", [], DEFAULT_EXCLUSIONS,
    )  # fmt: skip
    assert external.refreshed_at is None and world.services.libraries.asset_count(external) == 0
    upload = world.services.libraries.create(world.principal, library_type="UPLOAD")
    assert (upload.name, upload.exclusion_patterns) == ("New Upload Library", [])


def test_values_are_stored_as_given_and_names_need_not_be_unique(world):  # §2.4, §2.8, §15.5
    given = world.services.libraries.create(
        world.principal, name="My Awesome Library", import_paths=[str(world.external / "b"), str(world.external / "a")],
        exclusion_patterns=["**/Raw/**"],
    )  # fmt: skip
    assert given.import_paths == [str(world.external / "b"), str(world.external / "a")]
    assert given.exclusion_patterns == ["**/Raw/**"]
    first, second = (
        world.services.libraries.create(world.principal),
        world.services.libraries.create(world.principal),
    )
    assert first.name == second.name == "New External Library" and first.id != second.id


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"import_paths": ["/x"]}, "Upload libraries cannot have import paths"),
        ({"exclusion_patterns": ["**/x"]}, "Upload libraries cannot have exclusion patterns"),
        ({"is_watched": True}, "Upload libraries cannot be watched"),
    ],
)
def test_upload_libraries_have_no_paths(world, changes, message):  # §2.5
    with pytest.raises(InvalidInput, match=message):
        world.services.libraries.create(world.principal, library_type="UPLOAD", **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, ["name should not be empty"]),
        ({"import_paths": [""]}, ["each value in importPaths should not be empty"]),
        ({"exclusion_patterns": [""]}, ["each value in exclusionPatterns should not be empty"]),
        ({"import_paths": ["/p", "/p"]}, ["All importPaths's elements must be unique"]),
        ({"exclusion_patterns": ["a", "a"]}, ["All exclusionPatterns's elements must be unique"]),
        (
            {"exclusion_patterns": [f"p{i}" for i in range(129)]},
            ["exclusionPatterns must contain no more than 128 elements"],
        ),
    ],
)
def test_field_validation(world, changes, message):  # §2.6
    with pytest.raises(InvalidInput) as caught:
        world.services.libraries.create(world.principal, **changes)
    assert caught.value.message == message


def test_relative_import_path(world):  # §2.6
    with pytest.raises(InvalidInput) as caught:
        world.services.libraries.create(world.principal, import_paths=["photos"])
    assert caught.value.message.startswith("Invalid import path: Import path must be absolute, try /")


def test_import_paths_outside_external_path_or_in_data_dir_are_refused(world, tmp_path):  # §3.6
    outside = tmp_path / "external10"  # a string prefix of the external path, not inside it
    with pytest.raises(
        InvalidInput, match="Invalid import path: Import path must be within the user's external path"
    ):
        world.services.libraries.create(world.principal, import_paths=[str(outside)])
    with pytest.raises(InvalidInput, match="Cannot use media upload folder for external libraries"):
        world.services.libraries.create(world.principal, import_paths=[str(world.data_dir / "x")])
    missing = world.external / "not-yet-mounted"
    assert world.services.libraries.create(world.principal, import_paths=[str(missing)]).import_paths == [
        str(missing)
    ]


def test_owner_id_only_for_admins(world, services):  # §2.7
    other = services.users.create(email="o@example.com", password="pw", name="O")
    with pytest.raises(Forbidden):
        world.services.libraries.create(world.principal, owner_id=other.id)
    admin = services.users.create(email="a@example.com", password="pw", name="A", is_admin=True)
    made = world.services.libraries.create(Principal(user=admin), owner_id=other.id)
    assert made.owner_id == other.id


def test_access_is_owner_or_admin(world, services):  # §2.9, §2.10
    mine = world.library()
    other = services.users.create(email="o@example.com", password="pw", name="O")
    with pytest.raises(NotFoundOrNoAccess, match=r"Not found or no library\.read access"):
        world.services.libraries.get(Principal(user=other), mine.id)
    with pytest.raises(NotFoundOrNoAccess, match=r"library\.update"):
        world.services.libraries.update(Principal(user=other), mine.id, name="x")
    assert [lib.id for lib in world.services.libraries.list(Principal(user=other))] != [mine.id]
    admin = services.users.create(email="a@example.com", password="pw", name="A", is_admin=True)
    everyone = world.services.libraries.list(Principal(user=admin))
    assert mine.id in {lib.id for lib in everyone} and len({lib.owner_id for lib in everyone}) == 3
    uploads = world.services.libraries.list(world.principal, "UPLOAD")
    assert [lib.type for lib in uploads] == ["UPLOAD"]


def test_update_replaces_given_fields_only(world):  # §8.1, §2.12
    library = world.library(world.external / "a", exclusions=["**/x/**"])
    renamed = world.services.libraries.update(world.principal, library.id, name="New Library Name")
    assert renamed.name == "New Library Name" and renamed.import_paths == library.import_paths
    assert renamed.updated_at > library.updated_at
    paths = world.services.libraries.update(
        world.principal, library.id, import_paths=[str(world.external / "b")]
    )
    assert paths.import_paths == [str(world.external / "b")] and paths.exclusion_patterns == ["**/x/**"]


def test_last_upload_library_cannot_be_deleted(world):  # §9.2
    (upload,) = world.services.libraries.list(world.principal, "UPLOAD")
    with pytest.raises(InvalidInput, match="Cannot delete the last upload library"):
        world.services.libraries.delete(world.principal, upload.id)
    world.services.libraries.create(world.principal, library_type="UPLOAD")
    world.services.libraries.delete(world.principal, upload.id)
    with pytest.raises(NotFoundOrNoAccess):
        world.services.libraries.get(world.principal, upload.id)


async def test_validate_checks_in_order(world, tmp_path):  # §3.7, §3.8
    library = world.library()
    (world.external / "file.jpg").write_bytes(b"x")
    (world.external / "ok").mkdir()
    given = [
        str(world.external / "ok"), "relative", str(tmp_path / "elsewhere"), str(world.external / "missing"),
        str(world.external / "file.jpg"), str(world.data_dir),
    ]  # fmt: skip
    results = await world.services.libraries.validate(world.principal, library.id, given)
    assert results == [
        (given[0], None),
        ("relative", "Import path must be absolute, try " + str(Path.cwd() / "relative")),
        (given[2], "Import path must be within the user's external path"),
        (given[3], "Path does not exist (ENOENT)"),
        (given[4], "Not a directory"),
        (given[5], "Cannot use media upload folder for external libraries"),
    ]


async def test_validate_without_external_path_does_not_touch_the_disk(
    services, tmp_path
):  # §3.8 checks 3 before 5
    user = services.users.create(email="n@example.com", password="pw", name="N")
    library = services.libraries.create(Principal(user=user), import_paths=[str(tmp_path)])
    assert await services.libraries.validate(Principal(user=user), library.id, ["/etc"]) == [
        ("/etc", "User has no external path set")
    ]


def test_scan_requests_are_refused_clearly(world, services):  # §5.2, §3.4
    (upload,) = world.services.libraries.list(world.principal, "UPLOAD")
    with pytest.raises(InvalidInput, match="Can only refresh external libraries"):
        world.services.libraries.request_scan(world.principal, upload.id, ScanMode.NEW)
    user = services.users.create(email="n@example.com", password="pw", name="N")
    library = services.libraries.create(Principal(user=user))
    with pytest.raises(InvalidInput, match="User has no external path set, cannot refresh library"):
        services.libraries.request_scan(Principal(user=user), library.id, ScanMode.NEW)


async def test_validate_cannot_probe_outside_through_a_link_and_dotdot(
    world, tmp_path
):  # §3.8, review finding
    (tmp_path / "outside" / "deep").mkdir(parents=True)
    (tmp_path / "outside" / "secret_dir").mkdir()
    os.symlink(tmp_path / "outside" / "deep", world.external / "link")
    library = world.library()
    probe = str(world.external / "link" / ".." / "secret_dir")  # lexically: <external>/secret_dir (absent)
    assert await world.services.libraries.validate(world.principal, library.id, [probe]) == [
        (probe, "Path does not exist (ENOENT)")
    ]


async def test_dotdot_after_a_missing_folder_is_lexical(world):  # §4.1
    (world.external / "2").mkdir()
    library = world.library()
    path = str(world.external / "1" / ".." / "2")
    assert await world.services.libraries.validate(world.principal, library.id, [path]) == [(path, None)]


def test_nul_bytes_and_uncompilable_patterns_are_refused(world):
    with pytest.raises(InvalidInput, match="must not contain NUL bytes"):
        world.services.libraries.create(world.principal, import_paths=[str(world.external) + "/a\0b"])
    with pytest.raises(InvalidInput, match="Invalid exclusion pattern"):
        world.services.libraries.create(world.principal, exclusion_patterns=["**/" + "{a,A}" * 11])
