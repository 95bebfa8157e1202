"""Firmware figures on MicroPython (`make bench`; issue 6, items 2, 4 and 7).

Each test runs one measurement of benchmarks/fw_bench.py once (pedantic, one round: the
runs are deterministic or measure their own medians inside MicroPython) and records its
figures. Nothing is asserted about time or size: the figures go to benchmarks/RESULTS.md.
The zero-allocation results are guarded by tests/test_bench_short.py in `make test`.
A test names requirement ids only if it asserts something of them (tools/trace.py counts
asserting tests): the figure-only ones name none.
"""

import fw_bench as B
import pytest


def once(benchmark, fn, *args, **kwargs):
    return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=1, iterations=1)


@pytest.mark.req("LNK-1", "LNK-5", "HW-3")
@pytest.mark.parametrize("runtime", ["unix", "wasm"])
def test_bytes_per_request(benchmark, figures, runtime):
    rec = once(benchmark, B.request_alloc, runtime)
    figures.setdefault("bytes_per_request", {})[runtime] = B.request_figures(rec)
    assert rec["results"]["status"]["answer"] == 0x82


@pytest.mark.parametrize("runtime", ["unix", "wasm"])
def test_bytes_per_tick(benchmark, figures, runtime):
    rec = once(benchmark, B.tick_alloc, runtime)
    figures.setdefault("bytes_per_tick", {})[runtime] = B.tick_figures(rec)


def test_firmware_codec_unix_us(benchmark, figures):
    figures["codec_unix_us"] = B.codec_figures(once(benchmark, B.codec_us))


def test_firmware_codec_wasm_fuel(benchmark, figures):
    figures["codec_wasm_fuel"] = B.fuel_figures(once(benchmark, B.codec_fuel,
                                                     B.codec_labels()))


@pytest.mark.parametrize("fmt", ["mpy", "py"])
@pytest.mark.parametrize("runtime", ["wasm", "unix"])
def test_heap_after_boot(benchmark, figures, runtime, fmt):
    rec = once(benchmark, B.boot_memory, runtime, fmt)
    figures.setdefault("heap_after_boot", {})[f"{runtime} {fmt}"] = B.heap_figures(rec)


def test_heap_after_boot_pico_board_unix(benchmark, figures):
    rec = once(benchmark, B.pico_boot_memory)
    figures.setdefault("heap_after_boot", {})["unix pico-board mpy"] = rec


@pytest.mark.parametrize("board", ["pico", "esp32"])
def test_mpy_size(benchmark, figures, board):
    figures.setdefault("mpy_bytes", {})[board] = once(benchmark, B.mpy_sizes, board)
