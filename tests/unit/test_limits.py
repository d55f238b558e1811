"""Issue 10, presets and data files: sizes past the limits, non-finite numbers, hostile paths and files are
each a one-line PresetError or DataError naming the file and key (or line), never a traceback or a hang."""
import os
import zipfile

import numpy as np
import pytest

from biasmon.core import limits, presets
from biasmon.core.data import load_file
from biasmon.core.errors import DataError, PresetError
from biasmon.core.trainer import Trainer

BASE = """\
description = "limits"
{top}
[network]
layers = {layers}

[data]
{data}

[train]
steps = 3
{train}
[bias]
strategy = "{strategy}"
{bias}
"""


def preset_text(layers="[2, 4, 1]", data='set = "tiny"', train="", strategy="gradient", bias="", top=""):
    return BASE.format(layers=layers, data=data, train=train, strategy=strategy, bias=bias, top=top)


def preset_error(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PresetError) as info:
        presets.load(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400 and str(path) in message
    return message


@pytest.mark.parametrize("layers", ["[2, 20000, 20000, 1]", "[2, 100000000000000000000, 1]", "[2, 3000, 3000, 1]",
                                    "[2, " + "1, " * 200 + "1]", "[2, 0, 1]"],
                         ids=["wide", "10**20", "weights", "200-layers", "zero"])
def test_network_past_the_size_limits_names_the_key_and_the_limits(tmp_path, layers):
    message = preset_error(tmp_path, preset_text(layers=layers))
    assert "'network.layers'" in message and f"{limits.MAX_WEIGHTS:,}" in message and "10,000" in message


def test_samples_past_the_limit_and_too_many_activations(tmp_path):
    message = preset_error(tmp_path, preset_text(data='set = "tiny"\nsamples = 100000000'))
    assert "'data.samples'" in message and f"{limits.MAX_SAMPLES:,}" in message
    message = preset_error(tmp_path, preset_text(layers="[2, 5000, 1]", data='set = "tiny"\nsamples = 50000'))
    assert "'data.samples'" in message and "'network.layers'" in message and "10,000,000" in message


def test_input_width_is_checked_against_the_built_in_set(tmp_path):
    message = preset_error(tmp_path, preset_text(layers="[3, 16, 16, 1]"))
    assert "'network.layers'" in message and "3 input(s)" in message and "'tiny' has 2" in message


@pytest.mark.parametrize("train,bias,key", [("lr = inf", "", "train.lr"), ("lr = nan", "", "train.lr"),
                                            ("weight_decay = inf", "", "train.weight_decay"),
                                            ("lr = 1" + "0" * 400, "", "train.lr")])
def test_non_finite_numbers_are_refused(tmp_path, train, bias, key):
    assert f"'{key}'" in preset_error(tmp_path, preset_text(train=train + "\n", bias=bias))


def test_non_finite_noise_and_bias_init(tmp_path):
    assert "'data.noise'" in preset_error(tmp_path, preset_text(data='set = "tiny"\nnoise = inf'))
    text = preset_text().replace("layers = [2, 4, 1]", "layers = [2, 4, 1]\nbias_init = nan")
    assert "'network.bias_init'" in preset_error(tmp_path, text)


@pytest.mark.parametrize("value", ['"2"', "true", "[2]", "inf"])
def test_strategy_parameters_are_type_checked(tmp_path, value):
    message = preset_error(tmp_path, preset_text(strategy="lr_mult", bias=f"m = {value}"))
    assert "'bias.m'" in message and "a number > 0" in message


@pytest.mark.parametrize("deep", ["x = " + "[" * 1000 + "]" * 1000, "x = " + "{a = " * 1000 + "1" + "}" * 1000,
                                  "x = " + "1" * 4400], ids=["arrays", "tables", "digits"])
def test_deep_nesting_and_huge_integers_are_invalid_toml(tmp_path, deep):
    assert "invalid TOML" in preset_error(tmp_path, deep + "\n" + preset_text())


def test_a_long_value_is_quoted_short(tmp_path):
    message = preset_error(tmp_path, preset_text(train="lr = [" + "1, " * 3000 + "1]\n"))
    assert "'train.lr'" in message and "..." in message


def test_a_5000_character_path_is_a_one_line_error(tmp_path):
    long_path = "/tmp/" + "p" * 5000 + ".toml"
    with pytest.raises(PresetError) as info:
        presets.resolve(long_path)
    assert "File name too long" in str(info.value) and len(str(info.value)) < 400
    data = preset_text(data=f'path = "/tmp/{"d" * 5000}.csv"\ntargets = ["y"]')
    preset = presets.load(_write(tmp_path / "long.toml", data))
    with pytest.raises(DataError, match="File name too long"):
        Trainer(preset)


def _write(path, text):
    path.write_text(text)
    return path


def test_a_user_preset_with_a_taken_order_comes_before_the_built_in_one(tmp_path):
    _write(tmp_path / "zz-mine.toml", preset_text(top="order = 1"))
    assert list(presets.discover([tmp_path]))[:2] == ["zz-mine", "gradient"]
    assert list(presets.discover())[0] == "gradient"


# --- data files ------------------------------------------------------------------------------------
def data_error(path, inputs=2, hidden=()):
    with pytest.raises(DataError) as info:
        load_file(path, ["y"], None, inputs, 1, seed=0, val_fraction=0.25, hidden=hidden)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


def test_an_npz_that_is_not_a_zip(tmp_path):
    path = _write(tmp_path / "bad.npz", "PK\x03\x04" + "x" * 100)
    assert "not a readable .npz file" in data_error(path)


def test_an_npz_whose_arrays_would_inflate_past_the_limit_is_refused_from_its_headers(tmp_path):
    path = tmp_path / "bomb.npz"
    head = "{'descr': '<f8', 'fortran_order': False, 'shape': (2000000000, 2), }"
    head += " " * (63 - (len(head) + 10) % 64) + "\n"
    with zipfile.ZipFile(path, "w") as z:  # the header claims 32 GB; the data is a few bytes
        z.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head.encode() + bytes(16))
        z.writestr("y.npy", b"")
    message = data_error(path)
    assert "'x.npy'" in message and f"{limits.MAX_DATA_VALUES:,}" in message


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="POSIX")
def test_a_pipe_or_a_device_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "fifo.csv")
    assert "not a regular file" in data_error(tmp_path / "fifo.csv")
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    assert "not a regular file" in data_error(tmp_path / "zero.csv")


def test_a_csv_line_past_the_limit(tmp_path):
    path = _write(tmp_path / "long.csv", "a,b,y\n" + "1," * limits.MAX_CSV_LINE + "1\n")
    assert f"{path}:2:" in data_error(path) and f"{limits.MAX_CSV_LINE:,}" in data_error(path)


def test_an_error_on_a_foreign_file_shows_only_a_short_excerpt(tmp_path):
    secret = "root:" + "s3cret-" * 40
    path = _write(tmp_path / "linked.csv", ",".join(secret + str(i) for i in range(30)) + "\n1,2\n")
    message = data_error(path)
    assert "no column 'y'" in message and secret not in message and "(30 columns)" in message


def test_a_data_file_with_too_many_rows_for_the_network(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, x=np.zeros((3000, 2)), y=np.zeros(3000))
    message = data_error(path, hidden=(4000,))
    assert "10,000,000" in message and str(path) in message


def test_a_column_named_twice_is_refused_before_the_table_is_copied(tmp_path):
    path = _write(tmp_path / "d.csv", "a,b,y\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="data.features names a column more than once"):
        load_file(path, ["y"], ["a"] * 100_000, 2, 1, seed=0, val_fraction=0.25)
