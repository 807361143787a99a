"""Effective precision: CPU cannot run fp16/amp CLIP, so it falls back to fp32 with one line."""
import pytest

from trainers.common.precision import effective_precision


@pytest.mark.parametrize("requested", ["fp16", "amp"])
def test_cpu_falls_back_to_fp32_with_one_line(requested, capsys):
    assert effective_precision(requested, "cpu", key="TRAINER.COOP.PREC") == "fp32"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert "TRAINER.COOP.PREC" in lines[0] and requested in lines[0] and "fp32" in lines[0]


def test_fp32_on_cpu_is_silent(capsys):
    assert effective_precision("fp32", "cpu") == "fp32"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("requested", ["fp16", "amp", "fp32"])
def test_cuda_keeps_the_request(requested, capsys):
    assert effective_precision(requested, "cuda") == requested
    assert capsys.readouterr().out == ""


def test_invalid_value_names_the_key():
    with pytest.raises(ValueError, match="TRAINER.TaskRes.PREC.*bf16"):
        effective_precision("bf16", "cpu", key="TRAINER.TaskRes.PREC")
