import numpy as np
import pytest

from reidkit.evaluation.featurefile import FeatureFileError, FeatureSet, load_features, save_features


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_roundtrip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    fs = FeatureSet(rng.normal(size=(5, 3)), [1, 2, 3, -1, 0], [0, 1, 2, 3, -1], [f"im{i}.jpg" for i in range(5)])
    path = save_features(fs, tmp_path / f"f{suffix}")
    back = load_features(path)
    np.testing.assert_array_equal(back.features, fs.features)
    np.testing.assert_array_equal(back.pids, fs.pids)
    np.testing.assert_array_equal(back.camids, fs.camids)
    assert back.paths == fs.paths and back.features.dtype == np.float32


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FeatureFileError, match="not found"):
        load_features(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.zeros((3, 2), np.float32), pids=np.zeros(2, np.int64), camids=np.zeros(3, np.int64))
    with pytest.raises(FeatureFileError, match="bad.npz.*length mismatch"):
        load_features(bad)
    nan = tmp_path / "nan.npz"
    np.savez(nan, features=np.full((2, 2), np.nan, np.float32), pids=np.zeros(2, np.int64), camids=np.zeros(2, np.int64))
    with pytest.raises(FeatureFileError, match="NaN"):
        load_features(nan)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(FeatureFileError, match="cannot read"):
        load_features(junk)
