"""disakit.dasslite.utils: registry messages, small helpers, meters and the stdout logger."""
import json
import os
import re
import sys
import warnings

import pytest
import torch

from disakit.dasslite.utils import (
    AverageMeter,
    Logger,
    MetricMeter,
    Registry,
    check_availability,
    check_isfile,
    get_most_similar_str_to_a_from_b,
    listdir_nohidden,
    read_json,
    setup_logger,
    tolist_if_not,
    write_json,
)


# ------------------------------------------------------------------------------ registry
def test_registry_decorator_and_call_forms():
    reg = Registry("TRAINER")

    @reg.register()
    class CoOp:
        pass

    class CoCoOp:
        pass

    assert reg.register(CoCoOp) is CoCoOp
    assert reg.get("CoOp") is CoOp
    assert reg.registered_names() == ["CoOp", "CoCoOp"]


def test_registry_duplicate_and_missing_messages():
    reg = Registry("TRAINER")

    class CoOp:
        pass

    reg.register(CoOp)
    with pytest.raises(KeyError, match='An object named "CoOp" was already registered in '
                                       '"TRAINER" registry'):
        reg.register(CoOp)
    reg.register(CoOp, force=True)
    with pytest.raises(KeyError, match='Object name "Nope" does not exist in "TRAINER" registry'):
        reg.get("Nope")


def test_check_availability_message_and_hint():
    with pytest.raises(ValueError) as err:
        check_availability("MaPle", ["CoCoOp", "CoOp", "MaPLe"])
    assert str(err.value) == (
        "The requested one is expected to belong to ['CoCoOp', 'CoOp', 'MaPLe'], "
        "but got [MaPle] (do you mean [MaPLe]?)"
    )
    check_availability("MaPLe", ["CoCoOp", "CoOp", "MaPLe"])  # no error


def test_most_similar_tie_goes_to_later_candidate():
    # "ab" vs "ax" and "ay": both ratios are 0.5
    assert get_most_similar_str_to_a_from_b("ab", ["ax", "ay"]) == "ay"
    assert get_most_similar_str_to_a_from_b("ab", ["ay", "ax"]) == "ax"


# ------------------------------------------------------------------------------- tools
def test_check_isfile_warns_when_missing(tmp_path):
    with pytest.warns(UserWarning, match='No file found at ".*nope.jpg"'):
        assert check_isfile(str(tmp_path / "nope.jpg")) is False
    (tmp_path / "yes.jpg").write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_isfile(str(tmp_path / "yes.jpg")) is True


def test_write_json_layout_and_round_trip(tmp_path):
    obj = {"train": [["a/b.jpg", 0, "cat"]]}
    path = tmp_path / "sub" / "split.json"
    write_json(obj, str(path))
    assert path.read_text() == json.dumps(obj, indent=4, separators=(",", ": "))
    assert read_json(str(path)) == obj


def test_listdir_nohidden_and_tolist(tmp_path):
    for name in ["b", "a", ".hidden"]:
        (tmp_path / name).mkdir()
    assert listdir_nohidden(str(tmp_path), sort=True) == ["a", "b"]
    assert sorted(listdir_nohidden(str(tmp_path))) == ["a", "b"]
    assert tolist_if_not("x") == ["x"] and tolist_if_not(["x"]) == ["x"]


# ------------------------------------------------------------------------------ meters
def test_average_meter_plain_and_ema():
    m = AverageMeter()
    m.update(torch.tensor(2.0))
    m.update(4.0, n=3)
    assert (m.val, m.sum, m.count, m.avg) == (4.0, 14.0, 4, 3.5)
    e = AverageMeter(ema=True)
    e.update(10.0)
    e.update(20.0)
    assert e.avg == pytest.approx((0 * 0.9 + 1.0) * 0.9 + 2.0)


def test_metric_meter_format_and_errors():
    mm = MetricMeter()
    mm.update({"loss": torch.tensor(1.23456), "acc": 50.0})
    mm.update({"loss": 0.5, "acc": 100.0})
    mm.update(None)
    assert str(mm) == "loss 0.5000 (0.8673) acc 100.0000 (75.0000)"
    with pytest.raises(TypeError, match=r"Input to MetricMeter.update\(\) must be a dictionary"):
        mm.update([1.0])


# ------------------------------------------------------------------------------ logger
@pytest.fixture
def restore_stdout():
    saved_out, saved_hook = sys.stdout, sys.excepthook
    yield
    if isinstance(sys.stdout, Logger):
        sys.stdout.close()
    sys.stdout, sys.excepthook = saved_out, saved_hook


def test_logger_tees_and_never_overwrites(tmp_path, restore_stdout, capsys):
    setup_logger(str(tmp_path))
    print("first run")
    sys.stdout.flush()
    setup_logger(str(tmp_path))
    print("second run")
    sys.stdout.flush()
    assert (tmp_path / "log.txt").read_text() == "first run\n"
    others = [p for p in os.listdir(tmp_path) if p != "log.txt"]
    assert len(others) == 1
    assert re.fullmatch(r"log\.txt-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}", others[0])
    assert (tmp_path / others[0]).read_text() == "second run\n"
    assert "first run\nsecond run\n" in capsys.readouterr().out


def test_logger_file_path_and_close_keeps_console(tmp_path, restore_stdout, capsys):
    setup_logger(str(tmp_path / "my.log"))
    logger = sys.stdout
    console = logger.console
    print("hello")
    logger.close()
    assert not console.closed
    print("still works")  # console alive, file closed: no error
    assert (tmp_path / "my.log").read_text() == "hello\n"
    assert "still works" in capsys.readouterr().out


def test_uncaught_exception_traceback_reaches_log(tmp_path, restore_stdout, capsys):
    setup_logger(str(tmp_path))
    try:
        raise RuntimeError("boom in training")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    text = (tmp_path / "log.txt").read_text()
    assert "Traceback" in text and "RuntimeError: boom in training" in text
    assert "boom in training" in capsys.readouterr().err


def test_setup_logger_none_is_a_no_op(restore_stdout):
    before = sys.stdout
    setup_logger(None)
    assert sys.stdout is before
