"""Crash trials (issue 10): SIGKILL the real daemon at random moments and check that nothing is lost or left over.

A campaign is one data directory and one external library of small JPEGs, run through a number of trials; each
trial is one kill:

1. while the daemon is dead the library changes as a NAS changes while a daemon is down: a folder of new files
   appears and a few files are deleted (not before the first trial);
2. the daemon starts on the same data directory and what the previous kill left is verified at once (below);
3. a new album is made of assets that exist now: it is acknowledged before the kill, so it must keep exactly them;
4. activity: a library scan is requested and uploader threads send distinct JPEGs, each new asset then added to
   the "uploads" album; the media queues (metadata, thumbnails, storage-template moves) resume what is pending;
5. after a seeded random delay the daemon is SIGKILLed. The phases it was in (scan, upload, metadata, thumbnails,
   storage moves) are read from `/api/jobs` just before. Its worker processes must exit with it, and
   `filmroll check` must find the index consistent exactly as the kill left it.

After every restart: every upload answered 201 is there with the bytes that were sent; an upload in flight at the
kill is there complete or not at all; every album has exactly its acknowledged members (an addition in flight may
or may not have landed); the upload library counts each upload once; the thumbnails the daemon serves decode.

At the end the daemon runs until the rescan and every queue have drained (the interrupted scans and jobs resumed),
then: the external library holds each file on disk once, online, and each deleted file once, offline; the uploads
are exactly the acknowledged ones, no two with one checksum; every asset has a thumbnail and a preview that decode
and nothing else in its derived folder (no temp file of a killed render); `upload/.incoming` is empty; every file
under `upload/` and `library/` is the original of exactly one asset (no storage-move temp, no orphaned landing);
no job failed; no daemon run logged an error; the daemon stops cleanly and `filmroll check` passes.

`make test` runs a short campaign (`ci`); `make test-reliability` runs 50 trials on a 20,000-file library
(`thorough`). The seed is random per run and named in every failure; `CRASH_TRIALS_SEED=<seed>` replays it (the
kill moments, not the daemon's own scheduling).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import os
import random
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.e2e.live_daemon import FILMROLL, iso_utc, log_entries, sign_up, start_daemon, stop_daemon, wait_for

MEDIA_QUEUES = ("metadataExtraction", "thumbnailGeneration", "videoConversion", "storageTemplateMigration")
FILES_PER_FOLDER = 500
FAST_RETRIES = {"FILMROLL_JOB__RETRY_DELAY": "1", "FILMROLL_JOB__MAX_ATTEMPTS": "10"}
"""Jobs of files deleted while the daemon was down fail until the rescan takes them offline (then they are skipped):
retried after 1, 2, 4 … s instead of 30, 60 s, so the final drain does not wait for nothing."""


@dataclass(frozen=True)
class Scale:
    files: int
    """JPEGs in the external library before the first trial."""
    trials: int
    """Kills."""
    max_delay: float
    """Seconds of activity before a kill, at most (the delay is uniform in [0, max_delay])."""
    drain_timeout: float
    """Seconds the final run may take to finish every scan and job."""
    uploaders: int = 3

    @property
    def added_per_trial(self) -> int:
        return max(10, self.files // 200)

    @property
    def removed_per_trial(self) -> int:
        return max(2, self.files // 1000)


CI = Scale(files=1000, trials=3, max_delay=2.5, drain_timeout=120)
THOROUGH = Scale(files=20_000, trials=50, max_delay=4.0, drain_timeout=1800)


@pytest.fixture(
    params=[pytest.param(CI, id="ci"), pytest.param(THOROUGH, id="thorough", marks=pytest.mark.reliability)]
)
def scale(request: pytest.FixtureRequest) -> Scale:
    return request.param


def test_sigkill_at_random_moments_loses_and_leaves_nothing(tmp_path, scale):
    seed = int(os.environ.get("CRASH_TRIALS_SEED") or random.randrange(2**32))
    campaign = Campaign(tmp_path, scale, seed)
    try:
        campaign.run()
    except Exception as error:  # an assertion, or an answer that was not what the verification expected
        raise AssertionError(
            f"crash trials, seed {seed} (CRASH_TRIALS_SEED={seed} replays it), {campaign.where()}: {error}"
        ) from error
    finally:
        campaign.kill_everything()
    print(f"crash trials, seed {seed}: {scale.trials} kills; phases at the kill: {dict(campaign.phases)}")


# -- the campaign ------------------------------------------------------------------------------------------------


class Campaign:
    def __init__(self, root: Path, scale: Scale, seed: int):
        self.root = root
        self.scale = scale
        self.seed = seed
        self.rng = random.Random(seed)
        self.data_dir = root / "data"
        self.external = root / "external"
        self.photos = self.external / "photos"
        self.on_disk: set[str] = set()
        self.deleted: set[str] = set()
        self.trial = -1
        self.stage = "setup"
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.key = ""
        self.logs: list[Path] = []
        self.children: list[int] = []
        self.library_id = ""
        self.upload_library_id = ""
        self.uploads_album = ""
        self.uploaded: dict[str, str] = {}  # base64 SHA-1 → id: answered 201, or found complete after a kill
        self.albums: dict[str, set[str]] = {}  # album id → its members, exactly
        self.uploads_album_members: set[str] = set()  # acknowledged additions to the uploads album
        self.uploaders: list[Uploader] = []
        self.phases: collections.Counter[str] = collections.Counter()

    def where(self) -> str:
        if self.trial < 0:
            return f"before the first trial, {self.stage}"
        if self.trial >= self.scale.trials:
            return f"the final run after {self.scale.trials} kills, {self.stage}"
        return f"trial {self.trial + 1} of {self.scale.trials}, {self.stage}"

    def run(self) -> None:
        self.stage = "writing the library"
        self.add_files("base", self.scale.files)
        for trial in range(self.scale.trials):
            self.trial = trial
            if trial:
                self.stage = "changing the library while the daemon is down"
                self.add_files(f"added-{trial:02d}", self.scale.added_per_trial)
                self.delete_files(self.scale.removed_per_trial)
            self.start()
            with self.client() as client:
                if trial == 0:
                    self.set_up(client)
                else:
                    self.verify_after_restart(client)
                self.stage = "making an album"
                self.make_album(client)
                self.stage = "activity"
                self.start_activity(client)
            self.kill_at_random()
        self.trial = self.scale.trials
        self.start()
        with self.client() as client:
            self.verify_after_restart(client)
            self.drain(client)
            self.verify_settled(client)
        self.stage = "stopping cleanly"
        assert self.process is not None
        stop_daemon(self.process, self.data_dir, self.logs[-1])
        errors = [(log.name, entry["message"]) for log in self.logs for entry in log_entries(log)
                  if entry.get("level") in ("error", "critical")]  # fmt: skip
        assert not errors, f"a daemon run logged errors: {errors[:10]}"

    # -- the external library -------------------------------------------------------------------------------

    def add_files(self, folder: str, count: int) -> None:
        payloads = [tiny_jpeg(random.Random(f"{folder}-{n}")) for n in range(8)]
        for n in range(count):
            path = self.photos / folder / f"d{n // FILES_PER_FOLDER:03d}" / f"IMG_{n:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payloads[n % len(payloads)])
            self.on_disk.add(str(path))

    def delete_files(self, count: int) -> None:
        for path in self.rng.sample(sorted(self.on_disk), count):
            os.unlink(path)
            self.on_disk.remove(path)
            self.deleted.add(path)

    # -- the daemon -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.stage = "starting the daemon"
        log = self.root / f"daemon-{len(self.logs):02d}.log"
        self.logs.append(log)
        self.process, self.url = start_daemon(self.data_dir, log, **FAST_RETRIES)

    def client(self, timeout: float = 60) -> httpx.Client:
        headers = {"x-api-key": self.key} if self.key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)

    def set_up(self, client: httpx.Client) -> None:
        """The admin with an external path, the external library, the uploads album."""
        self.stage = "setting up"
        me, _token, self.key = sign_up(self.url)
        client.headers["x-api-key"] = self.key
        made = client.put(f"/api/admin/users/{me['id']}", json={"externalPath": str(self.external)})
        assert made.status_code == 200, made.text
        library = client.post("/api/libraries", json={"ownerId": me["id"], "importPaths": [str(self.photos)]})
        assert library.status_code == 201, library.text
        self.library_id = library.json()["id"]
        uploads = client.get("/api/libraries", params={"type": "UPLOAD"})
        assert uploads.status_code == 200 and len(uploads.json()) == 1, uploads.text
        self.upload_library_id = uploads.json()[0]["id"]
        album = client.post("/api/albums", json={"albumName": "uploads"})
        assert album.status_code == 201, album.text
        self.uploads_album = album.json()["id"]

    def make_album(self, client: httpx.Client) -> None:
        """An album of up to 20 assets that exist now (uploads and external ones); it must keep exactly them."""
        page = client.post("/api/search/metadata", json={"size": 200})
        assert page.status_code == 200, page.text
        candidates = sorted(
            {item["id"] for item in page.json()["assets"]["items"]} | set(self.uploaded.values())
        )
        chosen = self.rng.sample(candidates, min(20, len(candidates)))
        album = client.post("/api/albums", json={"albumName": f"trial {self.trial}", "assetIds": chosen})
        assert album.status_code == 201, album.text
        self.albums[album.json()["id"]] = set(chosen)
        assert album_members(client, album.json()["id"]) == set(chosen)

    def start_activity(self, client: httpx.Client) -> None:
        mode = self.rng.choice([{}, {"refreshModifiedFiles": True}])
        scan = client.post(f"/api/libraries/{self.library_id}/scan", json=mode)
        assert scan.status_code == 204, scan.text
        self.uploaders = [
            Uploader(self.url, self.key, self.uploads_album, f"{self.seed}-{self.trial}-{n}")
            for n in range(self.scale.uploaders)
        ]
        for uploader in self.uploaders:
            uploader.start()

    def kill_at_random(self) -> None:
        """Sleep a random moment, note what the daemon is doing, SIGKILL it; its workers must go with it and the
        index must be consistent as the kill left it."""
        assert self.process is not None
        time.sleep(self.rng.uniform(0.0, self.scale.max_delay))
        phases = self.phases_now()
        self.children = descendants(self.process.pid)
        self.process.kill()
        self.process.wait()
        self.phases.update(phases)
        self.stage = f"after a kill during {'+'.join(sorted(phases)) or 'idle'}"
        for uploader in self.uploaders:
            uploader.join(timeout=60)
            assert not uploader.is_alive(), "an uploader still waits for the killed daemon"
            assert not uploader.unexpected, uploader.unexpected
        wait_for(lambda: not [pid for pid in self.children if is_running(pid)],
                 "the daemon's worker processes to exit after it was killed", timeout=30)  # fmt: skip
        check = subprocess.run(
            [*FILMROLL, "check", "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert check.returncode == 0, f"`filmroll check` right after the kill: {check.stdout}{check.stderr}"

    def phases_now(self) -> set[str]:
        phases = {"upload"} if any(uploader.in_flight for uploader in self.uploaders) else set()
        try:
            with self.client(timeout=5) as client:
                jobs = client.get("/api/jobs").json()
        except httpx.HTTPError:
            return phases | {"unknown"}
        if jobs["library"]["jobCounts"]["active"]:
            phases.add("scan")
        phases.update(queue for queue in MEDIA_QUEUES if jobs[queue]["jobCounts"]["active"])
        return phases

    def kill_everything(self) -> None:
        """After a failure: nothing this test started may outlive it (by process id, daemon and its workers)."""
        if self.process is not None and self.process.poll() is None:
            self.children = descendants(self.process.pid)
            self.process.kill()
            self.process.wait()
        for pid in self.children:
            if is_running(pid):
                os.kill(pid, 9)

    # -- verification ---------------------------------------------------------------------------------------

    def verify_after_restart(self, client: httpx.Client) -> None:
        self.stage = "verifying uploads after the restart"
        self.verify_uploads(client)
        self.stage = "verifying albums after the restart"
        for album_id, members in self.albums.items():
            assert album_members(client, album_id) == members, f"album {album_id} lost or gained members"
        found = album_members(client, self.uploads_album)
        maybe = {uploader.adding for uploader in self.uploaders if uploader.adding}
        assert self.uploads_album_members <= found <= self.uploads_album_members | maybe, (
            f"uploads album: lost {self.uploads_album_members - found}, "
            f"gained {found - self.uploads_album_members - maybe}"
        )
        self.uploads_album_members = found
        self.stage = "verifying served thumbnails after the restart"
        uploaded = sorted(self.uploaded.values())
        for asset_id in self.rng.sample(uploaded, min(30, len(uploaded))):
            reply = client.get(f"/api/assets/{asset_id}/thumbnail")
            if reply.status_code == 200:
                assert_decodes(reply.content, f"the thumbnail of {asset_id}")
        library = client.get(f"/api/libraries/{self.library_id}").json()
        assert library["assetCount"] <= len(self.on_disk) + len(self.deleted), "more assets than files ever"

    def verify_uploads(self, client: httpx.Client) -> None:
        """Every acknowledged upload is there, with its bytes; one in flight is there complete or not at all."""
        acknowledged = {sha: asset_id for u in self.uploaders for sha, asset_id in u.created.items()}
        in_flight = {u.in_flight[0]: u.in_flight[1] for u in self.uploaders if u.in_flight}
        self.uploaded.update(acknowledged)
        self.uploads_album_members.update(asset_id for u in self.uploaders for asset_id in u.added)
        present = existing_uploads(client, [*self.uploaded, *in_flight])
        lost = {sha: asset_id for sha, asset_id in self.uploaded.items() if present.get(sha) != asset_id}
        assert not lost, f"uploads answered 201 are gone or changed: {lost}"
        for sha in in_flight:
            if sha in present:  # it landed: complete, with every byte
                self.uploaded[sha] = present[sha]
                acknowledged[sha] = present[sha]
        for sha, asset_id in acknowledged.items():
            original = client.get(f"/api/assets/{asset_id}/original")
            assert original.status_code == 200, original.text
            assert sha1_base64(original.content) == sha, f"upload {asset_id} has other bytes than were sent"
        stats = client.get(f"/api/libraries/{self.upload_library_id}/statistics")
        assert stats.json()["total"] == len(self.uploaded), (
            f"upload library: {stats.text}, {len(self.uploaded)}"
        )

    def drain(self, client: httpx.Client) -> None:
        """Rescan (a killed scan is redone by the next one) and wait until the scan and every queue are done."""
        self.stage = "draining"
        scan = client.post(f"/api/libraries/{self.library_id}/scan", json={})
        assert scan.status_code == 204, scan.text

        def idle() -> bool:
            jobs = client.get("/api/jobs").json()
            library = jobs["library"]["jobCounts"]
            return (
                library["completed"] >= 1
                and not library["active"]
                and not library["waiting"]
                and all(
                    not jobs[queue]["jobCounts"]["active"] and not jobs[queue]["jobCounts"]["waiting"]
                    for queue in MEDIA_QUEUES
                )
            )

        wait_for(idle, "the rescan and every media queue to drain", self.scale.drain_timeout, interval=1)
        jobs = client.get("/api/jobs").json()
        failed = {queue: jobs[queue]["jobCounts"]["failed"] for queue in MEDIA_QUEUES}
        assert not any(failed.values()), f"failed jobs: {failed}"

    def verify_settled(self, client: httpx.Client) -> None:
        self.stage = "verifying the settled library"
        assets = all_assets(client)
        assert len({asset["id"] for asset in assets}) == len(assets), "an asset was listed twice"
        external = [asset for asset in assets if asset["libraryId"] == self.library_id]
        twice = [
            path for path, n in collections.Counter(a["originalPath"] for a in external).items() if n > 1
        ]
        assert not twice, f"external paths imported more than once: {twice[:10]}"
        online = {asset["originalPath"] for asset in external if not asset["isOffline"]}
        offline = {asset["originalPath"] for asset in external if asset["isOffline"]}
        missing, extra = sorted(self.on_disk - online)[:5], sorted(online - self.on_disk)[:5]
        assert online == self.on_disk, (
            f"files on disk not online: {missing}; online assets not on disk: {extra}"
        )
        # a deleted file is offline if a scan had imported it before it went
        assert offline <= self.deleted, f"offline, yet on disk: {sorted(offline - self.deleted)[:5]}"
        uploads = [asset for asset in assets if asset["libraryId"] == self.upload_library_id]
        assert {asset["checksum"]: asset["id"] for asset in uploads} == self.uploaded
        assert len(uploads) == len(self.uploaded), "two uploads with one checksum"
        assert len(external) + len(uploads) == len(assets)

        self.stage = "verifying thumbnails"
        present = [asset for asset in assets if not asset["isOffline"]]  # offline ones wait for their file
        unrendered = [asset["id"] for asset in present if not asset["thumbhash"]]
        assert not unrendered, f"{len(unrendered)} assets never got a thumbnail: {unrendered[:5]}"
        versions = verify_derived_files(
            self.data_dir / "derived", {asset["id"] for asset in present}, {asset["id"] for asset in assets}
        )
        for asset in self.rng.sample(present, min(300, len(present))):
            reply = client.get(f"/api/assets/{asset['id']}/thumbnail")
            assert reply.status_code == 200, reply.text
            assert reply.headers["etag"].strip('"W/') == f"{asset['id']}-thumbnail-{versions[asset['id']]}"
            assert_decodes(reply.content, f"the served thumbnail of {asset['id']}")

        self.stage = "looking for leftovers"
        incoming = self.data_dir / "upload" / ".incoming"
        leftovers = sorted(os.listdir(incoming)) if incoming.exists() else []
        assert not leftovers, f"temp files of interrupted uploads left in {incoming}: {leftovers}"
        originals = files_below(self.data_dir / "upload", self.data_dir / "library")
        referenced = {asset["originalPath"] for asset in uploads}
        assert originals == referenced, (
            f"files no asset points to: {sorted(originals - referenced)[:10]}; "
            f"originals missing: {sorted(referenced - originals)[:10]}"
        )
        albums = {**self.albums, self.uploads_album: self.uploads_album_members}
        for album_id, members in albums.items():
            assert album_members(client, album_id) == members, f"album {album_id} changed"


# -- uploads -----------------------------------------------------------------------------------------------------


class Uploader(threading.Thread):
    """Uploads distinct JPEGs one after another and adds each new asset to an album, until the daemon dies.

    `created`: SHA-1 → id of the uploads answered 201; `added`: ids whose album addition was answered;
    `in_flight`: the (SHA-1, bytes) being sent when the connection broke; `adding`: the id whose addition was."""

    def __init__(self, url: str, key: str, album_id: str, seed: str):
        super().__init__(daemon=True)
        self.url, self.key, self.album_id = url, key, album_id
        self.rng = random.Random(seed)
        self.created: dict[str, str] = {}
        self.added: set[str] = set()
        self.in_flight: tuple[str, bytes] | None = None
        self.adding: str | None = None
        self.unexpected: list[str] = []

    def run(self) -> None:
        headers = {"x-api-key": self.key}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60, trust_env=False) as client:
            try:
                while self.upload_one(client):
                    pass
            except httpx.TransportError:
                return  # the daemon was killed

    def upload_one(self, client: httpx.Client) -> bool:
        """One upload and its album addition; False after an unexpected answer (noted in `unexpected`)."""
        content = tiny_jpeg(self.rng)
        sha = sha1_base64(content)
        now = iso_utc(time.time())
        self.in_flight = (sha, content)
        reply = client.post(
            "/api/assets",
            data={"fileCreatedAt": now, "fileModifiedAt": now, "deviceAssetId": sha, "deviceId": "crash"},
            files={"assetData": (f"{uuid.uuid4().hex}.jpg", content, "image/jpeg")},
        )
        self.in_flight = None
        if reply.status_code != 201:
            self.unexpected.append(f"upload answered {reply.status_code}: {reply.text}")
            return False
        asset_id = reply.json()["id"]
        self.created[sha] = asset_id
        self.adding = asset_id
        added = client.put(f"/api/albums/{self.album_id}/assets", json={"ids": [asset_id]})
        self.adding = None
        if added.status_code != 200 or not added.json()[0]["success"]:
            self.unexpected.append(f"album addition answered {added.status_code}: {added.text}")
            return False
        self.added.add(asset_id)
        return True


def existing_uploads(client: httpx.Client, checksums: list[str]) -> dict[str, str]:
    """SHA-1 → asset id of those of `checksums` the caller has uploaded (`bulk-upload-check` rejects them)."""
    found = {}
    for start in range(0, len(checksums), 1000):
        batch = checksums[start : start + 1000]
        reply = client.post(
            "/api/assets/bulk-upload-check", json={"assets": [{"id": sha, "checksum": sha} for sha in batch]}
        )
        assert reply.status_code == 200, reply.text
        found.update({r["id"]: r["assetId"] for r in reply.json()["results"] if r["action"] == "reject"})
    return found


# -- helpers -----------------------------------------------------------------------------------------------------


def tiny_jpeg(rng: random.Random) -> bytes:
    """A 48x36 JPEG of random pixels: distinct content for every draw."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (48, 36), rng.randbytes(48 * 36 * 3)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def sha1_base64(content: bytes) -> str:
    return base64.b64encode(hashlib.sha1(content).digest()).decode()


def assert_decodes(content: bytes, what: str) -> None:
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.load()
    except Exception as error:
        raise AssertionError(f"{what} does not decode ({len(content)} bytes): {error}") from error


def album_members(client: httpx.Client, album_id: str) -> set[str]:
    reply = client.get(f"/api/albums/{album_id}")
    assert reply.status_code == 200, reply.text
    return {asset["id"] for asset in reply.json()["assets"]}


def all_assets(client: httpx.Client) -> list[dict]:
    """Every asset of the caller, all pages (stable only while nothing changes the index)."""
    found: list[dict] = []
    page: object = 1
    while page is not None:
        reply = client.post("/api/search/metadata", json={"page": int(page), "size": 1000})
        assert reply.status_code == 200, reply.text
        found.extend(reply.json()["assets"]["items"])
        page = reply.json()["assets"]["nextPage"]
    return found


def verify_derived_files(root: Path, rendered: set[str], asset_ids: set[str]) -> dict[str, int]:
    """Each asset's derived folder holds one thumbnail and one preview of one version, both decoding, and nothing
    else; every asset of `rendered` has one; none belongs to an unknown asset. Returns the thumbnail versions."""
    versions: dict[str, int] = {}
    for folder in root.glob("*/*/*"):
        names = sorted(os.listdir(folder))
        assert folder.name in asset_ids, f"derived files of an asset that does not exist: {folder}: {names}"
        thumbnails = [name for name in names if name.startswith("thumbnail-")]
        assert len(thumbnails) == 1, f"{folder}: {names}"
        version = int(thumbnails[0].removeprefix("thumbnail-").removesuffix(".webp"))
        assert names == [f"preview-{version}.jpg", f"thumbnail-{version}.webp"], f"{folder}: {names}"
        for name in names:
            assert_decodes((folder / name).read_bytes(), str(folder / name))
        versions[folder.name] = version
    assert rendered <= set(versions), f"assets without derived files: {sorted(rendered - set(versions))[:5]}"
    return versions


def files_below(*folders: Path) -> set[str]:
    return {
        os.path.join(top, name) for folder in folders for top, _, names in os.walk(folder) for name in names
    }


def descendants(pid: int) -> list[int]:
    """The process ids below `pid` (its worker processes, exiftool, the scan worker), from /proc."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
