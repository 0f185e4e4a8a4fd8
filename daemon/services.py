"""The daemon's services, built once over one open index and handed to the adapters (HTTP app, FUSE view, CLI)."""

from __future__ import annotations

from dataclasses import dataclass

from .albums import AlbumService
from .api_keys import ApiKeyService
from .asset_service import AssetService
from .auth import AuthService
from .config import Settings
from .derived import DerivedFiles
from .index import Index
from .libraries import LibraryService
from .library_jobs import LibraryJobQueue
from .media_jobs import MediaQueues
from .nightly import NightlyJob
from .search import SearchService
from .timeline import TimelineService
from .trash import TrashService
from .uploads import UploadService
from .user_transfer import TransferService
from .users import UserService
from .watchers import WatchService


@dataclass
class Services:
    settings: Settings
    index: Index
    users: UserService
    auth: AuthService
    api_keys: ApiKeyService
    libraries: LibraryService
    library_jobs: LibraryJobQueue
    media: MediaQueues
    assets: AssetService
    albums: AlbumService
    watchers: WatchService
    nightly: NightlyJob
    trash: TrashService
    timeline: TimelineService
    search: SearchService
    transfers: TransferService
    uploads: UploadService

    @classmethod
    def build(cls, settings: Settings, index: Index) -> Services:
        """Services over an index the caller has opened and will close. The job queues' workers run only when
        someone starts them (`serve` does, in its nursery)."""
        library_jobs = LibraryJobQueue(index, settings.data_dir)
        watchers = WatchService(index, settings.library.watch, library_jobs, settings.data_dir)
        libraries = LibraryService(index, settings.data_dir, library_jobs)
        libraries.on_change = watchers.reconcile
        media = MediaQueues.build(index, settings)
        return cls(
            settings=settings,
            index=index,
            users=UserService(index, library_jobs),
            auth=AuthService(index),
            api_keys=ApiKeyService(index),
            libraries=libraries,
            library_jobs=library_jobs,
            media=media,
            assets=AssetService(index, DerivedFiles(settings.data_dir, settings.image)),
            albums=AlbumService(index),
            watchers=watchers,
            nightly=NightlyJob(settings.library.scan, library_jobs),
            trash=TrashService(index, settings.data_dir),
            timeline=TimelineService(index),
            search=SearchService(index),
            transfers=TransferService(index, watchers.reconcile),
            uploads=UploadService(index, settings.data_dir),
        )
