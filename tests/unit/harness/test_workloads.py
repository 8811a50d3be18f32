"""The workload tools' parsers, on output recorded from the workloads image's own tools
(``tests/unit/harness/workload_output/``), and on output they must refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.workloads import Figure, ParseError, fio, iperf3, redis_benchmark, sockperf, sysbench

RECORDED = Path(__file__).parent / "workload_output"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def by_metric(figures: list[Figure]) -> dict[str, Figure]:
    return {figure.metric: figure for figure in figures}


def test_sysbench_cpu_events_per_second() -> None:
    assert sysbench.parse_cpu(recorded("sysbench-cpu.txt")) == [
        Figure("events_per_s", 1666.92, "events/s")]


@pytest.mark.parametrize(("name", "expected"), [("sysbench-mem-seq.txt", 21059.70),
                                                ("sysbench-mem-rnd.txt", 449.89)])
def test_sysbench_memory_bandwidth(name: str, expected: float) -> None:
    assert sysbench.parse_memory(recorded(name)) == [
        Figure("bandwidth_mib_s", expected, "MiB/s")]


def test_fio_random_read_iops_and_completion_latency() -> None:
    figures = by_metric(fio.parse_random(recorded("fio-randread.json"), "read"))
    assert figures["iops"] == Figure("iops", pytest.approx(20178.821179), "IOPS")
    assert figures["latency_p50_s"].value == pytest.approx(26496e-9)
    assert figures["latency_p99_s"].value == pytest.approx(259072e-9)
    assert {f.unit for f in figures.values()} == {"IOPS", "s"}


def test_fio_random_write_is_read_from_the_write_side() -> None:
    figures = by_metric(fio.parse_random(recorded("fio-randwrite.json"), "write"))
    assert figures["iops"].value == pytest.approx(29131.868132)
    with pytest.raises(ParseError, match="no read I/O"):
        fio.parse_random(recorded("fio-randwrite.json"), "read")


@pytest.mark.parametrize(("name", "direction", "mib_s"), [("fio-read.json", "read", 1255.744),
                                                          ("fio-write.json", "write", 975.025)])
def test_fio_sequential_bandwidth(name: str, direction: str, mib_s: float) -> None:
    [figure] = fio.parse_sequential(recorded(name), direction)
    assert figure.metric == "bandwidth_mib_s" and figure.unit == "MiB/s"
    assert figure.value == pytest.approx(mib_s, rel=1e-3)


def test_fio_tolerates_notes_before_its_json() -> None:
    text = "fio: note: something\n" + recorded("fio-read.json")
    assert fio.parse_sequential(text, "read")[0].value > 0


def test_iperf3_receiver_throughput_in_mbit_per_second() -> None:
    [figure] = iperf3.parse(recorded("iperf3-client.json"))
    assert figure.metric == "throughput_mbit_s" and figure.unit == "Mbit/s"
    assert figure.value == pytest.approx(29215.862, rel=1e-6)
    assert iperf3.parse(recorded("iperf3-client-reverse.json"))[0].value == pytest.approx(
        26458.541, rel=1e-6)


def test_iperf3_error_document_is_reported() -> None:
    with pytest.raises(ParseError, match="unable to connect"):
        iperf3.parse('{"start": {}, "intervals": [], "end": {}, '
                     '"error": "unable to connect to server: Connection refused"}')


def test_sockperf_round_trip_percentiles_through_colour_codes() -> None:
    figures = by_metric(sockperf.parse(recorded("sockperf-pp.txt")))
    assert figures["rtt_p50_s"] == Figure("rtt_p50_s", pytest.approx(8.626e-6), "s")
    assert figures["rtt_p99_s"].value == pytest.approx(23.844e-6)


def test_redis_benchmark_rows_per_test() -> None:
    text = recorded("redis-benchmark.csv")
    get = by_metric(redis_benchmark.parse(text, "GET"))
    assert get["ops_per_s"] == Figure("ops_per_s", 53763.44, "ops/s")
    assert get["latency_p50_s"].value == pytest.approx(0.087e-3)
    assert get["latency_p99_s"].value == pytest.approx(0.831e-3)
    assert by_metric(redis_benchmark.parse(text, "SET"))["ops_per_s"].value == 77220.08


@pytest.mark.parametrize(("parse", "text", "message"), [
    (sysbench.parse_cpu, "sysbench: error: unknown option\n", "events per second"),
    (sysbench.parse_memory, "Segmentation fault\n", "MiB transferred"),
    (lambda t: fio.parse_random(t, "read"), "fio: pid=1, err=22/file:filesetup.c",
     "no JSON"),
    (lambda t: fio.parse_random(t, "read"), '{"jobs": [{"error": 5}]}', "error 5"),
    (lambda t: fio.parse_sequential(t, "read"), '{"jobs": ', "unreadable"),
    (iperf3.parse, "iperf3: error - unable to connect", "JSON"),
    (sockperf.parse, "sockperf: ERROR: connect failed\n", "percentile"),
    (lambda t: redis_benchmark.parse(t, "GET"), "Could not connect to Redis\n", "no CSV row"),
    (lambda t: redis_benchmark.parse(t, "GET"),
     '"test","rps"\n"GET","0.00"\n', "lacks rps"),
    (sysbench.parse_cpu, "    events per second:     0.00\n", "positive"),
])
def test_unparseable_output_is_a_parse_error(parse, text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse(text)


@pytest.mark.parametrize(("metric", "way"), [
    ("events_per_s", "higher"), ("ops_per_s", "higher"), ("bandwidth_mib_s", "higher"),
    ("throughput_mbit_s", "higher"), ("iops", "higher"), ("iops_vs_process", "higher"),
    ("latency_p99_s", "lower"), ("rtt_p50_s_vs_qemu", "lower"), ("start_to_ready_s", "lower"),
])
def test_the_gate_knows_which_way_each_workload_figure_is_better(metric: str, way: str) -> None:
    from harness.gate.verdicts import direction

    assert direction(metric) == way
