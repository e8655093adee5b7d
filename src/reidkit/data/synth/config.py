"""``SynthConfig``: every size and knob of the synthetic benchmark, as one typed dataclass.

The defaults give a Market-1501-shaped benchmark small enough for a CPU: per domain ("city")
200 training ids and 200 test ids over 6 cameras (about 1,700 training images, 400 queries and
2,000 gallery images including distractors and junk), plus a 4,000-image pre-training pool.
"""
from __future__ import annotations

from dataclasses import dataclass

from reidkit.config import ConfigError


@dataclass
class SynthConfig:
    seed: int = 0
    domains: int = 3                 # how many cities (each a Market-1501 folder), at most 4
    train_ids: int = 200             # identities in bounding_box_train, per domain
    test_ids: int = 200              # identities in query / bounding_box_test, per domain
    cameras: int = 6                 # cameras per domain (1..9: Market names have one digit)
    min_cameras_per_id: int = 2      # every id is seen by at least this many cameras
    images_per_camera: float = 2.5   # mean images of an id in each camera that sees it
    queries_per_id: int = 2          # query images per test id (one per camera, <= its cameras)
    distractors: int = 150           # pid 0000 gallery images per domain (people never queried)
    junk: int = 100                  # pid -1 gallery images per domain (bad crops, ignored)
    pool_size: int = 4000            # unlabelled pre-training pool (0 = none)
    pool_relevant_ratio: float = 0.5 # share of the pool that is person images in a domain style
    height: int = 128
    width: int = 64
    jpeg_quality: int = 90
    workers: int = 1                 # rendering processes; the files do not depend on it

    def validate(self) -> "SynthConfig":
        """Raise ``ConfigError`` naming the first field that cannot work."""
        checks = [
            ("domains", 1 <= self.domains <= 4, "must be 1..4"),
            ("train_ids", self.train_ids >= 1, "must be >= 1"),
            ("test_ids", self.test_ids >= 1, "must be >= 1"),
            ("test_ids", self.train_ids + self.test_ids <= 9999, "train_ids + test_ids must be <= 9999 (4-digit pids)"),
            ("cameras", 2 <= self.cameras <= 9, "must be 2..9 (Market-1501 names have one camera digit)"),
            ("min_cameras_per_id", 2 <= self.min_cameras_per_id <= self.cameras, "must be 2..cameras"),
            ("images_per_camera", self.images_per_camera >= 1.0, "must be >= 1"),
            ("queries_per_id", self.queries_per_id >= 1, "must be >= 1"),
            ("distractors", self.distractors >= 0, "must be >= 0"),
            ("junk", self.junk >= 0, "must be >= 0"),
            ("pool_size", self.pool_size >= 0, "must be >= 0"),
            ("pool_relevant_ratio", 0.0 <= self.pool_relevant_ratio <= 1.0, "must be in [0, 1]"),
        ]
        raise_first_failed(self, checks + image_checks(self))
        return self


def image_checks(cfg) -> list[tuple[str, bool, str]]:
    """The checks every synthetic config shares: image size, JPEG quality, workers."""
    return [("height", cfg.height >= 32, "must be >= 32"), ("width", cfg.width >= 16, "must be >= 16"),
            ("jpeg_quality", 1 <= cfg.jpeg_quality <= 100, "must be 1..100"),
            ("workers", cfg.workers >= 1, "must be >= 1")]


def raise_first_failed(cfg, checks: list[tuple[str, bool, str]]) -> None:
    """Raise ``ConfigError`` naming the first field whose check failed: ``Class.field: message (got value)``."""
    for name, ok, msg in checks:
        if not ok:
            raise ConfigError(f"{type(cfg).__name__}.{name}: {msg} (got {getattr(cfg, name)})")
