"""The Spark job (`funnel.spark`) in PySpark's local mode on a simulated fleet's archive: every
sample once, each loss a gap, a frame late into the next hour's file put back, a re-run after a
late file replacing exactly that device, and a stream of another model reported, not guessed.

`cargo xtask test` installs PySpark (and the Java it runs on is the machine's)."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import funnel
from funnel.spark import decode_archive, hour_files, spark_session, write_hour_files

ROOT = Path(__file__).resolve().parents[2]
ECG = ROOT / "data" / "mitbih208_ecg.csv"
COLUMN = "ecg_mlii_mV"
FRAMES_PER_HOUR = 3


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", "funnel-tests")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model():
    # Lossless: every decoded sample must be the recording's, exactly.
    return funnel.Model(ROOT / "models" / "ecg-lossless")


@pytest.fixture(scope="module")
def recording(model):
    span = model.card["windows_per_frame"] * model.window
    x = np.genfromtxt(ECG, delimiter=",", names=True, max_rows=9 * span + span // 2)[COLUMN]
    return x.astype(np.float32), span


def messages(model, x):
    items, report = funnel.split_link(model.encode(x))
    assert report == {"frames_lost": 0, "dropped_bytes": 0}
    header, *frames = items
    assert header.header and not any(f.header for f in frames)
    return header.data, [f.data for f in frames]


def read_device(out: Path, table: str, device: str):
    return pq.read_table(out / table / f"device={device}" / "stream=0").to_pydict()


def written(out: Path, devices):
    """The output files of ``devices`` and when each was last written."""
    return {p: p.stat().st_mtime_ns for d in devices for t in ("samples", "reports") for p in (out / t / f"device={d}").rglob("*")}


def test_the_archive_decodes_every_sample_once_with_its_gaps(spark, model, recording, tmp_path):
    x, span = recording
    archive, out = tmp_path / "archive", tmp_path / "out"
    streams = {d: np.roll(x, -1000 * i) for i, d in enumerate(["dev-0", "dev-1", "dev-2"])}
    # dev-0: as sent.
    items, _ = funnel.split_link(model.encode(streams["dev-0"]))
    write_hour_files(archive, "dev-0", hour_files(items, FRAMES_PER_HOUR))
    # dev-1: frame 1 lost, frame 2 a place late into the next hour's file, frame 4 twice.
    header, f = messages(model, streams["dev-1"])
    damaged = [header + f[0], header + f[3] + f[2] + f[4] + f[4] + f[5], header + b"".join(f[6:])]
    write_hour_files(archive, "dev-1", damaged)
    # dev-2: its second hour's file has not landed yet.
    header, f = messages(model, streams["dev-2"])
    late = header + b"".join(f[3:6])
    write_hour_files(archive, "dev-2", [header + b"".join(f[:3])])
    write_hour_files(archive, "dev-2", [header + b"".join(f[6:])], first_hour=2)

    outcome = decode_archive(spark, model.path, archive, out)
    assert outcome.streams == 3
    assert outcome.frames == len(f) + (len(f) - 1) + (len(f) - 3)

    expected_missing = {"dev-0": [], "dev-1": [(span, span)], "dev-2": [(3 * span, 3 * span)]}
    for device, signal in streams.items():
        rows = read_device(out, "samples", device)
        index = np.array(rows["sample_index"])
        assert np.array_equal(index, np.arange(len(signal))), device  # each sample once, in order
        missing = np.zeros(len(signal), bool)
        for first, samples in expected_missing[device]:
            missing[first : first + samples] = True
        status = np.array(rows["status"])
        assert np.array_equal(status == "missing", missing), device
        assert [v is None for v in rows[COLUMN]] == list(missing), device  # null, not a number
        values = np.array([np.nan if v is None else v for v in rows[COLUMN]], dtype=np.float32)
        assert np.array_equal(values[~missing], signal[~missing]), device  # lossless: exact
        report = read_device(out, "reports", device)
        assert report["error"] == [None]
        assert report["frames_lost"] == [sum(s for _, s in expected_missing[device]) // span], report["summary"]

    # The late file lands; the job runs again on that device alone.
    others = written(out, ["dev-0", "dev-1"])
    write_hour_files(archive, "dev-2", [late], first_hour=1)
    again = decode_archive(spark, model.path, archive, out, devices=["dev-2"])
    assert (again.streams, again.frames) == (1, len(f))
    rows = read_device(out, "samples", "dev-2")
    assert np.array_equal(np.array(rows["sample_index"]), np.arange(len(x)))
    assert set(rows["status"]) == {"ok"}
    assert np.array_equal(np.array(rows[COLUMN], dtype=np.float32), streams["dev-2"])
    assert read_device(out, "reports", "dev-2")["frames_lost"] == [0]
    assert written(out, ["dev-0", "dev-1"]) == others


def test_a_stream_of_another_model_is_reported_not_decoded(spark, model, recording, tmp_path):
    x, _ = recording
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_hour_files(archive, "ours", hour_files(funnel.split_link(model.encode(x))[0], FRAMES_PER_HOUR))
    lossy = funnel.Model(ROOT / "models" / "ecg")
    write_hour_files(archive, "theirs", hour_files(funnel.split_link(lossy.encode(x))[0], FRAMES_PER_HOUR))
    outcome = decode_archive(spark, model.path, archive, out)
    assert outcome.streams == 2
    theirs = read_device(out, "reports", "theirs")
    assert f"made by model {lossy.model_id}" in theirs["error"][0] and theirs["frames"] == [None]
    assert not (out / "samples" / "device=theirs").exists()
    assert set(read_device(out, "samples", "ours")["status"]) == {"ok"}


def test_a_folder_that_is_no_archive_is_an_error(spark, model, tmp_path):
    (tmp_path / "loose.bin").write_bytes(b"frames without a device and hour")
    with pytest.raises(ValueError, match="device=<name>/stream=<id>/hour=<hour>"):
        decode_archive(spark, model.path, tmp_path, tmp_path / "out")
