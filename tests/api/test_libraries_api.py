"""Libraries over real HTTP against the running daemon: the full cycle, and the seed's walkthrough."""

import os

import trio

from tests.library_helpers import write
from tests.media_files import jpeg
from tests.stalled_mount import StalledMount


async def settle(admin) -> None:
    """Wait until the library and media queues are idle (§5.7: how completion is observed)."""
    with trio.fail_after(60):
        while True:
            jobs = (await admin.client.get("/api/jobs")).json()
            busy = [
                name
                for name in (
                    "library", "metadataExtraction", "thumbnailGeneration", "videoConversion",
                    "storageTemplateMigration",
                )
                if jobs[name]["jobCounts"]["active"] or jobs[name]["jobCounts"]["waiting"]
            ]  # fmt: skip
            if not busy:
                return
            await trio.sleep(0.05)


async def assets_of(daemon, library_id: str) -> dict[str, dict]:
    """path -> {id, offline} straight from the index (the assets API arrives with the uploads issue)."""
    from daemon import assets as asset_index
    from daemon.index import ASSETS

    index = daemon.services.index
    import uuid

    with index.read() as txn:
        return {
            os.fsdecode(path): {
                "id": str(e.asset_id),
                "offline": txn.get(ASSETS, e.asset_id.bytes).is_offline,
            }
            for path, e in asset_index.of_library(txn, uuid.UUID(library_id))
        }


async def test_create_validate_scan_offline_restore_remove(daemon, admin, user, tmp_path):
    external = tmp_path / "nas"
    photos = external / "photos"
    for name in ("a.jpg", "b.jpg", "c.mp4"):
        write(photos / name)
    reply = await admin.client.put(
        f"/api/admin/users/{user.user['id']}", json={"externalPath": str(external)}
    )
    assert reply.status_code == 200

    created = await user.client.post("/api/libraries", json={"name": "Photos", "importPaths": [str(photos)]})
    assert created.status_code == 201
    library = created.json()
    assert library["type"] == "EXTERNAL" and library["refreshedAt"] is None and library["assetCount"] == 0
    library_id = library["id"]

    checked = await user.client.post(
        f"/api/libraries/{library_id}/validate", json={"importPaths": [str(photos), str(tmp_path / "x")]}
    )
    assert checked.json() == {"importPaths": [
        {"importPath": str(photos), "isValid": True},
        {"importPath": str(tmp_path / "x"), "isValid": False,
         "message": "Import path must be within the user's external path"},
    ]}  # fmt: skip

    assert (await user.client.post(f"/api/libraries/{library_id}/scan")).status_code == 204
    await settle(admin)
    body = (await user.client.get(f"/api/libraries/{library_id}")).json()
    assert body["assetCount"] == 3 and body["refreshedAt"] is not None
    stats = (await user.client.get(f"/api/libraries/{library_id}/statistics")).json()
    assert stats == {"photos": 2, "videos": 1, "total": 3, "usage": 3 * os.path.getsize(photos / "a.jpg")}
    before = await assets_of(daemon, library_id)

    os.remove(photos / "b.jpg")
    await user.client.post(f"/api/libraries/{library_id}/scan", json={"refreshModifiedFiles": True})
    await settle(admin)
    after = await assets_of(daemon, library_id)
    assert after[str(photos / "b.jpg")] == {**before[str(photos / "b.jpg")], "offline": True}
    assert (await user.client.get(f"/api/libraries/{library_id}")).json()[
        "assetCount"
    ] == 3  # offline counted

    write(photos / "b.jpg")
    await user.client.post(f"/api/libraries/{library_id}/scan", json={})
    await settle(admin)
    assert await assets_of(daemon, library_id) == before  # back online, same ids

    os.remove(photos / "c.mp4")
    await user.client.post(f"/api/libraries/{library_id}/scan")
    await settle(admin)
    assert (await user.client.post(f"/api/libraries/{library_id}/removeOffline")).status_code == 204
    await settle(admin)
    assert set(await assets_of(daemon, library_id)) == {str(photos / "a.jpg"), str(photos / "b.jpg")}
    assert (photos / "a.jpg").exists()

    assert (await user.client.delete(f"/api/libraries/{library_id}")).status_code == 204
    gone = await user.client.get(f"/api/libraries/{library_id}")
    assert gone.status_code == 400 and gone.json()["message"] == "Not found or no library.read access"
    await settle(admin)
    assert await assets_of(daemon, library_id) == {} and (photos / "a.jpg").exists()


async def test_http_validation_and_access(daemon, admin, user):
    reply = await user.client.post("/api/libraries", json={"type": "FOLDER"})
    assert reply.json()["message"] == ["type must be one of the following values: UPLOAD, EXTERNAL"]
    library_id = (await user.client.post("/api/libraries", json={})).json()["id"]
    reply = await user.client.post(f"/api/libraries/{library_id}/scan", json={"refreshModifiedFiles": "yes"})
    assert reply.status_code == 400 and reply.json()["message"] == [
        "refreshModifiedFiles must be a boolean value"
    ]
    reply = await user.client.post(f"/api/libraries/{library_id}/scan")
    assert reply.json()["message"] == "User has no external path set, cannot refresh library"
    other = await admin.client.post("/api/libraries", json={})
    foreign = await user.client.get(f"/api/libraries/{other.json()['id']}")
    assert foreign.status_code == 400 and foreign.json()["message"] == "Not found or no library.read access"
    assert (await admin.client.get(f"/api/libraries/{library_id}")).status_code == 200  # admins see all
    assert (await user.client.get("/api/libraries/nope")).json()["message"] == ["id must be a UUID"]
    mine = (await user.client.get("/api/libraries")).json()
    assert [lib["type"] for lib in mine] == ["UPLOAD", "EXTERNAL"]  # oldest first: the Default Library
    assert mine[0]["name"] == "Default Library"


async def test_seed_walkthrough(daemon, admin, user, tmp_path):
    """The product document's example: christmas-trip with Raw excluded; old-pics + videos in a second library."""
    media = tmp_path / "mnt" / "media"
    for rel in [
        "christmas-trip/IMG_1.jpg",
        "christmas-trip/IMG_2.JPG",
        "christmas-trip/Raw/IMG_1.NEF",
        "old-pics/kid.png",
        "old-pics/1999/beach.jpg",
        "videos/tree.mp4",
        "videos/Raw/not-excluded.mov",
    ]:
        write(media / rel)  # fmt: skip
    await admin.client.put(f"/api/admin/users/{user.user['id']}", json={"externalPath": str(media)})

    trip = (await user.client.post("/api/libraries", json={})).json()
    await user.client.put(f"/api/libraries/{trip['id']}", json={"name": "Christmas Trip"})
    await user.client.put(
        f"/api/libraries/{trip['id']}", json={"importPaths": [str(media / "christmas-trip")]}
    )
    await user.client.put(f"/api/libraries/{trip['id']}", json={"exclusionPatterns": ["**/Raw/**"]})
    await user.client.post(f"/api/libraries/{trip['id']}/scan")

    second = await user.client.post("/api/libraries", json={})  # a second default name never collides
    assert second.status_code == 201
    other = second.json()
    await user.client.put(
        f"/api/libraries/{other['id']}",
        json={"importPaths": [str(media / "old-pics"), str(media / "videos")]},
    )
    await user.client.post(f"/api/libraries/{other['id']}/scan")
    await settle(admin)

    assert set(await assets_of(daemon, trip["id"])) == {
        str(media / "christmas-trip/IMG_1.jpg"), str(media / "christmas-trip/IMG_2.JPG"),
    }  # fmt: skip
    assert set(await assets_of(daemon, other["id"])) == {
        str(media / "old-pics/kid.png"), str(media / "old-pics/1999/beach.jpg"), str(media / "videos/tree.mp4"),
        str(media / "videos/Raw/not-excluded.mov"),
    }  # fmt: skip
    listed = {lib["name"]: lib["assetCount"] for lib in (await user.client.get("/api/libraries")).json()}
    assert listed == {"Default Library": 0, "Christmas Trip": 2, "New External Library": 4}


async def test_deleting_a_user_removes_their_libraries_assets_but_no_files(
    daemon, admin, user, tmp_path
):  # §9.6
    external = tmp_path / "nas"
    write(external / "a.jpg")
    await admin.client.put(f"/api/admin/users/{user.user['id']}", json={"externalPath": str(external)})
    library_id = (await user.client.post("/api/libraries", json={"importPaths": [str(external)]})).json()[
        "id"
    ]
    await user.client.post(f"/api/libraries/{library_id}/scan")
    await settle(admin)
    assert len(await assets_of(daemon, library_id)) == 1
    assert (await admin.client.delete(f"/api/admin/users/{user.user['id']}")).status_code == 200
    await settle(admin)
    assert await assets_of(daemon, library_id) == {}
    assert (external / "a.jpg").exists()


async def test_scan_with_an_empty_json_body(daemon, admin, user, tmp_path):  # §5.1: "an empty body"
    await admin.client.put(f"/api/admin/users/{user.user['id']}", json={"externalPath": str(tmp_path)})
    library_id = (await user.client.post("/api/libraries", json={})).json()["id"]
    reply = await user.client.post(
        f"/api/libraries/{library_id}/scan", content=b"", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 204
    await settle(admin)
    for body in (b"\x0b", b"\x0c", b"\r", b" ", b"{", b" \t\r\n x"):  # not empty, not JSON: malformed (NestJS)
        reply = await user.client.post(
            f"/api/libraries/{library_id}/validate", content=body, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 400, body


async def test_a_hung_mount_under_an_import_path_never_freezes_the_daemon(daemon, admin, user, tmp_path):
    """Creating or editing a library resolves its import paths in a worker thread: while the share they lie on
    hangs, every other request is answered, and the create or edit completes once the share answers again."""
    with StalledMount(tmp_path / "share") as share:
        reply = await admin.client.put(
            f"/api/admin/users/{user.user['id']}", json={"externalPath": str(share.path)}
        )
        assert reply.status_code == 200
        photos = str(share.path / "photos")
        answers: dict[str, object] = {}

        async def send(name: str, method: str, url: str, body: dict) -> None:
            answers[name] = await user.client.request(method, url, json=body)

        for name, method, url in (("create", "POST", "/api/libraries"), ("edit", "PUT", None)):
            share.stall()
            async with trio.open_nursery() as nursery:
                url = url or f"/api/libraries/{answers['create'].json()['id']}"
                nursery.start_soon(send, name, method, url, {"name": name, "importPaths": [photos]})
                await trio.sleep(0.5)  # the request is waiting on the share by now
                with trio.fail_after(10):  # (the share answers no lookup for 10 s)
                    assert (await admin.client.get("/api/server/ping")).json() == {"res": "pong"}
                    assert (await user.client.get("/api/libraries")).status_code == 200
                assert name not in answers
                share.resume()
            assert answers[name].status_code == (201 if name == "create" else 200)
            assert answers[name].json()["importPaths"] == [photos] and answers[name].json()["name"] == name


async def test_checks_stuck_on_a_hung_share_hold_only_their_own_threads(daemon, admin, user, tmp_path):
    """More library creates stuck on a user's hung share than trio's shared thread pool holds (40): an upload, whose
    file work goes through that pool, still goes through, so do a rename of that user's library (no path to look
    at) and another user's create on their own share, and every create completes once the share answers."""
    admin_share = tmp_path / "admin-share"
    (admin_share / "photos").mkdir(parents=True)
    reply = await admin.client.put(f"/api/admin/users/{admin.user['id']}", json={"externalPath": str(admin_share)})
    assert reply.status_code == 200
    with StalledMount(tmp_path / "share") as share:
        reply = await admin.client.put(
            f"/api/admin/users/{user.user['id']}", json={"externalPath": str(share.path)}
        )
        assert reply.status_code == 200
        existing = (await user.client.post("/api/libraries", json={"importPaths": [str(share.path / "photos")]})).json()
        created = []

        async def create(number: int) -> None:
            body = {"name": f"stuck {number}", "importPaths": [str(share.path / "photos")]}
            created.append((await user.client.post("/api/libraries", json=body)).status_code)

        share.stall()
        async with trio.open_nursery() as nursery:
            for number in range(45):
                nursery.start_soon(create, number)
            await trio.sleep(1)  # all 45 are waiting on the share by now
            photo = jpeg(tmp_path / "upload" / "photo.jpg").read_bytes()
            with trio.fail_after(8):  # (the share answers no lookup for 10 s)
                uploaded = await user.client.post(
                    "/api/assets",
                    data={"fileCreatedAt": "2023-11-19T18:11:00.000Z", "fileModifiedAt": "2023-11-19T18:11:00.000Z"},
                    files={"assetData": ("photo.jpg", photo, "image/jpeg")},
                )
            assert uploaded.status_code == 201 and not created
            with trio.fail_after(8):
                renamed = await user.client.put(f"/api/libraries/{existing['id']}", json={"name": "renamed"})
                theirs = await admin.client.post("/api/libraries", json={"importPaths": [str(admin_share / "photos")]})
            assert renamed.status_code == 200 and renamed.json()["name"] == "renamed"
            assert theirs.status_code == 201 and not created
            share.resume()
        assert created == [201] * 45


async def test_paths_checked_before_the_owners_external_path_changed_are_checked_again(
    daemon, admin, user, tmp_path
):
    """A create waits on a hung share; meanwhile the admin moves the user's external path elsewhere. The check
    that passed was against the old one, so the create is checked again as it is stored, and refused."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with StalledMount(tmp_path / "share") as share:
        owner_url = f"/api/admin/users/{user.user['id']}"
        assert (await admin.client.put(owner_url, json={"externalPath": str(share.path)})).status_code == 200
        answers = []

        async def create() -> None:
            body = {"importPaths": [str(share.path / "photos")]}
            answers.append(await user.client.post("/api/libraries", json=body))

        share.stall()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(create)
            await trio.sleep(0.5)
            assert (await admin.client.put(owner_url, json={"externalPath": str(elsewhere)})).status_code == 200
            share.resume()
        (answer,) = answers
        assert answer.status_code == 400, answer.text
        assert "Import path must be within the user's external path" in answer.text
        assert [lib for lib in (await user.client.get("/api/libraries")).json() if lib["type"] == "EXTERNAL"] == []
