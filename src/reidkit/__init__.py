"""reidkit: person re-identification with vision transformers."""
__version__ = "0.1.0"
