"""Timeline (`/photos`), an asset's page, albums.

Thumbnails are the API's own (`/api/assets/{id}/thumbnail?c=<thumbhash>`: immutable when the thumbhash is the
current one); the page puts each asset's thumbhash in `data-thumbhash`, and `app.js` draws it (the vendored
decoder, as a data URL) behind the image while it loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from quart import Response, request

from daemon import assets as asset_index
from daemon.asset_edits import AssetChanges
from daemon.errors import InvalidInput
from daemon.records import Asset, ExifInfo
from daemon.timeline import TimelineOptions

from .common import flash, form_ids, me, page, parse_id, render, see_other, services

INLINE_ASSETS = 400
"""The timeline renders months inline until this many assets; later months load when scrolled to (htmx)."""


@dataclass
class Tile:
    id: str
    name: str
    thumbhash: str
    is_video: bool
    is_offline: bool
    is_favorite: bool
    is_archived: bool
    duration: str


def _duration(ms: int | None) -> str:
    if not ms:
        return ""
    seconds = ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def tile(asset: Asset) -> Tile:
    return Tile(
        id=str(asset.id),
        name=asset_index.file_name(asset),
        thumbhash=asset_index.thumbhash_text(asset) or "",
        is_video=asset.type == "VIDEO",
        is_offline=asset.is_offline,
        is_favorite=asset.is_favorite,
        is_archived=asset.visibility == "archive",
        duration=_duration(asset.duration_ms),
    )


def month_title(time_bucket: str) -> str:
    return datetime.strptime(time_bucket[:10], "%Y-%m-%d").strftime("%B %Y")


def _bucket_tiles(time_bucket: str) -> list[Tile]:
    return [tile(item.asset) for item in services().timeline.bucket(me(), time_bucket, TimelineOptions())]


# -- timeline ------------------------------------------------------------------------------------------------


@page("/photos")
async def timeline() -> Response:
    buckets = services().timeline.buckets(me(), TimelineOptions())
    sections, shown = [], 0
    for bucket in buckets:
        inline = shown < INLINE_ASSETS
        tiles = _bucket_tiles(bucket.time_bucket) if inline else None
        shown += bucket.count if inline else 0
        sections.append(
            {"key": bucket.time_bucket, "title": month_title(bucket.time_bucket), "count": bucket.count,
             "tiles": tiles}
        )  # fmt: skip
    albums = services().albums.list(me())
    return await render("photos.html", title="Photos", sections=sections, albums=albums)


@page("/photos/bucket/<time_bucket>")
async def timeline_bucket(time_bucket: str) -> Response:
    """One month's tiles (the timeline loads later months with this when they scroll into view)."""
    return await render("tiles.html", tiles=_bucket_tiles(time_bucket), selectable=True)


# -- an asset ------------------------------------------------------------------------------------------------


def _exif_rows(asset: Asset, info: ExifInfo | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, object]] = [
        ("File", asset_index.file_name(asset)),
        ("Path", asset.original_path.decode("utf-8", "replace")),  # undecodable bytes: U+FFFD
        ("Size", f"{asset.file_size:,} bytes"),
        ("Type", asset.type.lower()),
        ("Dimensions", f"{asset.width} x {asset.height}" if asset.width and asset.height else None),
        ("Duration", _duration(asset.duration_ms) or None),
        ("Taken", asset.local_date_time.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    if info is not None:
        rows += [
            ("Time zone", info.time_zone),
            ("Camera", " ".join(part for part in (info.make, info.model) if part) or None),
            ("Lens", info.lens_model),
            ("Exposure", info.exposure_time and f"{info.exposure_time} s"),
            ("Aperture", info.f_number and f"ƒ/{info.f_number:g}"),
            ("Focal length", info.focal_length and f"{info.focal_length:g} mm"),
            ("ISO", info.iso),
            ("Location", f"{info.latitude:.5f}, {info.longitude:.5f}"
             if info.latitude is not None and info.longitude is not None else None),
            ("Description", info.description or None),
            ("Rating", info.rating),
            ("Frame rate", info.fps and f"{info.fps:g} fps"),
        ]  # fmt: skip
    return [(label, str(value)) for label, value in rows if value not in (None, "")]


@page("/photos/<asset_id>")
async def asset_page(asset_id: str) -> Response:
    details = services().assets.details(me(), parse_id(asset_id))
    asset = details.asset
    albums = services().albums.list(me(), asset_id=asset.id)
    return await render(
        "asset.html",
        title=asset_index.file_name(asset),
        asset=tile(asset),
        is_trashed=asset.trashed_at is not None,
        rows=_exif_rows(asset, details.exif),
        failures=[f"{failure.queue}: {failure.reason}" for failure in details.failures],
        albums=albums,
    )


@page("/photos/<asset_id>/favorite", methods=("POST",))
async def toggle_favorite(asset_id: str) -> Response:
    value = (await request.form).get("value") == "true"
    services().assets.update(me(), parse_id(asset_id), AssetChanges(is_favorite=value))
    return see_other(f"/photos/{asset_id}")


@page("/photos/<asset_id>/archive", methods=("POST",))
async def toggle_archive(asset_id: str) -> Response:
    archive = (await request.form).get("value") == "true"
    visibility = "archive" if archive else "timeline"
    services().assets.update(me(), parse_id(asset_id), AssetChanges(visibility=visibility))
    flash("Archived: hidden from the timeline" if archive else "Back in the timeline")
    return see_other(f"/photos/{asset_id}")


# -- albums --------------------------------------------------------------------------------------------------


@page("/albums")
async def albums_page() -> Response:
    albums = services().albums.list(me())
    thumbs = {}
    for view in albums:
        if view.album.thumbnail_asset_id is not None:
            try:
                thumbs[view.album.id] = tile(services().assets.get(me(), view.album.thumbnail_asset_id))
            except InvalidInput:
                pass
    return await render("albums.html", title="Albums", albums=albums, thumbs=thumbs)


@page("/albums", methods=("POST",))
async def create_album() -> Response:
    form = await request.form
    name = form.get("name", "").strip()
    if not name:
        flash("Give the album a name", "error")
        return see_other("/albums")
    view = services().albums.create(me(), name=name, description=form.get("description", "").strip())
    return see_other(f"/albums/{view.album.id}")


@page("/albums/add-assets", methods=("POST",))
async def add_to_album() -> Response:
    """From the timeline: the checked assets go into the chosen album, or into a new one named in the form."""
    form = await request.form
    asset_ids = await form_ids("asset")
    if not asset_ids:
        flash("Select some photos or videos first", "error")
        return see_other("/photos")
    new_name = form.get("new_album", "").strip()
    try:
        if new_name:
            view = services().albums.create(me(), name=new_name, asset_ids=list(dict.fromkeys(asset_ids)))
            album_id = view.album.id
            added = len(set(asset_ids))
        elif form.get("album"):
            album_id = parse_id(form["album"])
            results = services().albums.add_assets(me(), album_id, asset_ids)
            added = sum(result.success for result in results)
        else:
            flash("Choose an album or name a new one", "error")
            return see_other("/photos")
    except InvalidInput as error:
        flash(str(error), "error")
        return see_other("/photos")
    flash(f"Added {added} item{'s' if added != 1 else ''}")
    return see_other(f"/albums/{album_id}")


@page("/albums/<album_id>")
async def album_page(album_id: str) -> Response:
    view = services().albums.get(me(), parse_id(album_id))
    return await render(
        "album.html", title=view.album.name, view=view, tiles=[tile(asset) for asset in view.assets or []]
    )


@page("/albums/<album_id>/remove-assets", methods=("POST",))
async def remove_from_album(album_id: str) -> Response:
    asset_ids = await form_ids("asset")
    results = services().albums.remove_assets(me(), parse_id(album_id), asset_ids)
    removed = sum(result.success for result in results)
    flash(f"Removed {removed} item{'s' if removed != 1 else ''} from the album")
    return see_other(f"/albums/{album_id}")


@page("/albums/<album_id>/delete", methods=("POST",))
async def delete_album(album_id: str) -> Response:
    services().albums.delete(me(), parse_id(album_id))
    flash("Album deleted (its photos and videos stay)")
    return see_other("/albums")
