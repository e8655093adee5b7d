"""Procedural synthetic ReID benchmark: pedestrians, cameras, cities, and a pre-training pool.

    from reidkit.data.synth import SynthConfig, generate
    result = generate(SynthConfig(domains=2, train_ids=100), "data/synth")
    # result.domains[0] is a Market-1501 folder; result.relevance_csv marks the pool's persons
    generate_tracklets(TrackletSynthConfig(train_ids=50), "data/synth_video")  # DukeMTMC-VideoReID layout
"""
from reidkit.data.synth.config import SynthConfig
from reidkit.data.synth.generate import (META_JSON, POOL_DIR, RELEVANCE_CSV, SPLIT_DIRS, SynthError, SynthResult,
                                         domain_names, generate, read_pool_relevance)
from reidkit.data.synth.styles import DOMAIN_STYLES
from reidkit.data.synth.tracklets import TrackletSynthConfig, TrackletSynthResult, generate_tracklets

__all__ = ["SynthConfig", "SynthResult", "SynthError", "generate", "read_pool_relevance", "domain_names",
           "DOMAIN_STYLES", "SPLIT_DIRS", "POOL_DIR", "RELEVANCE_CSV", "META_JSON",
           "TrackletSynthConfig", "TrackletSynthResult", "generate_tracklets"]
