"""Bad presets and bad data files: a BiasmonError naming the file and the key (or line/column)."""
import numpy as np
import pytest

from biasmon.core import presets, strategies
from biasmon.core.data import load_file
from biasmon.core.errors import DataError, PresetError
from biasmon.core.trainer import Trainer

GOOD = """\
description = "a test preset"

[network]
layers = [2, 4, 1]
activation = "tanh"

[data]
{data}

[train]
seed = 0
lr = 0.05
steps = 5

[bias]
strategy = "scaled"
k = 0.5
"""
TINY = 'set = "tiny"\nsamples = 12'


def write(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path):
    with pytest.raises(PresetError) as info:
        presets.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_good_preset_loads(tmp_path):
    preset = presets.load(write(tmp_path, GOOD.format(data=TINY)))
    assert preset.name == "p" and preset.bias["strategy"] == "scaled" and preset.bias_params == {"k": 0.5}
    assert preset.network["layers"] == [2, 4, 1]
    assert len([r for r in Trainer(preset) if getattr(r, "step", None) is not None]) >= 5


@pytest.mark.parametrize("old,new,key,allowed", [
    ('activation = "tanh"', 'activation = "tanh"\nwidth = 3', "network.width", "activation"),  # unknown key
    ('lr = 0.05', 'lr = "fast"', "train.lr", "a number > 0"),                                 # wrong type
    ('steps = 5', 'steps = 2.5', "train.steps", "whole number"),                               # wrong type
    ('lr = 0.05', 'lr = -1.0', "train.lr", "a number > 0"),                                   # out of range
    ('seed = 0', 'seed = 0\nmomentum = 1.5', "train.momentum", "0 <= x < 1"),                 # out of range
    ('activation = "tanh"', 'activation = "swish"', "network.activation", "tanh | sigmoid | relu | identity"),
    ('k = 0.5', 'k = 2.0', "bias.k", "0 < k < 1"),                                             # strategy param range
    ('k = 0.5', 'kk = 0.5', "bias.kk", "k"),                                                   # unknown strategy param
    ('k = 0.5', 'k = 0.5\neps = 0.1', "bias.eps", "k"),                                       # another strategy's param
    ('strategy = "scaled"', 'strategy = "scaled"\nflip_sign = "yes"', "bias.flip_sign", "true or false"),
    ('layers = [2, 4, 1]', 'layers = [2]', "network.layers", "at least 2"),
])
def test_bad_key_names_file_key_and_what_is_allowed(tmp_path, old, new, key, allowed):
    text = GOOD.format(data=TINY)
    assert old in text
    message = error_of(write(tmp_path, text.replace(old, new, 1)))
    assert f"'{key}'" in message
    assert allowed in message


@pytest.mark.parametrize("bad", ['"sideways"', "3", '["gradient"]'])
def test_unknown_strategy_lists_the_valid_ones(tmp_path, bad):
    message = error_of(write(tmp_path, GOOD.format(data=TINY).replace('"scaled"', bad).replace("k = 0.5", "")))
    assert "'bias.strategy'" in message
    for name in strategies.REGISTRY:
        assert name in message


def test_bad_toml_names_the_file_and_the_line(tmp_path):
    message = error_of(write(tmp_path, GOOD.format(data=TINY).replace("lr = 0.05", "lr = = 0.05")))
    assert "invalid TOML" in message and "line 13" in message


def test_missing_description(tmp_path):
    message = error_of(write(tmp_path, GOOD.format(data=TINY).replace('description = "a test preset"\n', "")))
    assert "'description'" in message and "missing" in message


def test_unknown_top_level_key_and_section_that_is_not_a_table(tmp_path):
    assert "'colour'" in error_of(write(tmp_path, 'colour = "red"\n' + GOOD.format(data=TINY)))
    assert "'train'" in error_of(write(tmp_path, 'train = 3\ndescription = "x"\n', "q.toml"))


def test_data_takes_set_or_path_not_both(tmp_path):
    both = GOOD.format(data=TINY + '\npath = "d.npz"')
    assert "'path'" in error_of(write(tmp_path, both)) and "not both" in error_of(write(tmp_path, both))


def test_a_preset_of_only_a_description_trains_on_the_default_set(tmp_path):
    """README: every key but `description` is optional (a new user's first preset file)."""
    path = tmp_path / "only.toml"
    path.write_text('description = "only"\n[data]\nsamples = 12\n')
    preset = presets.load(path)
    assert preset.data["set"] == presets.DEFAULT_SET and preset.data["samples"] == 12
    path.write_text('description = "only"\n[data]\ntargets = ["y"]\n')   # a CSV's columns, the path forgotten
    assert "'data.targets' needs 'path'" in error_of(path)
    path.write_text('description = "only"\n')
    trainer = Trainer(presets.load(path), steps=5)
    trainer.advance(5)
    assert trainer.step_index == 5


def test_cross_entropy_needs_identity_output(tmp_path):
    text = GOOD.format(data=TINY).replace('activation = "tanh"',
                                          'activation = "tanh"\nloss = "cross_entropy"\noutput = "sigmoid"')
    assert "'network.output'" in error_of(write(tmp_path, text))


def test_missing_preset_file_and_unknown_name(tmp_path):
    with pytest.raises(PresetError, match="no such preset file"):
        presets.resolve(str(tmp_path / "nope.toml"))
    with pytest.raises(PresetError) as info:
        presets.resolve("nope")
    assert "'nope'" in str(info.value) and "gradient" in str(info.value)


def test_every_shipped_preset_is_valid_and_described():
    found = presets.discover()
    assert {"gradient", "none", "frozen", "scaled", "error_scaled", "inverse_error", "gap_scaled", "lr_mult",
            "story-bias-joins", "story-scaled", "story-error-scaled", "story-inverse-error",
            "story-gap-scaled"} <= set(found)
    for name, p in found.items():
        assert p.description and p.name == name
        assert p.train["momentum"] == 0.0  # each strategy's effect seen alone
        assert p.bias["flip_sign"] == name.startswith("story-")


# --- data files --------------------------------------------------------------------------------------
def load(path, targets=("y",), features=None, inputs=2, outputs=1):
    return load_file(path, list(targets), features, inputs, outputs, seed=0, val_fraction=0.25)


def data_error(path, **kw):
    with pytest.raises(DataError) as info:
        load(path, **kw)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_good_csv_and_npz_load(tmp_path):
    csv_path = write(tmp_path, "a,b,y\n" + "".join(f"{i},{-i},{i * 0.5}\n" for i in range(8)), "d.csv")
    data = load(csv_path)
    assert data.x_train.shape == (6, 2) and data.y_val.shape == (2, 1)
    np.testing.assert_array_equal(np.sort(np.concatenate([data.y_train, data.y_val]).ravel()), np.arange(8) * 0.5)
    npz_path = tmp_path / "d.npz"
    np.savez(npz_path, x=np.ones((8, 2)), y=np.zeros(8))
    assert load(npz_path).x_train.shape == (6, 2)


def test_missing_file(tmp_path):
    assert "no such file" in data_error(tmp_path / "gone.csv")


@pytest.mark.parametrize("text", ["", "\n\n", "a,b,y\n"])
def test_empty_csv(tmp_path, text):
    message = data_error(write(tmp_path, text, "e.csv"))
    assert ("the file is empty" if text.strip() == "" else "no data rows") in message


def test_missing_column_lists_the_columns(tmp_path):
    message = data_error(write(tmp_path, "a,b,c\n1,2,3\n", "m.csv"))
    assert "'y'" in message and "columns: a, b, c" in message


def test_non_numeric_cell_names_line_and_column(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,3\n\n4,five,6\n", "n.csv")
    message = data_error(path)
    assert f"{path}:4:" in message and "'b'" in message and "'five'" in message


def test_ragged_row_names_the_line(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,3\n4,5\n", "r.csv")
    assert f"{path}:3:" in data_error(path)


@pytest.mark.parametrize("text", ["a,b,y\n1,nan,3\n2,2,2\n", "a,b,y\n1,2,inf\n2,2,2\n"])
def test_nan_or_inf_in_csv(tmp_path, text):
    assert "NaN or infinite" in data_error(write(tmp_path, text, "nan.csv"))


def test_npz_wrong_keys_nan_and_not_an_npz(tmp_path):
    wrong = tmp_path / "w.npz"
    np.savez(wrong, features=np.ones((4, 2)), labels=np.ones(4))
    message = data_error(wrong)
    assert "'x' and 'y'" in message and "features" in message and "labels" in message
    nan = tmp_path / "nan.npz"
    np.savez(nan, x=np.array([[1.0, np.nan], [0.0, 0.0]]), y=np.ones(2))
    assert "NaN" in data_error(nan)
    junk = write(tmp_path, "not an archive", "junk.npz")
    assert "npz" in data_error(junk)


def test_shape_mismatch_with_the_network(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, x=np.ones((4, 3)), y=np.ones(4))
    assert "3 feature column(s)" in data_error(path)


def test_bad_data_through_a_preset_names_the_file(tmp_path):
    bad = write(tmp_path, "a,b,y\n1,2,3\n4,x,6\n", "bad.csv")
    preset = presets.load(write(tmp_path, GOOD.format(data='path = "bad.csv"\ntargets = ["y"]')))
    assert preset.data["path"] == str(bad)  # relative to the preset file
    with pytest.raises(DataError) as info:
        Trainer(preset)
    assert str(bad) in str(info.value) and ":3:" in str(info.value) and "'b'" in str(info.value)

    preset = presets.load(write(tmp_path, GOOD.format(data='path = "nowhere.npz"'), "q.toml"))
    with pytest.raises(DataError, match="nowhere.npz: no such file"):
        Trainer(preset)

    preset = presets.load(write(tmp_path, GOOD.format(data='path = "bad.csv"\ntargets = ["z"]'), "r.toml"))
    with pytest.raises(DataError, match="columns: a, b, y"):
        Trainer(preset)


def test_csv_path_needs_targets(tmp_path):
    message = error_of(write(tmp_path, GOOD.format(data='path = "d.csv"')))
    assert "'data.targets'" in message
