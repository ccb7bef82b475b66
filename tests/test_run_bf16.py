"""``train.amp=bf16`` on a CPU that would emulate bfloat16: one warning line at run start, none where the
CPU computes it natively (AVX512-BF16 or AMX) or the device is a GPU."""

from __future__ import annotations

import pytest
import torch

from ghmbench.run import setup


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "native"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_native_bf16_follows_the_cpu_probes(monkeypatch, avx512_bf16, amx, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert setup.native_bf16(torch.device("cpu")) is native
    assert setup.native_bf16(torch.device("cuda"))


def test_emulated_bf16_warns_once_and_float32_does_not(monkeypatch, capsys):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    setup._warn_emulated_bf16("bf16", torch.device("cpu"))
    setup._warn_emulated_bf16("none", torch.device("cpu"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "train.amp=bf16" in lines[0] and "train.amp=none" in lines[0]
